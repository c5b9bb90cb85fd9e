"""Which full-training recipe: nesterov SGD at several peak learning rates against AdamW, one budget.

``ghostnas train``'s defaults (``evaluators.trainer.RunSettings``) are chosen from this (issue 17).
Every recipe trains the same models on the same CIFAR-10 images with the same budget, schedule
(warm-up then cosine to zero), augmentation, label smoothing and adaptive BN; only the optimizer,
its learning rate and weight decay differ. Images: the ground-truth pool only (``bench/ground_truth.py``
holds its 10,000 images out of everything else), ``--images`` of it for training and 5,000 fixed
pool images for validation, as ``bench/proxy_ranking.py`` cuts them.

Each run is appended to ``--results`` (JSON lines) when it ends; a (recipe, model, seed) already
there is skipped, so the same command continues a stopped sweep. ``--shard I/N`` runs every N-th
run (one process per core); ``--report`` prints the table: each recipe's mean accuracy per model
over the seeds, and the seeds' spread.

    OMP_NUM_THREADS=1 .venv/bin/python bench/train_recipe.py --shard 0/2 &
    OMP_NUM_THREADS=1 .venv/bin/python bench/train_recipe.py --shard 1/2 &
    .venv/bin/python bench/train_recipe.py --report
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script from any directory
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ground_truth as gt  # noqa: E402
from proxy_ranking import proxy_data  # noqa: E402
from evaluators.trainer import RunSettings, train_run  # noqa: E402
from spaces import reference  # noqa: E402

log = logging.getLogger("bench.train_recipe")

DEFAULT_RESULTS = ROOT / "docs" / "bench" / "train_recipe.jsonl"
# name -> the RunSettings fields it changes. AdamW's decay is decoupled (multiplied by the lr), so
# it takes the usual 0.05 rather than SGD's 5e-4.
RECIPES = {
    "sgd-0.05": {"optimizer": "sgd", "lr": 0.05},
    "sgd-0.1": {"optimizer": "sgd", "lr": 0.1},
    "sgd-0.2": {"optimizer": "sgd", "lr": 0.2},
    "sgd-0.4": {"optimizer": "sgd", "lr": 0.4},
    "adamw-0.001": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05},
    "adamw-0.003": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05},
    "adamw-0.01": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.05},
}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def report(rows: list[dict]) -> str:
    by = defaultdict(list)
    for r in rows:
        by[(r["recipe"], r["model"])].append(r)
    models = sorted({m for _, m in by}, key=lambda m: float(m.split("-")[1].rstrip("x")))
    lines = ["| recipe | " + " | ".join(f"{m} (mean ± half-range, seeds)" for m in models) + " | mean over models |",
             "|---|" + "---:|" * (len(models) + 1)]  # fmt: skip
    for recipe in RECIPES:
        cells, means = [], []
        for m in models:
            accs = [r["accuracy"] for r in by.get((recipe, m), [])]
            if accs:
                means.append(np.mean(accs))
                cells.append(f"{np.mean(accs):.4f} ± {(max(accs) - min(accs)) / 2:.4f} ({len(accs)})")
            else:
                cells.append("-")
        if means:
            overall = f"{np.mean(means):.4f}" if len(means) == len(models) else "-"
            lines.append(f"| {recipe} | " + " | ".join(cells) + f" | {overall} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=gt.DEFAULT_DATA)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--models", default="ghostnet-0.5x", help="width-family members, comma-separated")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--shard", default="0/1", help="I/N: this process runs runs I, I+N, ... of the work list")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.report:
        print(report(read(args.results)))
        return 0
    unknown = set(args.recipes.split(",")) - set(RECIPES)
    if unknown:
        parser.error(f"unknown recipes {sorted(unknown)}; known: {', '.join(RECIPES)}")
    shard, shards = map(int, args.shard.split("/"))
    torch.set_num_threads(1)

    pool, _ = gt.holdout_split(gt.load_dataset(str(args.data)))
    train, val = proxy_data(pool, val=5000, largest=args.images)
    work = [(r, m, s) for s in args.seeds for m in args.models.split(",") for r in args.recipes.split(",")]
    for i, (recipe, model, seed) in enumerate(work):
        key = {"recipe": recipe, "model": model, "seed": seed, "images": len(train), "epochs": args.epochs,
               "input_size": args.input_size, "batch_size": args.batch_size}  # fmt: skip
        if i % shards != shard or any({k: r.get(k) for k in key} == key for r in read(args.results)):
            continue
        config = reference(model, preset="cifar", num_classes=10, input_size=args.input_size)
        settings = RunSettings(epochs=args.epochs, batch_size=args.batch_size, seed=seed, progress=False, **RECIPES[recipe])
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            run = train_run(config, train, val, settings, out=Path(out) / "run", request={"bench": "train_recipe"})
        row = {**key, "recipe_settings": RECIPES[recipe], "accuracy": run.history[-1]["val_accuracy"],
               "history": [h["val_accuracy"] for h in run.history], "val_images": len(val),
               "seconds": round(time.perf_counter() - t, 1), "load": round(os.getloadavg()[0], 2),
               "finished": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}", "torch": torch.__version__}  # fmt: skip
        with gt.locked(args.results):
            with args.results.open("a") as f:
                f.write(json.dumps(row) + "\n")
        log.info("%s %s seed %d: %.4f in %.0f s", recipe, model, seed, row["accuracy"], row["seconds"])
    print(report(read(args.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
