"""Search quality on CIFAR-10: default sampler (tpe) against nsga2 and random at equal budget.

Each (sampler, seed) runs one full study through ``run_search`` with the same settings: the
cifar preset, the same subset, proxy epochs and trial target, the width family (0.35x ... 1.3x)
enqueued first as baselines, early stopping as by default. Then, over all studies:

* one set of hypervolume bounds, from the union of every study's feasible trials (accuracy 1,
  latency and FLOPs the worst seen), so the hypervolumes are on one scale;
* each study's final hypervolume, and its hypervolume after a few trial counts;
* for each baseline of each study: the searched (non-baseline) trials of that study that
  dominate it (accuracy >=, latency <=, FLOPs <=), and the best such margin;
* one accuracy-latency chart of every front and the baselines (plotly HTML with plotly.js
  inlined when under 5 MB, plus the chart's data as CSV).

Studies live under ``--work`` (outside the repo); a study already there is resumed, not rerun,
so the script can be re-run to add samplers/seeds or only to re-analyse (``--analyse-only``).
``--confirm-runs N`` then runs ``ghostnas confirm --runs N`` on each study (with ``--analyse-only``:
on the studies already there, without searching), so fronts and baselines are judged on the mean
accuracy of N training runs; only searched trials with N runs count as dominating a baseline.

    .venv/bin/python bench/search_quality.py --trials 16 --subset 2000 --epochs 2 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # ground_truth, for --check-claims

import pandas as pd  # noqa: E402

from results import hypervolume, hypervolume_history, load_trials, open_study, pareto_front  # noqa: E402

OBJ = ["accuracy", "latency_ms", "flops"]
DATASET = "/work/shared/data/cifar10/train.tar.gz"


SUFFIX = ""  # "-noes" with --no-early-stopping


def study_name(sampler: str, seed: int) -> str:
    return f"sq-{sampler}{SUFFIX}-s{seed}"


def run_one(args: argparse.Namespace, sampler: str, seed: int) -> dict:
    from search import SearchSettings, run_search

    name = study_name(sampler, seed)
    settings = SearchSettings(
        study=name, out=args.work / name, dataset=args.dataset, subset=args.subset, val_fraction=args.val_fraction, epochs=args.epochs,
        trials=args.trials, sampler=sampler, seed=seed, progress=False, input_size=args.input_size,
        early_stopping=args.early_stopping, train_input_size=args.train_input_size, accuracy_estimator=args.accuracy_estimator,
    )
    if args.share_baselines and baseline_source(args, seed) != name:
        copy_baselines(args, settings, baseline_source(args, seed))
    t = time.monotonic()
    summary = run_search(settings)
    wall = time.monotonic() - t
    logging.info("%s: %d finished, %d failed in %.0f s", name, summary.finished, summary.failed, wall)
    if summary.interrupted:  # Ctrl-C or SIGTERM: stop the benchmark, not only this study
        raise SystemExit(f"{name}: interrupted after {summary.finished} finished trials; run again to resume")
    return {"study": name, "wall_s": wall, "finished": summary.finished, "failed": summary.failed}


def baseline_source(args: argparse.Namespace, seed: int) -> str:
    """The study whose baselines a study of this seed shares: the first sampler's, same seed."""
    return args.baselines_from or study_name(args.samplers[0], seed)


def copy_baselines(args: argparse.Namespace, settings, first: str) -> None:
    """Add study ``first``'s finished baseline trials to a new study (before it samples anything).

    Every study's baselines are the same configs trained with the same seed on the same split,
    so they are evaluated once and shared: the sampler sees the same history it would have seen,
    the baselines are the same points in every study, and the budget goes to searched trials.
    Run with ``--no-share-baselines`` to evaluate them in every study instead.
    """
    import optuna

    from search._latency import CALIBRATION_ATTR
    from search._optuna import generation_key
    from search._search import create_or_load_study
    from spaces import load_space

    source = optuna.load_study(study_name=first, storage=f"sqlite:///{args.work / first / 'study.db'}")
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    # The source's proxy record (same split, seed and budget) goes along: the search checks a
    # resumed study against it.
    study = create_or_load_study(settings, load_space(settings.space), proxy=source.user_attrs.get("proxy"))
    if study.get_trials(deepcopy=False):
        return
    # The copied latencies are ratios to the source's reference timing: the study shares that
    # calibration too (a study holding timed trials without one is refused as pre-calibration).
    if CALIBRATION_ATTR in source.user_attrs:
        study.set_user_attr(CALIBRATION_ATTR, source.user_attrs[CALIBRATION_ATTR])
    baselines = [t for t in source.get_trials(deepcopy=False) if t.user_attrs.get("baseline") and t.state.is_finished()]
    # A genetic sampler files every trial it samples under a generation and builds its populations
    # from those; copied trials are never sampled, so they get the generation they would have had
    # (in order), or NSGA-II would leave the baselines out of every population.
    ga = study.sampler if isinstance(study.sampler, optuna.samplers.BaseGASampler) else None
    for i, t in enumerate(baselines):
        generation = {generation_key(ga): i // ga.population_size} if ga else {}
        study.add_trial(optuna.trial.create_trial(
            state=t.state, values=t.values, params=t.params, distributions=t.distributions,
            user_attrs={**t.user_attrs, "copied_from": first}, intermediate_values=t.intermediate_values,
            # system attrs carry the constraints (feasibility) and the enqueued params
            system_attrs={**t.system_attrs, **generation},
        ))


def confirm_one(args: argparse.Namespace, sampler: str, seed: int) -> dict:
    """``ghostnas confirm`` on one study: its front and baselines get ``--confirm-runs`` runs."""
    from search import ConfirmSettings, confirm_study

    name = study_name(sampler, seed)
    if args.share_baselines and baseline_source(args, seed) != name:
        copy_baseline_runs(args, baseline_source(args, seed), name)
    t = time.monotonic()
    summary = confirm_study(ConfirmSettings(
        study=name, storage=f"sqlite:///{args.work / name / 'study.db'}", runs=args.confirm_runs, out=args.work / name, progress=False,
    ))  # fmt: skip
    wall = time.monotonic() - t
    logging.info("%s: %d runs trained, %d models confirmed in %.0f s", name, summary.trained, summary.confirmed, wall)
    if summary.interrupted:
        raise SystemExit(f"{name}: confirm interrupted; run again to resume")
    return {"study": name, "confirm_wall_s": wall, "confirm_runs_trained": summary.trained, "confirmed": summary.confirmed}


def copy_baseline_runs(args: argparse.Namespace, first: str, name: str) -> None:
    """The confirmed runs of ``first``'s baselines, given to the same baselines in ``name``
    (and ``first``'s proxy record, which confirm retrains by, where ``name`` lacks it).

    Copied baselines are the same configs on the same split and seeds (see ``copy_baselines``),
    and a run with the same seed trains the same model, so they are trained once, in ``first``.
    """
    import optuna

    from results import ACCURACY_RUNS_KEY

    source = optuna.load_study(study_name=first, storage=f"sqlite:///{args.work / first / 'study.db'}")
    target = optuna.load_study(study_name=name, storage=f"sqlite:///{args.work / name / 'study.db'}")
    if "proxy" not in target.user_attrs:  # baselines copied in before the record went along (run 3)
        target.set_user_attr("proxy", source.user_attrs["proxy"])
    numbers = {t.user_attrs["baseline"]: t.number for t in target.get_trials(deepcopy=False) if t.user_attrs.get("baseline") and t.values}
    for t in source.get_trials(deepcopy=False):
        runs = source.user_attrs.get(f"{ACCURACY_RUNS_KEY}{t.number}")
        number = numbers.get(t.user_attrs.get("baseline"))
        if runs and number is not None and f"{ACCURACY_RUNS_KEY}{number}" not in target.user_attrs:
            target.set_user_attr(f"{ACCURACY_RUNS_KEY}{number}", runs)


def load(args: argparse.Namespace, sampler: str, seed: int) -> pd.DataFrame | None:
    name = study_name(sampler, seed)
    db = args.work / name / "study.db"
    if not db.exists():
        return None
    study = open_study(storage=f"sqlite:///{db}", study_name=name)
    frame = load_trials(study)
    frame["sampler"], frame["seed"] = sampler, seed
    # The probe's ratio to its interleaved reference: steadier than median_ms on a shared CPU
    # (docs/BENCHMARKS.md, "Latency probe"); used for a second dominance check.
    ratio = {t.number: (t.user_attrs.get("latency") or {}).get("ratio_to_reference") for t in study.get_trials(deepcopy=False)}
    frame["latency_ratio"] = frame["number"].map(ratio).astype(float)
    return frame


def dominance(frame: pd.DataFrame, *, min_runs: int = 1) -> list[dict]:
    """Per baseline: the searched feasible trials of the same study that dominate it.

    After ``confirm``, only searched trials with ``min_runs`` training runs count: a trial off
    the confirmed front keeps its single search run, the lucky draw confirming is there to discount.
    """
    ok = frame[frame["feasible"] & frame[OBJ].notna().all(axis=1)]
    is_base = ok["baseline"].notna()
    searched, bases = ok[~is_base & (ok["accuracy_runs"] >= min_runs)], ok[is_base]
    rows = []
    for _, b in bases.iterrows():
        dom = searched[
            (searched["accuracy"] >= b["accuracy"]) & (searched["latency_ms"] <= b["latency_ms"]) & (searched["flops"] <= b["flops"])
        ]
        covered = searched[(searched["latency_ms"] <= b["latency_ms"]) & (searched["flops"] <= b["flops"])]
        dom_ratio = searched[
            (searched["accuracy"] >= b["accuracy"]) & (searched["latency_ratio"] <= b["latency_ratio"]) & (searched["flops"] <= b["flops"])
        ]
        row = {
            "sampler": b["sampler"], "seed": int(b["seed"]), "baseline": b["baseline"],
            "b_accuracy": round(float(b["accuracy"]), 4), "b_latency_ms": round(float(b["latency_ms"]), 3),
            "b_mflops": round(float(b["flops"]) / 1e6, 2), "b_runs": int(b["accuracy_runs"]),
            "covered": len(covered) > 0, "dominated_by": len(dom), "dominated_by_on_ratio": len(dom_ratio),
        }
        if len(dom):
            best = dom.loc[dom["accuracy"].idxmax()]
            row.update(
                best_trial=int(best["number"]),
                d_accuracy=round(float(best["accuracy"] - b["accuracy"]), 4),
                latency_ratio=round(float(best["latency_ms"] / b["latency_ms"]), 3),
                flops_ratio=round(float(best["flops"] / b["flops"]), 3),
            )
        elif len(covered):  # the closest miss: most accurate searched model no slower, no bigger
            best = covered.loc[covered["accuracy"].idxmax()]
            row.update(best_trial=int(best["number"]), d_accuracy=round(float(best["accuracy"] - b["accuracy"]), 4),
                       latency_ratio=round(float(best["latency_ms"] / b["latency_ms"]), 3),
                       flops_ratio=round(float(best["flops"] / b["flops"]), 3))
        rows.append(row)
    return rows


def claimants(frames: list[pd.DataFrame], rows: list[dict]) -> list[dict]:
    """For each baseline, over all studies, the searched model no slower and no bigger with the
    largest predicted accuracy margin over it: a claim ("claims") where the margin is >= 0, the
    closest miss ("misses") where no searched model is predicted to dominate it. One line per
    config, naming every baseline it is chosen for: the models the ground-truth recipe trains
    (``bench/ground_truth.py --models-file``), to check the prediction either way."""
    by_study = {(f["sampler"].iat[0], int(f["seed"].iat[0])): f.set_index("number") for f in frames}
    best: dict[str, dict] = {}
    for row in rows:
        if row.get("d_accuracy") is not None and not pd.isna(row["d_accuracy"]) and row["d_accuracy"] > best.get(row["baseline"], {}).get("d_accuracy", -math.inf):
            best[row["baseline"]] = row
    out: dict[str, dict] = {}
    for baseline, row in best.items():
        trial = by_study[(row["sampler"], row["seed"])].loc[row["best_trial"]]
        entry = out.setdefault(trial["config_id"], {
            "name": f"{study_name(row['sampler'], row['seed'])}-t{row['best_trial']}", "config": trial["config"],
            "accuracy_predicted": round(float(trial["accuracy"]), 4), "latency_ms": round(float(trial["latency_ms"]), 3),
            "flops": int(trial["flops"]), "claims": [], "misses": [], "margins": {},
        })  # fmt: skip
        entry["claims" if row["dominated_by"] else "misses"].append(baseline)
        entry["margins"][baseline] = row["d_accuracy"]
    return list(out.values())


def check_claims(claimants_path: Path, claimant_truth: Path, truth: Path) -> list[dict]:
    """Each prediction "searched model X dominates baseline B" (a claim) or "loses to it" (a
    miss) against the ground-truth recipe: X's accuracy there (``claimant_truth``,
    bench/ground_truth.py --models-file) beside B's (``truth``, the ground-truth table), both
    means over the training seeds each has; FLOPs and latency are the study's, so the accuracy
    decides whether the prediction ``holds``."""
    import ground_truth as gt

    from spaces import GhostNetConfig

    by_id = {**gt.read_results(truth), **gt.read_results(claimant_truth)}
    baselines = {row["name"]: row for row in by_id.values()}
    out = []
    for line in claimants_path.read_text().splitlines():
        claimant = json.loads(line)
        config = GhostNetConfig.from_dict(claimant["config"]).replace(num_classes=10, input_size=16)
        row = by_id.get(config.id)
        for baseline, dominates in [(b, True) for b in claimant["claims"]] + [(b, False) for b in claimant.get("misses", [])]:
            mine = gt.mean_accuracy(row) if row else None
            theirs = gt.mean_accuracy(baselines[baseline]) if baseline in baselines else None
            out.append({
                "claimant": claimant["name"], "baseline": baseline, "predicted": "dominates" if dominates else "loses",
                "predicted_margin": claimant.get("margins", {}).get(baseline), "truth": mine, "truth_runs": len(row["runs"]) if row else 0,
                "baseline_truth": theirs, "difference": None if mine is None or theirs is None else round(mine - theirs, 4),
                "holds": None if mine is None or theirs is None else (mine >= theirs) == dominates,
            })  # fmt: skip
    return out


def chart(frames: list[pd.DataFrame], out: Path) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    data_rows = []
    palette = {"tpe": "#1f77b4", "nsga2": "#2ca02c", "random": "#d62728", "nsga3": "#9467bd", "gp": "#8c564b"}
    for f in frames:
        label = f"{f['sampler'].iat[0]} seed {int(f['seed'].iat[0])}"
        ok = f[f["feasible"] & f[OBJ].notna().all(axis=1)]
        front = pareto_front(ok, objectives=OBJ).sort_values("latency_ms")
        # The 3-objective front projected on accuracy-latency; line through it for readability.
        fig.add_trace(go.Scatter(
            x=front["latency_ms"], y=front["accuracy"], mode="lines+markers", name=f"front {label}",
            line={"shape": "hv", "color": palette.get(f["sampler"].iat[0])},
            text=[f"#{n} {b if isinstance(b, str) else 'searched'} {fl / 1e6:.1f} MFLOPs" for n, b, fl in zip(front["number"], front["baseline"], front["flops"])],
        ))
        base = ok[ok["baseline"].notna()]
        fig.add_trace(go.Scatter(
            x=base["latency_ms"], y=base["accuracy"], mode="markers+text", name=f"baselines ({label})",
            marker={"symbol": "x", "size": 10, "color": palette.get(f["sampler"].iat[0])},
            text=[b.replace("ghostnet-", "") for b in base["baseline"]], textposition="top center",
        ))
        for _, r in ok.iterrows():
            data_rows.append({
                "sampler": r["sampler"], "seed": int(r["seed"]), "number": int(r["number"]),
                "baseline": r["baseline"] if isinstance(r["baseline"], str) else "",
                "on_front": int(r["number"]) in set(front["number"]),
                "accuracy": r["accuracy"], "latency_ms": r["latency_ms"], "flops": r["flops"], "params": r["params"],
            })
    fig.update_layout(title="GhostNAS on CIFAR-10 proxy: fronts (3-objective, shown on accuracy-latency) and width-family baselines",
                      xaxis_title="latency (ms, batch 1, CPU, shared load)", yaxis_title="proxy accuracy")
    pd.DataFrame(data_rows).to_csv(out.with_suffix(".csv"), index=False)
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    if len(html.encode()) < 5_000_000:
        out.with_suffix(".html").write_text(html)
        return f"{out.with_suffix('.html')} and {out.with_suffix('.csv')}"
    return f"{out.with_suffix('.csv')} (HTML would exceed 5 MB)"


def front_change(frame: pd.DataFrame) -> dict:
    """How confirming changed the front: members on the front of single search runs
    (``accuracy_search``) that stay on the front of mean accuracies, and members new to it."""
    confirmed = pareto_front(frame, objectives=OBJ)
    front = set(confirmed["number"])
    single = frame.assign(accuracy=frame["accuracy_search"])
    single.attrs = frame.attrs
    before = set(pareto_front(single, objectives=OBJ)["number"])
    return {"front_runs_min": int(confirmed["accuracy_runs"].min()), "front_of_single_runs": len(before),
            "kept": len(front & before), "new": len(front - before)}


def analyse(args: argparse.Namespace, runs: list[dict]) -> dict:
    frames = [f for s in args.samplers for seed in args.seeds if (f := load(args, s, seed)) is not None]
    if not frames:
        raise SystemExit("no studies to analyse")
    union = pd.concat(frames, ignore_index=True)
    ok = union[union["feasible"] & union[OBJ].notna().all(axis=1)]
    bounds = {"accuracy": 1.0, "latency_ms": float(ok["latency_ms"].max()), "flops": float(ok["flops"].max())}
    report: dict = {"bounds": bounds, "studies": [], "dominance": [], "runs": runs}
    for f in frames:
        s, seed = f["sampler"].iat[0], int(f["seed"].iat[0])
        hist = hypervolume_history(f, objectives=OBJ, bounds=bounds)
        finished = f[f["state"].isin(["COMPLETE", "PRUNED"])]
        at = {}
        for n in args.checkpoints:
            # hypervolume once the first n trials (by number) are there
            sub = hist[hist["number"] < n]
            at[str(n)] = round(float(sub["hypervolume"].iloc[-1]), 4) if len(sub) else None
        # searched trials only: copied baselines have no real duration, and every study has the same ones
        durations = finished.loc[finished["baseline"].isna(), "duration"].dropna().map(lambda d: d.total_seconds())
        report["studies"].append({
            "sampler": s, "seed": seed, "trials": int(len(f)), "complete": int((f["state"] == "COMPLETE").sum()),
            "pruned": int((f["state"] == "PRUNED").sum()), "failed": int((f["state"] == "FAIL").sum()),
            "hypervolume": round(float(hypervolume(f, objectives=OBJ, bounds=bounds)), 4),
            "hv_at": at, "front_size": int(len(pareto_front(f, objectives=OBJ))),
            "best_accuracy": round(float(f.loc[f["feasible"], "accuracy"].max()), 4),
            **front_change(f),
            "median_searched_trial_s": round(float(durations.median()), 1), "sum_searched_trial_s": round(float(durations.sum()), 0),
        })
        report["dominance"].extend(dominance(f, min_runs=args.confirm_runs or 1))
    report["chart"] = chart(frames, args.chart)
    if args.accuracy_estimator == "ridge":
        report["claimants"] = claimants(frames, report["dominance"])
        path = args.json.with_name(args.json.stem + "_claimants.jsonl")
        path.write_text("".join(json.dumps(c) + "\n" for c in report["claimants"]))
        report["claimants_file"] = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return report


def env() -> dict:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), platform.processor())
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": model, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(), "loadavg": load1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samplers", default="tpe,nsga2,random")
    p.add_argument("--seeds", default="0", help="comma-separated")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--val-fraction", type=float, default=0.2, help="of the subset, held out for proxy validation (search's default 0.2)")
    p.add_argument("--epochs", type=int, default=None, help="proxy epochs (default: the trainer's)")
    p.add_argument("--input-size", type=int, default=None, help="input px (default: the cifar preset's 32)")
    p.add_argument("--train-input-size", type=int, default=None, help="proxy training px (default: --input-size)")
    p.add_argument("--accuracy-estimator", default="train", choices=["train", "ridge"],
                   help="ridge: every accuracy is the fitted model's prediction (no training; studies sq-<sampler>-ridge-s<seed>; "
                   "no confirm: train the claimants with bench/ground_truth.py --models-file)")
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--checkpoints", default="5,8,12,16,20,24,32")
    p.add_argument("--work", type=Path, default=Path("/tmp/ghostnas-bench/search_quality"))
    p.add_argument("--json", type=Path, default=ROOT / "docs/bench/search_quality.json")
    p.add_argument("--chart", type=Path, default=ROOT / "docs/bench/search_quality")
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument("--confirm-runs", type=int, default=None,
                   help="after the searches, `ghostnas confirm --runs N` each study (fronts and baselines on mean accuracy)")
    p.add_argument("--no-early-stopping", dest="early_stopping", action="store_false",
                   help="early stopping off; studies are named sq-<sampler>-noes-s<seed>")
    p.add_argument("--baselines-from", default=None, help="study (under --work) to copy the baselines from, e.g. sq-tpe-s0")
    p.add_argument("--train-threads", type=int, default=1, help="torch intra-op threads of the search process (0: torch's default)")
    p.add_argument("--no-share-baselines", dest="share_baselines", action="store_false",
                   help="evaluate the baselines in every study (default: once, in the first, copied to the others)")
    p.add_argument("--check-claims", type=Path, nargs=2, default=None, metavar=("CLAIMANTS", "CLAIMANT_TRUTH"),
                   help="print each claim of a claimants file against the ground-truth recipe (CLAIMANT_TRUTH: "
                   "bench/ground_truth.py --models-file CLAIMANTS --results CLAIMANT_TRUTH), then stop")
    args = p.parse_args()
    if args.check_claims:
        rows = check_claims(*args.check_claims, ROOT / "docs/bench/ground_truth.jsonl")
        print(pd.DataFrame(rows).to_string(index=False))
        return
    global SUFFIX
    SUFFIX = ("" if args.early_stopping else "-noes") + ("-ridge" if args.accuracy_estimator == "ridge" else "")
    if args.confirm_runs and args.accuracy_estimator == "ridge":
        p.error("--confirm-runs: a ridge study has no training runs to confirm")
    args.samplers = args.samplers.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.checkpoints = [int(c) for c in args.checkpoints.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.train_threads:
        # TrainSettings.threads=None keeps torch's setting; under shared load 2 intra-op threads
        # on 2 busy cores ran proxy training ~10-20x slower than 1 (docs/BENCHMARKS.md, "Search cost").
        import torch

        torch.set_num_threads(args.train_threads)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    if not args.analyse_only:
        # seed-major order: a cut-short run still leaves every sampler at the same seeds
        for seed in args.seeds:
            for sampler in args.samplers:
                runs.append(run_one(args, sampler, seed))
    if args.confirm_runs:
        for seed in args.seeds:
            for sampler in args.samplers:  # the first sampler's baselines are confirmed first, then shared
                runs.append(confirm_one(args, sampler, seed))
    report = {"env": env(), "command": " ".join(sys.argv), "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    report.update(analyse(args, runs))
    args.json.write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps({k: report[k] for k in ("bounds", "studies")}, indent=1))
    print(pd.DataFrame(report["dominance"]).to_string(index=False))


if __name__ == "__main__":
    main()
