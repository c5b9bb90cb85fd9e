"""Search cost: where a trial's time goes, workers, early stopping, and cost against size/width.

Parts (``--parts``, comma-separated; each is independent):

* ``stages``: per-trial time by stage, median over the COMPLETE/PRUNED trials of existing
  studies (by default the ``bench/search_quality.py`` studies, which run at the default proxy
  epochs): build + FLOPs (``seconds.flops``: building the model and the fvcore count), latency
  probe, proxy training, the evaluator's own overhead (``seconds.total`` minus the three), and
  storage and bookkeeping (the trial's duration in Optuna minus ``seconds.total``: sampling,
  user attributes, early-stopping peer reads, SQLite commits). Also the non-training share of
  each trial, median.
* ``workers``: the same small search (random sampler, no baselines) with 1 then 2 workers;
  finished trials per hour of wall time (the search's own start to end, data loading included).
* ``early``: early stopping on against off, read from two ``bench/search_quality.py`` studies
  (``sq-tpe-s0`` and ``sq-tpe-noes-s0``): searched trials per hour and final hypervolume on
  shared bounds.
* ``threads``: proxy training with 1 against 2 torch intra-op threads (0.35x, 16 px, 400 images).
* ``size``: build + FLOPs, latency probe and 1-epoch proxy training seconds for the reference
  0.35x/0.5x/1.0x at 16 and 32 px (cifar preset) on ``--size-subset`` images.

    OMP_NUM_THREADS=1 .venv/bin/python bench/search_cost.py --parts stages,size,workers

Run it with ``OMP_NUM_THREADS=1`` on a shared machine: the variable reaches spawned workers too,
and under load two intra-op threads per process made proxy training 10-20x slower (see
docs/BENCHMARKS.md, "Search cost"). The size part trains with ``TrainSettings(threads=...)`` from
``--train-threads``.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from results import hypervolume, load_trials, open_study  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from search_quality import DATASET, env  # noqa: E402

OBJ = ["accuracy", "latency_ms", "flops"]


def frame_of(db: Path) -> pd.DataFrame:
    name = db.parent.name
    return load_trials(open_study(storage=f"sqlite:///{db}", study_name=name))


def stages(args: argparse.Namespace) -> dict:
    rows = []
    for db in sorted(glob.glob(str(args.stage_studies))):
        f = frame_of(Path(db))
        f = f[f["state"].isin(["COMPLETE", "PRUNED"]) & f["seconds_total"].notna()].copy()
        f["study"] = Path(db).parent.name
        rows.append(f)
    if not rows:
        return {"error": f"no studies match {args.stage_studies}"}
    f = pd.concat(rows, ignore_index=True)
    dur = f["duration"].map(lambda d: d.total_seconds())
    # baselines copied between studies by search_quality.py have no real duration
    keep = (dur >= f["seconds_total"]).to_numpy()
    f, dur = f[keep].reset_index(drop=True), dur[keep].reset_index(drop=True)
    parts = pd.DataFrame({
        "build_flops": f["seconds_flops"],
        "latency": f["seconds_latency"],
        "train": f["seconds_train"],
        "evaluator_other": f["seconds_total"] - f[["seconds_flops", "seconds_latency", "seconds_train"]].sum(axis=1),
        "storage_bookkeeping": dur - f["seconds_total"],
        "trial": dur,
    })
    share = (parts["trial"] - parts["train"]) / parts["trial"]
    out = {
        "studies": sorted(f["study"].unique().tolist()),
        "trials": int(len(f)),
        "median_s": {k: round(float(v), 3) for k, v in parts.median().items()},
        "median_share_of_trial": {k: round(float((parts[k] / parts["trial"]).median()), 4) for k in parts if k != "trial"},
        "non_training_share": {"median": round(float(share.median()), 4), "max": round(float(share.max()), 4),
                               "min": round(float(share.min()), 4)},
        "by_baseline": {},
    }
    for name, g in f[f["baseline"].notna()].groupby("baseline"):
        idx = g.index
        out["by_baseline"][name] = {k: round(float(parts.loc[idx, k].median()), 2) for k in parts}
    return out


def search(args: argparse.Namespace, name: str, **kw) -> tuple[float, pd.DataFrame]:
    from search import SearchSettings, run_search

    settings = SearchSettings(study=name, out=args.work / name, dataset=args.dataset, progress=False, **kw)
    t = time.monotonic()
    summary = run_search(settings)
    wall = time.monotonic() - t
    logging.info("%s: %d finished in %.0f s", name, summary.finished, wall)
    return wall, frame_of(args.work / name / "study.db")


def workers(args: argparse.Namespace) -> dict:
    out = {}
    for n in (1, 2):
        name = f"cost-workers{n}-{args.tag}"
        wall, f = search(args, name, trials=args.worker_trials, sampler="random", seed=0, workers=n,
                         baselines=False, subset=args.worker_subset, epochs=args.worker_epochs)
        finished = int(f["state"].isin(["COMPLETE", "PRUNED"]).sum())
        dur = f["duration"].dropna().map(lambda d: d.total_seconds())
        out[str(n)] = {"finished": finished, "wall_s": round(wall, 1), "trials_per_hour": round(finished / wall * 3600, 1),
                       "median_trial_s": round(float(dur.median()), 1),
                       "median_train_s": round(float(f["seconds_train"].median()), 1)}
    out["speedup"] = round(out["2"]["trials_per_hour"] / out["1"]["trials_per_hour"], 3)
    return out


def early(args: argparse.Namespace) -> dict:
    """Early stopping on against off, from two search_quality.py studies of the same settings.

    ``on``: ``sq-tpe-s0``; ``off``: ``sq-tpe-noes-s0`` (run with ``--no-early-stopping
    --baselines-from sq-tpe-s0``), whose baselines are copies of ``on``'s, so only the searched
    trials' own durations count: searched trials per hour of trial time, and the final
    hypervolume of each study on bounds shared by both.
    """
    res, frames = {}, {}
    for key, name in (("on", "sq-tpe-s0"), ("off", "sq-tpe-noes-s0")):
        db = args.quality_work / name / "study.db"
        if not db.exists():
            return {"error": f"{db} missing"}
        f = frame_of(db)
        frames[key] = f
        searched = f[f["baseline"].isna() & f["state"].isin(["COMPLETE", "PRUNED"])]
        seconds = float(searched["duration"].map(lambda d: d.total_seconds()).sum())
        res[key] = {"study": name, "searched_finished": int(len(searched)), "pruned": int((searched["state"] == "PRUNED").sum()),
                    "searched_trial_seconds": round(seconds, 1),
                    "searched_trials_per_hour": round(len(searched) / seconds * 3600, 1),
                    "median_searched_trial_s": round(float(searched["duration"].map(lambda d: d.total_seconds()).median()), 1)}
    ok = pd.concat(frames.values())
    ok = ok[ok["feasible"] & ok[OBJ].notna().all(axis=1)]
    bounds = {"accuracy": 1.0, "latency_ms": float(ok["latency_ms"].max()), "flops": float(ok["flops"].max())}
    for key, f in frames.items():
        res[key]["hypervolume"] = round(float(hypervolume(f, objectives=OBJ, bounds=bounds)), 4)
        res[key]["best_accuracy"] = round(float(f.loc[f["feasible"], "accuracy"].max()), 4)
    res["bounds"] = bounds
    return res


def size(args: argparse.Namespace) -> list[dict]:
    import torch

    from evaluators.data import load_dataset, proxy_split
    from evaluators.flops import count_cost
    from evaluators.latency import LatencyProbe, LatencySettings
    from evaluators.training import TrainSettings, train_proxy
    from spaces import reference

    data = load_dataset(args.dataset)
    train, val = proxy_split(data, seed=0, subset=args.size_subset)
    probe = LatencyProbe(settings=LatencySettings())
    rows = []
    for px in (16, 32):
        for w in ("0.35", "0.5", "1.0"):
            config = reference(f"ghostnet-{w}x", preset="cifar", num_classes=10, input_size=px)
            t = time.perf_counter(); cost = count_cost(config); t_flops = time.perf_counter() - t
            t = time.perf_counter(); lat = probe.measure(config); t_lat = time.perf_counter() - t
            t = time.perf_counter()
            train_proxy(config, train, val, TrainSettings(epochs=1, progress=False, seed=0, threads=args.train_threads))
            t_train = time.perf_counter() - t
            rows.append({"width": w, "input_px": px, "mflops": round(cost.flops / 1e6, 2), "params_m": round(cost.params / 1e6, 3),
                         "build_flops_s": round(t_flops, 2), "latency_probe_s": round(t_lat, 2), "latency_ms": round(lat.median_ms, 3),
                         "train_1epoch_s": round(t_train, 1), "train_s_per_1k_images_epoch": round(t_train / len(train) * 1000, 1),
                         "torch_threads": torch.get_num_threads()})
            logging.info("%s", rows[-1])
    return rows


def threads(args: argparse.Namespace) -> dict:
    """Proxy training seconds with 1 against 2 intra-op threads, alternating, same model and images."""
    from evaluators.data import load_dataset, proxy_split
    from evaluators.training import TrainSettings, train_proxy
    from spaces import reference

    train, val = proxy_split(load_dataset(args.dataset), seed=0, subset=500)
    config = reference("ghostnet-0.35x", preset="cifar", num_classes=10, input_size=16)
    train_proxy(config, train, val, TrainSettings(epochs=1, progress=False, threads=1))  # warm-up
    times: dict[str, list[float]] = {"1": [], "2": []}
    for _ in range(args.threads_repeats):
        for n in (1, 2):
            t = time.perf_counter()
            train_proxy(config, train, val, TrainSettings(epochs=1, progress=False, threads=n))
            times[str(n)].append(round(time.perf_counter() - t, 2))
            logging.info("threads %d: %.1f s", n, times[str(n)][-1])
    return {"model": "ghostnet-0.35x cifar 16px", "train_images": len(train), "epochs": 1, "seconds": times,
            "ratio_2_over_1_median": round(float(np.median(times["2"]) / np.median(times["1"])), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="stages,size,workers,early")
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--work", type=Path, default=Path("/tmp/ghostnas-bench/search_cost"))
    p.add_argument("--tag", default="a", help="suffix of the study names (a new tag reruns, the same one resumes)")
    p.add_argument("--stage-studies", default="/tmp/ghostnas-bench/search_quality/*/study.db")
    p.add_argument("--worker-trials", type=int, default=6)
    p.add_argument("--worker-subset", type=int, default=1000)
    p.add_argument("--worker-epochs", type=int, default=1)
    p.add_argument("--quality-work", type=Path, default=Path("/tmp/ghostnas-bench/search_quality"))
    p.add_argument("--size-subset", type=int, default=1000)
    p.add_argument("--train-threads", type=int, default=1)
    p.add_argument("--threads-repeats", type=int, default=2)
    p.add_argument("--json", type=Path, default=ROOT / "docs/bench/search_cost.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = {"env": env(), "command": " ".join(sys.argv), "settings": {k: str(v) for k, v in vars(args).items()}}
    if args.json.exists():  # keep parts measured by earlier runs
        old = json.loads(args.json.read_text())
        report.update({k: v for k, v in old.items() if k in ("stages", "size", "workers", "early", "threads") or k.endswith(("_env", "_command"))})
        report["earlier_runs"] = old.get("earlier_runs", []) + [{"command": old.get("command"), "env": old.get("env")}]
    for part in args.parts.split(","):
        report[part] = {"stages": stages, "workers": workers, "early": early, "size": size, "threads": threads}[part](args)
        report[f"{part}_env"] = env()
        report[f"{part}_command"] = " ".join(sys.argv)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(part, json.dumps(report[part], indent=1, default=str), flush=True)


if __name__ == "__main__":
    main()
