"""Front recheck: does a searched model that beats (or nearly beats) a width-family baseline in
a search still do so once accuracy is averaged over training seeds and latency is timed again?

Reads the studies of ``bench/search_quality.py`` under ``--work``. Every baseline that some
searched model of its study covers (no slower, no more FLOPs) is paired with its closest
searched model, as in search_quality's dominance table (the most accurate dominating model, or
else the most accurate covering one). Then two phases:

* ``train`` trains every distinct model of those pairs again, on its study's own split, budget
  and input size, with ``--extra-seeds`` more training seeds, and appends the accuracies to
  ``--results`` (JSON lines, one per model; a model already there is skipped, so the phase
  resumes; ``--shard I/N`` runs one process per core);
* ``report`` times every model once more (the latency probe with its interleaved reference; run
  it alone on the machine) and re-judges each pair on the mean accuracy over the search's run and
  the extra seeds, the new ratio to reference, and FLOPs.

With ``--confirmed N`` the studies are ones ``search_quality.py --confirm-runs N`` confirmed: the
pairs are taken on their mean accuracies (only searched models with N runs count), and the report
judges each pair on the extra seeds alone, which played no part in picking it (the search's run
and the confirm runs did), beside the mean over every run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/front_recheck.py train --work /tmp/ghostnas-bench/sq3 --results /tmp/recheck.jsonl
    .venv/bin/python bench/front_recheck.py report --work /tmp/ghostnas-bench/sq3 --results /tmp/recheck.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script from any directory

import optuna  # noqa: E402

from bench.search_quality import dominance, env, load, study_name  # noqa: E402
from evaluators.data import load_dataset, proxy_split  # noqa: E402
from results import ACCURACY_RUNS_KEY  # noqa: E402
from evaluators.latency import LatencyProbe, LatencySettings  # noqa: E402
from evaluators.training import TrainingFailed, TrainSettings, train_proxy  # noqa: E402
from spaces import GhostNetConfig  # noqa: E402

log = logging.getLogger("bench.front_recheck")


def pairs(args: argparse.Namespace) -> list[dict]:
    """(baseline, closest searched model) of every covered baseline, with both trials' records."""
    out = []
    for sampler in args.samplers:
        for seed in args.seeds:
            frame = load(args, sampler, seed)
            if frame is None:
                continue
            study = open_bench_study(args, study_name(sampler, seed))
            trials = {t.number: t for t in study.get_trials(deepcopy=False)}
            proxy = study.user_attrs.get("proxy")
            if proxy is None:  # studies whose baselines were copied in before this was recorded
                source = next(t.user_attrs["copied_from"] for t in trials.values() if "copied_from" in t.user_attrs)
                proxy = open_bench_study(args, source).user_attrs["proxy"]
            base_number = {b: int(n) for b, n in zip(frame["baseline"], frame["number"]) if isinstance(b, str)}
            for row in dominance(frame, min_runs=args.confirmed or 1):
                if "best_trial" not in row:
                    continue
                out.append({**row, "proxy": proxy, "dataset": study.user_attrs["settings"]["dataset"],
                            "baseline_trial": model_record(trials[base_number[row["baseline"]]], study),
                            "searched_trial": model_record(trials[row["best_trial"]], study)})  # fmt: skip
    return out


def open_bench_study(args: argparse.Namespace, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{args.work / name / 'study.db'}")


def model_record(trial: optuna.trial.FrozenTrial, study: optuna.Study) -> dict:
    scores = trial.user_attrs["scores"]
    confirm_runs = study.user_attrs.get(f"{ACCURACY_RUNS_KEY}{trial.number}") or []
    return {"number": trial.number, "config": trial.user_attrs["config"], "config_id": trial.user_attrs["config_id"],
            "accuracy": scores["accuracy"], "flops": scores["flops"],
            "confirm_accuracies": [r["accuracy"] for r in confirm_runs if "accuracy" in r],
            "ratio_to_reference": (trial.user_attrs.get("latency") or {}).get("ratio_to_reference")}  # fmt: skip


def model_key(pair: dict, which: str) -> str:
    # Accuracy depends on the split (the study's seed) as well as the config.
    return f"s{pair['proxy']['seed']}-{pair[which]['config_id']}"


def train(args: argparse.Namespace) -> None:
    todo: dict[str, tuple[dict, dict]] = {}
    all_pairs = pairs(args)
    for p in all_pairs:
        for which in ("baseline_trial", "searched_trial"):
            todo.setdefault(model_key(p, which), (p, p[which]))
    done = {json.loads(line)["key"] for line in args.results.read_text().splitlines()} if args.results.exists() else set()
    shard, shards = map(int, args.shard.split("/"))
    keys = [k for i, k in enumerate(sorted(todo)) if i % shards == shard and k not in done]
    log.info("%d models in %d pairs; %d to train in this shard", len(todo), len(all_pairs), len(keys))
    splits: dict[tuple, tuple] = {}
    data = None
    for i, key in enumerate(keys, 1):
        pair, record = todo[key]
        proxy = pair["proxy"]
        split_key = (pair["dataset"], proxy["seed"], proxy["subset"], proxy["val_fraction"])
        if split_key not in splits:
            data = data or load_dataset(pair["dataset"])
            splits[split_key] = proxy_split(data, seed=proxy["seed"], subset=proxy["subset"], val_fraction=proxy["val_fraction"])
        config = GhostNetConfig.from_dict(record["config"])
        accuracies = {}
        for k in range(1, args.extra_seeds + 1):
            seed = 1000 * k + proxy["seed"]  # never a study's own training seed (0, 1, 2, ...)
            try:
                result = train_proxy(config, *splits[split_key], TrainSettings(epochs=proxy["epochs"], seed=seed, threads=1))
                accuracies[str(seed)] = result.accuracy
            except TrainingFailed as exc:
                accuracies[str(seed)] = None
                log.warning("%s seed %d failed: %s", key, seed, exc.reason)
        with args.results.open("a") as f:
            f.write(json.dumps({"key": key, "search_accuracy": record["accuracy"], "extra": accuracies}) + "\n")
        log.info("model %d/%d %s: search %.4f, extra %s", i, len(keys), key, record["accuracy"], accuracies)


def report(args: argparse.Namespace) -> dict:
    extra = {}
    for line in args.results.read_text().splitlines():
        row = json.loads(line)
        extra[row["key"]] = [a for a in row["extra"].values() if a is not None]
    probe = LatencyProbe(settings=LatencySettings(threads=1))
    ratio: dict[str, float] = {}
    rows = []
    for p in pairs(args):
        keys = {w: model_key(p, w) for w in ("baseline_trial", "searched_trial")}
        if any(k not in extra for k in keys.values()):
            log.warning("%s seed %s %s: not trained yet, skipped", p["sampler"], p["seed"], p["baseline"])
            continue
        for w in keys:
            cid = p[w]["config_id"]
            if cid not in ratio:
                ratio[cid] = probe.measure(GhostNetConfig.from_dict(p[w]["config"])).ratio_to_reference
        # Every run: the search's, confirm's, the extra seeds. Judged on the extra seeds alone
        # for confirmed pairs (the other runs picked the pair), on every run otherwise.
        every = {w: [p[w]["accuracy"], *p[w]["confirm_accuracies"], *extra[k]] for w, k in keys.items()}
        judged = {w: extra[k] for w, k in keys.items()} if args.confirmed else every
        b, s = judged["baseline_trial"], judged["searched_trial"]
        d = statistics.mean(s) - statistics.mean(b)
        se = math.sqrt(statistics.variance(s) / len(s) + statistics.variance(b) / len(b))
        lat = ratio[p["searched_trial"]["config_id"]] / ratio[p["baseline_trial"]["config_id"]]
        flops = p["searched_trial"]["flops"] / p["baseline_trial"]["flops"]
        rows.append({
            "sampler": p["sampler"], "seed": p["seed"], "baseline": p["baseline"], "searched_trial": p["best_trial"],
            "search": {"d_accuracy": p["d_accuracy"], "latency_x": p["latency_ratio"], "flops_x": p["flops_ratio"], "dominated": p["dominated_by"] > 0},
            "n_runs": [len(b), len(s)], "baseline_acc": [round(statistics.mean(b), 4), round(statistics.stdev(b), 4)],
            "searched_acc": [round(statistics.mean(s), 4), round(statistics.stdev(s), 4)],
            "d_accuracy": round(d, 4), "d_se": round(se, 4), "latency_ratio_x": round(lat, 3), "flops_x": round(flops, 3),
            "dominates": d >= 0 and lat <= 1 and flops <= 1,
            "every_run": {w.split("_")[0]: [len(v), round(statistics.mean(v), 4)] for w, v in every.items()},
        })  # fmt: skip
    print("| sampler | seed | baseline | searched | in the search: d acc, latency x, dominated | baseline acc (mean ± sd) | searched acc | d acc ± se | re-timed latency x (ratio to reference) | FLOPs x | dominates on the means | every run: baseline / searched (runs) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sr = r["search"]
        print(f"| {r['sampler']} | {r['seed']} | {r['baseline'].replace('ghostnet-', '')} | #{r['searched_trial']} | "
              f"{sr['d_accuracy']:+.3f}, {sr['latency_x']}x, {'yes' if sr['dominated'] else 'no'} | "
              f"{r['baseline_acc'][0]:.3f} ± {r['baseline_acc'][1]:.3f} | {r['searched_acc'][0]:.3f} ± {r['searched_acc'][1]:.3f} | "
              f"{r['d_accuracy']:+.3f} ± {r['d_se']:.3f} | {r['latency_ratio_x']}x | {r['flops_x']}x | {'**yes**' if r['dominates'] else 'no'} | "
              f"{r['every_run']['baseline'][1]:.3f} / {r['every_run']['searched'][1]:.3f} ({r['every_run']['baseline'][0]}, {r['every_run']['searched'][0]}) |")  # fmt: skip
    return {"env": env(), "command": " ".join(sys.argv), "pairs": rows}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["train", "report"])
    parser.add_argument("--work", type=Path, required=True, help="search_quality.py's --work")
    parser.add_argument("--samplers", type=lambda s: s.split(","), default=["tpe", "nsga2", "random"])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--extra-seeds", type=int, default=3, help="training seeds added to the search's one")
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--shard", default="0/1", help="I/N: train only models I, I+N, ... (sorted by key)")
    parser.add_argument("--json", type=Path, help="report: also write the figures here")
    parser.add_argument("--confirmed", type=int, default=None, metavar="N",
                        help="studies confirmed with N runs: pairs on the means, judged on the extra seeds alone")
    args = parser.parse_args()
    if args.phase == "train":
        train(args)
        return
    result = report(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
