"""From search to deployable model on CIFAR-10: the width family against the best confirmed
searched model, trained with the same full-training budget, side by side.

The whole path runs through the command line, as a user would run it:

1. ``search``: a small study on the CIFAR-10 training split (the width family enqueued first);
2. ``confirm``: its front and baselines retrained with more seeds;
3. ``train --study ... --trial N``: each width-family baseline and the most accurate confirmed
   searched (non-baseline) front member, every one with the same epochs, data and input size;
4. ``eval --run DIR --json``: params, FLOPs and latency (PyTorch and ONNX Runtime, each with the
   ratio to GhostNet 1.0x timed beside it) of each trained run.

Each model's record is appended to ``--results`` (JSON lines) as soon as it is evaluated; a
model already there is skipped, and ``train`` itself resumes from its last finished epoch, so
the benchmark can be stopped and rerun. ``--shard I/N`` trains every N-th model (one process
per core); ``--report`` prints the markdown table of what finished.

    nice -n 19 .venv/bin/python bench/train_cifar.py --work /tmp/ghostnas-bench/tc --search-only
    for i in 0 1; do nice -n 19 .venv/bin/python bench/train_cifar.py --work /tmp/ghostnas-bench/tc --skip-search --shard $i/2 & done; wait
    .venv/bin/python bench/train_cifar.py --work /tmp/ghostnas-bench/tc --results docs/bench/train_cifar.jsonl --report
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script from any directory

log = logging.getLogger("bench.train_cifar")

DATA = "/work/shared/data/cifar10/train.tar.gz"
STUDY = "cifar-train"
WIDTHS = ("ghostnet-0.35x", "ghostnet-0.5x", "ghostnet-0.75x", "ghostnet-1.0x", "ghostnet-1.3x")


def cli(*args: str) -> str:
    """Run ``cli.py`` with one torch thread; its stdout (stderr passes through)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], env=env, stdout=subprocess.PIPE, text=True, check=True)
    return done.stdout


def search_and_confirm(args: argparse.Namespace) -> None:
    study = ["--study", STUDY, "--storage", storage(args)]
    cli(
        "-q", "search", *study, "--out", str(args.work / "study"), "--dataset", args.dataset, "--trials", str(args.trials),
        "--subset", str(args.search_subset), "--input-size", str(args.input_size), "--seed", "0", "--no-progress",
    )  # fmt: skip
    if args.confirm_runs > 1:
        cli("-q", "confirm", *study, "--runs", str(args.confirm_runs), "--no-progress")


def storage(args: argparse.Namespace) -> str:
    return f"sqlite:///{(args.work / 'study' / 'study.db').resolve()}"


def models(args: argparse.Namespace) -> list[tuple[str, int | None]]:
    """(name, trial number): the most accurate confirmed searched front member, then the widths
    (None: no finished trial of that baseline, trained from the reference table instead)."""
    from results import load_trials, open_study, pareto_front
    from search import open_storage

    frame = load_trials(open_study(storage=open_storage(storage(args), must_exist=True), study_name=STUDY))
    front = pareto_front(frame)
    searched = front[front["baseline"].isna() & (front["accuracy_runs"] >= args.confirm_runs)]
    if searched.empty:
        # The front holds only baselines: the most accurate searched trial, marked off the front,
        # so that the table still shows what the search found beside what it could not beat.
        searched = frame[frame["baseline"].isna() & frame["feasible"] & frame["accuracy"].notna()]
    chosen = []
    if len(searched):
        best = searched.sort_values(["accuracy", "number"], ascending=[False, True]).iloc[0]
        on_front = int(best["number"]) in set(front["number"])
        chosen.append((f"searched (trial {int(best['number'])}{'' if on_front else ', off the front'})", int(best["number"])))
    else:
        log.warning("no searched model to train: only the width family is trained")
    baselines = frame[frame["baseline"].notna() & (frame["state"] == "COMPLETE")]
    for name in args.widths.split(","):
        rows = baselines[baselines["baseline"] == name]
        # A baseline whose trial failed (its worker was stopped) is trained from the reference.
        chosen.append((name, int(rows.iloc[0]["number"]) if len(rows) else None))
    return chosen


def train_and_time(args: argparse.Namespace, name: str, number: int | None) -> dict:
    run = args.work / f"train{args.tag}-{name if number is None else number}"
    source = ["--study", STUDY, "--storage", storage(args), "--trial", str(number)] if number is not None else [
        "--reference", name, "--preset", "cifar", "--dataset", args.dataset]  # fmt: skip
    t = time.time()
    cli(
        "-q", "train", *source, "--out", str(run),
        "--epochs", str(args.epochs), "--subset", str(args.subset), "--val-fraction", str(args.val_fraction),
        "--input-size", str(args.input_size), "--batch-size", str(args.batch_size), "--no-progress",
    )  # fmt: skip
    wall = time.time() - t
    evaluation = json.loads(cli("-q", "eval", "--run", str(run), "--json"))
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "model": name, "trial": number, "val_accuracy": metrics["val_accuracy"], "epochs": metrics["epochs"], "batch_size": args.batch_size,
        "history": [h["val_accuracy"] for h in metrics["history"]], "train_seconds": metrics["seconds"], "wall_seconds": wall,
        "params": evaluation["params"], "flops": evaluation["flops"],
        "latency_torch_ms": evaluation["latency_torch"]["median_ms"], "ratio_torch": evaluation["latency_torch"]["ratio_to_reference"],
        "latency_ort_ms": evaluation["latency_onnxruntime"]["median_ms"], "ratio_ort": evaluation["latency_onnxruntime"]["ratio_to_reference"],
        "onnx_max_abs_diff": metrics["onnx"]["max_abs_diff"], "dataset": metrics["dataset"],
        "env": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg": os.getloadavg(), "python": platform.python_version(), **metrics["versions"]},
    }  # fmt: skip


def done_models(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {r["model"]: r for r in map(json.loads, path.read_text().splitlines()) if r}


def report(path: Path) -> str:
    rows = list(done_models(path).values())
    lines = [
        "| model | trial | val top-1 | params | MACs | latency PyTorch ms (x 1.0x) | latency ORT ms (x 1.0x) | train s | finished |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['trial'] if r['trial'] is not None else 'reference'} | {r['val_accuracy']:.4f} | {r['params'] / 1e6:.3f} M | {r['flops'] / 1e6:.2f} M "
            f"| {r['latency_torch_ms']:.3f} ({r['ratio_torch']:.3f}) | {r['latency_ort_ms']:.3f} ({r['ratio_ort']:.3f}) "
            f"| {r['train_seconds']:.0f} | {r['env']['date']}, load {r['env']['loadavg'][0]:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ghostnas-bench/tc"))
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "bench" / "train_cifar.jsonl")
    parser.add_argument("--dataset", default=DATA)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--search-subset", type=int, default=1200)
    parser.add_argument("--confirm-runs", type=int, default=2, help="runs per model for confirm; 1: no confirm (the best searched trial is trained unconfirmed)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--subset", type=int, default=8000)
    parser.add_argument("--val-fraction", type=float, default=0.125)
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--tag", default="", help="run directories are train<TAG>-<trial>: one set per budget")
    parser.add_argument("--widths", default=",".join(WIDTHS), help="the width-family members to train, in this order")
    parser.add_argument("--shard", default="0/1", help="I/N: train every N-th model starting at I")
    parser.add_argument("--skip-search", action="store_true", help="the study is there (another shard made it)")
    parser.add_argument("--search-only", action="store_true", help="search and confirm, then stop (before shards start)")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.report:
        print(report(args.results))
        return 0
    index, count = (int(v) for v in args.shard.split("/"))
    if not args.skip_search:
        search_and_confirm(args)
    if args.search_only:
        return 0
    done = done_models(args.results)
    for name, number in models(args)[index::count]:
        if name in done:
            continue
        log.info("training %s (trial %s)", name, number)
        record = train_and_time(args, name, number)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as out:
            out.write(json.dumps(record) + "\n")
        log.info("%s: val top-1 %.4f, %.3f ms", name, record["val_accuracy"], record["latency_torch_ms"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
