"""Time to count params and FLOPs of one model with fvcore (the first, cheapest score).

    .venv/bin/python bench/flops_count.py [--repeats 5]

Median seconds per model at 224x224 (imagenet preset), split into building the model and the
fvcore trace + count, over the reference width family.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from evaluators.flops import count_model
from spaces import build_model, reference, reference_names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| model | build s | count s | FLOPs (MACs) |\n|---|---:|---:|---:|")
    for name in reference_names():
        builds, counts = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model = build_model(reference(name))
            built = time.perf_counter()
            with torch.no_grad():
                cost = count_model(model, 224)
            builds.append(built - start)
            counts.append(time.perf_counter() - built)
        print(f"| {name} | {statistics.median(builds):.3f} | {statistics.median(counts):.3f} | {cost.flops / 1e6:.1f} M |")


if __name__ == "__main__":
    main()
