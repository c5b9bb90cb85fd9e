"""CPU latency of the Ghost family at the same width, measured side by side in one process.

GhostNet v1, GhostNetV2 (DFC attention), GhostNetV3 (fused, the inference form) and the YOLOv5
Ghost module (5x5 cheap op, SiLU, no SE), all on the official 1.0x table, plus v1 with a dilated
cheap op. Each round runs every model once, in a shuffled order; the figures are medians over the
rounds, and each model's ratio to v1 is the median of the per-round ratios, so load that drifts
slower than one round cancels out of it (the machine may be shared). ``uptime`` is recorded before
and after. Results are appended to a JSON-lines file, one line per run.

    nice -n 19 .venv/bin/python bench/family_latency.py                       # 224x224, 1 thread
    nice -n 19 .venv/bin/python bench/family_latency.py --size 160 --threads 2 --rounds 40
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script from any directory

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from evaluators.flops import count_cost  # noqa: E402
from evaluators.latency import cpu_model  # noqa: E402
from spaces import GhostNetConfig, build_model, reference  # noqa: E402


def family(size: int) -> dict[str, GhostNetConfig]:
    """The models compared: the same table at width 1.0, one per block type / module."""
    v1 = reference("ghostnet-1.0x", input_size=size)
    no_se = tuple(tuple(dataclasses.replace(b, se=0.0) for b in stage) for stage in v1.stages)
    return {
        "v1 (ghost)": v1,
        "v2 (ghostv2, DFC)": reference("ghostnetv2-1.0x", input_size=size),
        "v3 (ghostv3, fused)": reference("ghostnetv3-1.0x", input_size=size),
        "yolov5 module": v1.replace(module="yolov5", dw_size=5, stages=no_se),
        "v1, cheap op dilation 2": v1.replace(dw_dilation=2),
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def measure(configs: dict[str, GhostNetConfig], *, size: int, rounds: int, warmup: int, seed: int) -> dict[str, list[float]]:
    """Per model, the milliseconds of each timed round (batch 1, no grad, eval mode, fused)."""
    torch.manual_seed(0)
    models = {name: build_model(config, deploy=True) for name, config in configs.items()}
    x = torch.randn(1, 3, size, size)
    times: dict[str, list[float]] = {name: [] for name in models}
    rng = random.Random(seed)
    with torch.inference_mode():
        for _ in range(warmup):
            for model in models.values():
                model(x)
        for _ in tqdm(range(rounds), desc="rounds", file=sys.stderr):
            order = list(models)
            rng.shuffle(order)
            for name in order:
                start = time.perf_counter()
                models[name](x)
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def summarise(configs: dict[str, GhostNetConfig], times: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    base = times[next(iter(times))]
    rows = {}
    for name, ms in times.items():
        cost = count_cost(configs[name])
        q = statistics.quantiles(ms, n=4)
        rows[name] = {
            "median_ms": statistics.median(ms),
            "iqr_over_median": (q[2] - q[0]) / statistics.median(ms),
            "ratio_to_v1": statistics.median(a / b for a, b in zip(ms, base)),
            "flops": cost.flops,
            "params": cost.params,
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "family_latency.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = family(args.size)
    before = uptime()
    started = datetime.now(timezone.utc)
    times = measure(configs, size=args.size, rounds=args.rounds, warmup=args.warmup, seed=args.seed)
    record = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(timezone.utc) - started).total_seconds(), 1),
        "uptime_before": before,
        "uptime_after": uptime(),
        "size": args.size, "threads": args.threads, "rounds": args.rounds, "warmup": args.warmup,
        "cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version(),
        "models": summarise(configs, times),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"{'model':26} {'median ms':>10} {'IQR/med':>8} {'x v1':>6} {'MFLOPs':>7} {'M params':>8}")
    for name, row in record["models"].items():
        print(f"{name:26} {row['median_ms']:10.2f} {row['iqr_over_median']:8.2f} {row['ratio_to_v1']:6.3f} {row['flops'] / 1e6:7.1f} {row['params'] / 1e6:8.2f}")
    print(f"load: before '{before}', after '{record['uptime_after']}'")


if __name__ == "__main__":
    main()
