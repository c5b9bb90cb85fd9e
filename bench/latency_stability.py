"""Latency probe stability: probe the same sampled models twice, in two separate processes.

A search ranks architectures by latency, so what matters is that a second probe of the same
models, later and in a fresh process, ranks them the same way and lands close in value. This
samples models from the default search space with a fixed seed, runs two worker processes one
after the other (each probes every model once, in its own shuffled order, with one
``LatencyProbe``), and reports Spearman and Kendall between the passes and the median relative
difference, for the absolute median, the ratio to the interleaved reference model, and the
calibrated latency a search records (``calibrated_ms``: the ratio times one reference latency
timed once before the passes, as a study stores it; ``calibrated_own_ms``: the ratio times a
reference timed in each pass's own process, as two ``eval`` commands give it).

    .venv/bin/python bench/latency_stability.py                 # 20 models, default settings
    .venv/bin/python bench/latency_stability.py --max-seconds 3 # try other probe settings
    .venv/bin/python bench/latency_stability.py --busy 2        # with two busy processes running
    .venv/bin/python bench/latency_stability.py --backend onnxruntime --repeats 3
    .venv/bin/python bench/latency_stability.py --device cuda   # on a GPU (CUDA events)

Target (issue 15): on the calibrated figure, Kendall >= 0.95 and median relative difference
<= 3 %, quiet and with two busy processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script from any directory

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from evaluators.calibration import calibrate  # noqa: E402
from evaluators.latency import LatencyProbe, LatencySettings  # noqa: E402
from spaces import GhostNetConfig, load_space, random_suggest  # noqa: E402

log = logging.getLogger("bench.latency_stability")

METRICS = ("median_ms", "ratio_to_reference", "calibrated_ms", "calibrated_own_ms")
TUNABLE = ("warmup", "min_runs", "max_runs", "max_seconds", "target_spread", "threads", "backend", "memory_format", "device", "clock")


def sample_configs(*, count: int, seed: int, preset: str) -> list[GhostNetConfig]:
    """``count`` configs drawn uniformly from the default search space (each dimension independently)."""
    space = load_space()
    suggest = random_suggest(random.Random(seed))
    return [space.to_config(space.sample(suggest), preset=preset, num_classes=10) for _ in range(count)]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_worker(*, configs_path: Path, out_path: Path, settings: dict[str, Any], pass_index: int, stored_ms: float) -> None:
    """One pass: probe every config once, in a shuffled order, and write the results as JSON."""
    configs = [GhostNetConfig.from_dict(c) for c in json.loads(configs_path.read_text())]
    order = list(range(len(configs)))
    random.Random(pass_index).shuffle(order)  # so a slow drift cannot line up with the list order
    probe = LatencyProbe(settings=LatencySettings(**settings))
    load_before, uptime_before = os.getloadavg(), uptime()
    own = calibrate(probe, configs[0])  # as eval does: the reference timed in this process
    started = time.perf_counter()
    rows: dict[int, dict[str, Any]] = {}
    for i in order:
        t0 = time.perf_counter()
        result = probe.measure(configs[i])
        ratio = result.ratio_to_reference
        rows[i] = {
            **result.to_dict(include_times=True), "id": configs[i].id, "seconds": time.perf_counter() - t0,
            "calibrated_ms": ratio * stored_ms, "calibrated_own_ms": ratio * own.reference_ms,
        }  # fmt: skip
    out_path.write_text(
        json.dumps(
            {
                "pass": pass_index,
                "wall_s": time.perf_counter() - started,
                "own_reference_ms": own.reference_ms,
                "uptime_before": uptime_before,
                "uptime_after": uptime(),
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                "results": [rows[i] for i in range(len(configs))],
            }
        )
    )


def compare(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    figures = {}
    for metric in METRICS:
        a = np.array([r[metric] for r in first])
        b = np.array([r[metric] for r in second])
        rel = np.abs(a - b) / ((a + b) / 2)  # symmetric: neither pass is "the truth"
        figures[metric] = {
            "spearman": float(stats.spearmanr(a, b).statistic),
            "kendall": float(stats.kendalltau(a, b).statistic),
            "median_rel_diff": float(np.median(rel)),
            "max_rel_diff": float(np.max(rel)),
            "range": float(a.max() / a.min()),
        }
    return figures


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| figure | Spearman | Kendall | median rel. diff | max rel. diff | max/min across models |",
        "|---|---|---|---|---|---|",
    ]
    for metric, f in report["figures"].items():
        lines.append(
            f"| `{metric}` | {f['spearman']:.3f} | {f['kendall']:.3f} | {f['median_rel_diff']:.1%} "
            f"| {f['max_rel_diff']:.1%} | {f['range']:.2f} |"
        )
    lines += [
        "",
        "| pass | wall s | mean s per probe | unstable probes | own reference ms | load avg (1 min) before -> after |",
        "|---|---|---|---|---|---|",
    ]
    for p in report["passes"]:
        seconds = [r["seconds"] for r in p["results"]]
        unstable = sum(r["unstable"] for r in p["results"])
        lines.append(
            f"| {p['pass']} | {p['wall_s']:.1f} | {np.mean(seconds):.2f} | {unstable}/{len(seconds)} "
            f"| {p['own_reference_ms']:.3f} | {p['loadavg_before'][0]:.2f} -> {p['loadavg_after'][0]:.2f} |"
        )
    lines += ["", f"stored reference {report['stored_reference_ms']:.3f} ms; busy processes: {report['busy']}"]
    lines += [f"uptime pass {p['pass']}: {p['uptime_before']} -> {p['uptime_after']}" for p in report["passes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="cifar", choices=("cifar", "imagenet"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "latency_stability.json")
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes to run beside the passes (load)")
    parser.add_argument("--repeats", type=int, default=1, help="two-pass comparisons to run, one after the other")
    for name in TUNABLE:
        kind = {"backend": str, "memory_format": str, "device": str, "clock": str, "max_seconds": float, "target_spread": float}.get(name, int)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help="LatencySettings field")
    parser.add_argument("--worker", nargs=2, type=Path, metavar=("CONFIGS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--pass-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--stored-ms", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.worker:
        configs_path, out_path = args.worker
        settings = json.loads(args.settings)
        run_worker(configs_path=configs_path, out_path=out_path, settings=settings, pass_index=args.pass_index, stored_ms=args.stored_ms)
        return 0

    settings = {name: getattr(args, name) for name in TUNABLE if getattr(args, name) is not None}
    effective = dataclasses.asdict(LatencySettings(**settings))  # validates before any work
    configs = sample_configs(count=args.models, seed=args.seed, preset=args.preset)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        reports = [run_repeat(args, settings, effective, configs, busy=args.busy, repeat=r) for r in range(args.repeats)]
    finally:
        for p in busy:
            p.kill()
            p.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(reports if args.repeats > 1 else reports[0], indent=2))
    print(f"full results: {args.out}")
    return 0


def run_repeat(args: argparse.Namespace, settings: dict[str, Any], effective: dict[str, Any], configs: list[GhostNetConfig], *, busy: int, repeat: int) -> dict[str, Any]:
    """One two-pass comparison; the stored reference is timed first, as a study's creation does."""
    stored = calibrate(LatencyProbe(settings=LatencySettings(**settings)), configs[0])
    passes = []
    with tempfile.TemporaryDirectory(prefix="ghostnas-bench-") as tmp:
        configs_path = Path(tmp) / "configs.json"
        configs_path.write_text(json.dumps([c.to_dict() for c in configs]))
        for pass_index in (1, 2):
            out_path = Path(tmp) / f"pass{pass_index}.json"
            log.info("repeat %d pass %d: probing %d models in a fresh process", repeat, pass_index, len(configs))
            cmd = [
                sys.executable, __file__, "--worker", str(configs_path), str(out_path), "--pass-index", str(pass_index),
                "--settings", json.dumps(settings), "--stored-ms", repr(stored.reference_ms),
            ]  # fmt: skip
            subprocess.run(cmd, check=True)
            passes.append(json.loads(out_path.read_text()))
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": passes[0]["results"][0]["env"]["cpu"],
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "settings": effective,
        "busy": busy,
        "stored_reference_ms": stored.reference_ms,
        "memory_format": passes[0]["results"][0]["env"]["memory_format"],
        "figures": compare(passes[0]["results"], passes[1]["results"]),
        "passes": passes,
    }
    print(markdown(report))
    print(f"\n{report['date']} · {report['cpu']} ({report['cores']} cores) · torch {report['torch']} · "
          f"memory format {report['memory_format']} · settings {json.dumps(settings) if settings else 'defaults'}\n", flush=True)
    return report


if __name__ == "__main__":
    sys.exit(main())
