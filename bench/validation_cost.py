"""Validation after every proxy epoch against once at the end, in the default search setting.

The search measures validation accuracy after each epoch only when an early-stopping rung lies
inside the budget; this times what that saves. Default setting: scikit-learn's digits, the
``cifar`` preset (32 px), the default 80/20 split, the default 2 epochs, 1 thread. Prints the
median of ``--repeats`` runs of each way, per model, and the share saved.

    .venv/bin/python bench/validation_cost.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script from any directory

from evaluators.data import load_dataset, proxy_split  # noqa: E402
from evaluators.training import TrainSettings, train_proxy  # noqa: E402
from spaces import reference  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ghostnet-0.5x", "ghostnet-1.0x"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    train, val = proxy_split(load_dataset("digits"), seed=0, val_fraction=0.2)
    settings = TrainSettings(progress=False, threads=1)
    print(f"# {len(train)} train / {len(val)} validation images, {settings.epochs} epochs, medians of {args.repeats}")
    print("| model | every epoch s | last epoch only s | saved |")
    print("|---|---:|---:|---:|")
    for name in args.models:
        config = reference(name, preset="cifar", num_classes=10)
        every, last = [], []
        for _ in range(args.repeats):  # alternate, so drifts in machine speed hit both alike
            every.append(sum(train_proxy(config, train, val, settings, on_epoch=lambda epoch, accuracy: True).seconds.values()))
            last.append(sum(train_proxy(config, train, val, settings).seconds.values()))
        a, b = statistics.median(every), statistics.median(last)
        print(f"| {name} | {a:.1f} | {b:.1f} | {(a - b) / a:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
