"""What a ghost module's cheap operation costs in eager PyTorch, by its kernel: a 1x1 grouped conv
(the cheap op at ``dw_size`` 1) against a 3x3 depthwise conv and a dense 1x1 conv of the same
channels, at batch 1, one thread.

Each layer is timed interleaved with the dense 1x1 conv of the same shape (pairs of calls, the
per-pair ratio's median), so a slower or busier machine moves both sides of every pair alike and
the ratios hold under load. Prints a Markdown table; ``--json`` writes the raw figures too.

    .venv/bin/python bench/grouped_conv.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn


def per_call_us(layer: nn.Module, x: torch.Tensor, *, calls: int) -> float:
    start = time.thread_time_ns()
    for _ in range(calls):
        layer(x)
    return (time.thread_time_ns() - start) / calls / 1e3


def compare(layer: nn.Module, dense: nn.Module, x: torch.Tensor, *, pairs: int) -> tuple[float, float]:
    """(median us per call of ``layer``, median per-pair ratio of ``layer`` to ``dense``)."""
    with torch.inference_mode():
        for _ in range(3):
            layer(x), dense(x)
        calls = max(1, int(2000 / max(per_call_us(layer, x, calls=1), per_call_us(dense, x, calls=1), 1.0)))  # ~2 ms a side
        times, ratios = [], []
        for _ in range(pairs):
            a, b = per_call_us(layer, x, calls=calls), per_call_us(dense, x, calls=calls)
            times.append(a)
            ratios.append(a / b)
    return statistics.median(times), statistics.median(ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 128, 544])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16], help="input height = width")
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    print("| channels | input | dense 1x1 us | 1x1 grouped (depthwise) us | x dense | 3x3 depthwise us | x dense |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        for c in args.channels:
            x = torch.randn(1, c, size, size)
            dense = nn.Conv2d(c, c, 1, bias=False).eval()
            grouped = nn.Conv2d(c, c, 1, groups=c, bias=False).eval()
            depthwise = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False).eval()
            with torch.inference_mode():
                dense_us = statistics.median(per_call_us(dense, x, calls=200) for _ in range(5))
            g_us, g_ratio = compare(grouped, dense, x, pairs=args.pairs)
            d_us, d_ratio = compare(depthwise, dense, x, pairs=args.pairs)
            rows.append({"channels": c, "size": size, "dense_us": dense_us, "grouped1x1_us": g_us, "grouped1x1_x_dense": g_ratio,
                         "depthwise3x3_us": d_us, "depthwise3x3_x_dense": d_ratio})  # fmt: skip
            print(f"| {c} | {size}x{size} | {dense_us:.1f} | {g_us:.1f} | {g_ratio:.1f} | {d_us:.1f} | {d_ratio:.2f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
