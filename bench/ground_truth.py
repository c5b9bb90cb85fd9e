"""Ground truth: every model of a fixed set trained with a long recipe, validated on held-out images.

The asset every cheap accuracy estimator is judged on (issue 18; ``bench/proxy_ranking.py`` ranks
the estimators against it). The models: the five width-family baselines (ghostnet-0.35x ... 1.3x)
and ``--models`` configs sampled from the default space (cifar preset), stratified by FLOPs: a
seeded pool of ``--pool`` uniform samples is cut into ``--models`` bins of equal width in log
FLOPs and each bin gives one (a seeded draw), so the set spans the whole FLOPs range the space
produces and is the same on every machine for the same seeds.

The data: the CIFAR-10 training split (``../shared/data/cifar10/train.tar.gz``, decoded once into
the cache outside the project). :func:`holdout_split` cuts it once, stratified, with
``HOLDOUT_SEED``: ``--holdout`` (10,000) images are the validation set of every ground-truth run,
and nothing in ``bench/proxy_ranking.py`` ever trains or validates on them; the other 40,000 are
the pool that the ground truth trains on (``--train-images`` of it, all by default) and that every
proxy run draws its own training and validation images from.

The recipe: the proxy trainer (``evaluators.training.train_proxy``: nesterov SGD, label
smoothing, warm-up + cosine to zero, adaptive BN) with its default settings, only longer
(``--epochs``) and on more images, at ``--input-size`` (16) px.

Results: ``docs/bench/ground_truth.jsonl``, one JSON object per line and model,
``{"name", "config", "id", "params", "flops", "runs": [{"seed", "accuracy", "epochs", "images",
"input_size", "holdout", "holdout_seed", "seconds", "threads", "load", "finished"}, ...]}``.
A run is written the moment it finishes (under a lock file, by re-reading, merging and atomically
replacing the file), so several processes can share one file and a killed process loses only the
run it was in. Processes share the work by claims: before training a run, a process records it in
``<results>.claims`` (under the same lock) and skips the runs another live process holds there, so
every process stays busy until the work list is done, whatever each run costs. A claim whose
process has ended (or whose machine has restarted since) is taken over; a claim made on another
machine is respected until its file is deleted.

``--resume`` is how to continue: without it the script refuses a results file that already holds
runs; with it, every run already in the file with the same model, seed and recipe (epochs,
images, input size, held-out split) is skipped and only the missing ones are trained. So the same
command, repeated with ``--resume``, finishes the table; a command with another recipe adds
its runs beside the old ones (each run records its recipe). Order of work: seed by seed, and
within a seed the models in an order whose every prefix spans the FLOPs range (the baselines
first), so a partial table is already a spread.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/ground_truth.py --resume &   # one per core
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/ground_truth.py --resume &
    .venv/bin/python bench/ground_truth.py --report     # the table, training nothing

On a GPU: ``--device cuda --threads 1`` (same recipe, same file format).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import random
import socket
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script from any directory

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from evaluators.data import ImageSet, load_dataset, proxy_split  # noqa: E402
from evaluators.flops import count_cost  # noqa: E402
from evaluators.latency import cpu_model  # noqa: E402
from evaluators.training import TrainingFailed, TrainSettings, train_proxy  # noqa: E402
from spaces import REFERENCE_WIDTHS, GhostNetConfig, load_space, random_suggest, reference  # noqa: E402

log = logging.getLogger("bench.ground_truth")

DEFAULT_DATA = Path("/work/shared/data/cifar10/train.tar.gz")
DEFAULT_RESULTS = ROOT / "docs" / "bench" / "ground_truth.jsonl"
HOLDOUT_SEED = 18  # the number: a seed no search or earlier bench splits with
HOLDOUT = 10_000


def holdout_split(data: ImageSet, *, holdout: int = HOLDOUT, seed: int = HOLDOUT_SEED) -> tuple[ImageSet, ImageSet]:
    """(pool, held-out): a fixed, class-stratified cut of ``data``; the held-out images validate
    the ground truth and nothing else."""
    return proxy_split(data, seed=seed, val_fraction=holdout / len(data))


def draw(pool: ImageSet, count: int, *, seed: int) -> ImageSet:
    """``count`` images of ``pool``, a seeded uniform draw (the whole pool when ``count`` is all of it)."""
    if count >= len(pool):
        return pool
    index = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:count]
    return pool.subset(index.sort().values)


def stratified_configs(*, count: int, pool: int, seed: int, input_size: int) -> list[GhostNetConfig]:
    """``count`` configs of the default space, one from each of ``count`` equal bins in log FLOPs
    over ``pool`` seeded uniform samples (an empty bin gives the nearest unused sample)."""
    space = load_space()
    rng = random.Random(seed)
    suggest = random_suggest(rng)
    samples = [space.to_config(space.sample(suggest), preset="cifar", num_classes=10, input_size=input_size) for _ in range(pool)]
    logs = np.log([count_cost(c).flops for c in samples])
    edges = np.linspace(logs.min(), logs.max(), count + 1)
    chosen: list[int] = []
    for low, high in zip(edges[:-1], edges[1:]):
        members = [i for i in range(pool) if low <= logs[i] <= high and i not in chosen]
        if not members:
            centre = (low + high) / 2
            members = [min((i for i in range(pool) if i not in chosen), key=lambda i: abs(logs[i] - centre))]
        chosen.append(rng.choice(members))
    return [samples[i] for i in chosen]


def spread_order(n: int) -> list[int]:
    """0..n-1 in bit-reversed (van der Corput) order: every prefix is spread over the range."""
    bits = max(1, math.ceil(math.log2(max(n, 2))))
    keys = sorted(range(2**bits), key=lambda i: int(format(i, f"0{bits}b")[::-1], 2))
    return [i for i in keys if i < n]


def model_set(*, models: int, pool: int, seed: int, input_size: int) -> list[tuple[str, GhostNetConfig]]:
    """The baselines (in spread order) then the sampled models (sorted by FLOPs, in spread order)."""
    names = [f"ghostnet-{w}x" for w in REFERENCE_WIDTHS]  # the width family only, never later family members
    baselines = [(name, reference(name, preset="cifar", num_classes=10, input_size=input_size)) for name in names]
    sampled = sorted(stratified_configs(count=models, pool=pool, seed=seed, input_size=input_size), key=lambda c: count_cost(c).flops)
    named = [(f"sample-{i:02d}", c) for i, c in enumerate(sampled)]
    return [baselines[i] for i in spread_order(len(baselines))] + [named[i] for i in spread_order(len(named))]


def models_from_file(path: Path, *, input_size: int) -> list[tuple[str, GhostNetConfig]]:
    """The (name, config) of each ``{"name", "config"}`` line of ``path``, built for CIFAR-10 at
    ``input_size``; ValueError naming the first bad line."""
    models = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            config = GhostNetConfig.from_dict(row["config"]).replace(num_classes=10, input_size=input_size)
            models.append((str(row["name"]), config))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {number}: not a {{name, config}} object ({exc})") from None
    return models


# -- the results file ----------------------------------------------------------------------------


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """Rows by config id; a model found on several lines (concatenated files) gets all its runs."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = GhostNetConfig.from_dict(row["config"]).id
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"error: {path}:{n} is not a ground-truth row ({exc})") from None
        merged = rows.setdefault(key, {**row, "runs": []})
        merged["runs"].extend(r for r in row["runs"] if r not in merged["runs"])
    return rows


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_run(path: Path, *, name: str, config: GhostNetConfig, run: dict[str, Any]) -> None:
    """Add one finished run to its model's line (a new line for a new model), atomically."""
    with locked(path):
        rows = read_results(path)
        cost = count_cost(config)
        row = rows.setdefault(config.id, {"name": name, "id": config.id, "config": config.to_dict(),
                                          "params": cost.params, "flops": cost.flops, "runs": []})
        row["runs"].append(run)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
        tmp.replace(path)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _alive(claim: dict[str, Any]) -> bool:
    """Whether the process that made ``claim`` may still be training its run."""
    if claim.get("host") != socket.gethostname():
        return True  # another machine's process: nothing here can tell
    if claim.get("boot") != _boot_id():
        return False  # made before this machine restarted
    try:
        os.kill(claim["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def _update_claims(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    claims_file = path.with_name(path.name + ".claims")
    claims = json.loads(claims_file.read_text()) if claims_file.exists() else {}
    change(claims)
    tmp = claims_file.with_name(f"{claims_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(claims, indent=1))
    tmp.replace(claims_file)


def claim_run(path: Path, key: str, *, done: Callable[[dict[str, dict[str, Any]]], bool]) -> bool:
    """Claim the run ``key`` for this process: False if it is ``done`` in the results or a live
    process holds it, else recorded as this process's (one lock for both checks, so two processes
    never take the same run)."""
    with locked(path):
        if done(read_results(path)):
            return False
        taken = False

        def take(claims: dict[str, Any]) -> None:
            nonlocal taken
            held = claims.get(key)
            if held and held.get("pid") != os.getpid() and _alive(held):
                return
            claims[key] = {"pid": os.getpid(), "host": socket.gethostname(), "boot": _boot_id(),
                           "since": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"}
            taken = True

        _update_claims(path, take)
        return taken


def release_run(path: Path, key: str) -> None:
    with locked(path):
        _update_claims(path, lambda claims: claims.pop(key, None))


def recipe_of(run: dict[str, Any]) -> tuple:
    return (run["seed"], run["epochs"], run["images"], run.get("input_size"), run.get("holdout"), run.get("holdout_seed"))


# -- training and reporting ----------------------------------------------------------------------


def train_one(config: GhostNetConfig, train: ImageSet, val: ImageSet, settings: TrainSettings) -> dict[str, Any]:
    t = time.perf_counter()
    try:
        result = train_proxy(config, train, val, settings)
        accuracy, failed = result.accuracy, None
    except TrainingFailed as exc:
        accuracy, failed = None, exc.reason
    run = {"seed": settings.seed, "accuracy": accuracy, "epochs": settings.epochs, "images": len(train),
           "input_size": settings.input_size, "holdout": len(val), "holdout_seed": HOLDOUT_SEED,
           "seconds": round(time.perf_counter() - t, 1), "threads": settings.threads, "device": settings.device,
           "load": round(os.getloadavg()[0], 2), "finished": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"}
    if failed:
        run["failed"] = failed
    return run


def mean_accuracy(row: dict[str, Any], seeds: list[int] | None = None) -> float | None:
    values = [r["accuracy"] for r in row["runs"] if r.get("accuracy") is not None and (seeds is None or r["seed"] in seeds)]
    return float(np.mean(values)) if values else None


def report(rows: list[dict[str, Any]]) -> None:
    """The table as Markdown on stdout: every model's runs, and the two-seed agreement."""
    print(f"# ground truth: {len(rows)} model(s), {sum(len(r['runs']) for r in rows)} run(s); "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, torch {torch.__version__}\n")
    print("| model | id | MACs | params | seed: accuracy (epochs x images, seconds) |")
    print("|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r["flops"]):
        runs = "; ".join(f"{x['seed']}: {x['accuracy']:.3f} ({x['epochs']} x {x['images']}, {x['seconds']:.0f} s)"
                         if x.get("accuracy") is not None else f"{x['seed']}: failed" for x in r["runs"])
        print(f"| {r.get('name', '-')} | {r['id']} | {r['flops'] / 1e6:.1f}M | {r['params'] / 1e6:.2f}M | {runs} |")
    means = [m for r in rows if (m := mean_accuracy(r)) is not None]
    if means:
        print(f"\nMean accuracy over models (mean of each model's seeds): {np.mean(means):.3f}, sd {np.std(means):.3f}")
    pairs = [(a, b) for r in rows if (a := mean_accuracy(r, [0])) is not None and (b := mean_accuracy(r, [1])) is not None]
    if len(pairs) >= 3:
        tau = stats.kendalltau(*zip(*pairs)).statistic
        print(f"Seeds 0 and 1 agree at Kendall tau {tau:.3f} over {len(pairs)} models (the ceiling for any proxy).")
    else:
        print(f"Seed agreement: {len(pairs)} model(s) with both seeds 0 and 1, too few for a Kendall tau.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--resume", action="store_true", help="add to an existing results file, training only the runs it lacks")
    parser.add_argument("--report", action="store_true", help="print the table from --results and train nothing")
    parser.add_argument("--models", type=int, default=15, help="sampled models, besides the 5 baselines")
    parser.add_argument("--models-file", type=Path, default=None, metavar="JSONL",
                        help='train these models instead of the fixed set: one {"name", "config"} object per line '
                        "(bench/search_quality.py --accuracy-estimator ridge writes the searched claimants so)")
    parser.add_argument("--pool", type=int, default=150, help="uniform samples the stratified draw picks from")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds, each a full pass over the models")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=40_000, help="of the 40,000-image pool")
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stop-at", default=None, metavar="HH:MM", help="start no new run after this UTC time")
    parser.add_argument("--cheapest-first", action="store_true",
                        help="train the models in order of FLOPs instead of the spread order (on a starved machine: more "
                        "finished runs per hour; the runs are the same, so later --resume runs in either order fill the table)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("fvcore").setLevel(logging.ERROR)

    rows = read_results(args.results)
    if args.report:
        report(list(rows.values()))
        return 0
    if rows and not args.resume:
        parser.error(f"{args.results} already holds runs: pass --resume to add the missing ones, or another --results")

    if args.models_file:
        try:
            models = models_from_file(args.models_file, input_size=args.input_size)
        except (OSError, ValueError) as exc:
            parser.error(f"--models-file {args.models_file}: {exc}")
    else:
        models = model_set(models=args.models, pool=args.pool, seed=args.sample_seed, input_size=args.input_size)
    if args.cheapest_first:
        models.sort(key=lambda m: count_cost(m[1]).flops)
    base = TrainSettings(epochs=args.epochs, input_size=args.input_size, threads=args.threads, device=args.device, progress=False)
    work = [(name, config, seed) for seed in args.seeds for name, config in models]
    pool, held_out = holdout_split(load_dataset(str(args.data)))
    train = draw(pool, args.train_images, seed=HOLDOUT_SEED)
    log.info("held out %d images (seed %d); training on %d of the %d-image pool", len(held_out), HOLDOUT_SEED, len(train), len(pool))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for i, (name, config, seed) in enumerate(work):
        if args.stop_at and f"{datetime.now(timezone.utc):%H:%M}" >= args.stop_at:
            log.info("it is past %s UTC: stopping (rerun with --resume to continue)", args.stop_at)
            break
        settings = dataclasses.replace(base, seed=seed)
        want = (seed, args.epochs, len(train), args.input_size, len(held_out), HOLDOUT_SEED)
        key = f"{config.id} {want}"

        def done(rows: dict[str, dict[str, Any]], config_id: str = config.id, want: tuple = want) -> bool:
            return any(recipe_of(r) == want for r in rows.get(config_id, {}).get("runs", []))

        if not claim_run(args.results, key, done=done):
            continue
        try:
            run = train_one(config, train, held_out, settings)
            append_run(args.results, name=name, config=config, run=run)
        finally:
            release_run(args.results, key)
        log.info("run %d/%d: %s %s seed %d: accuracy %s in %.0f s (load %.1f)", i + 1, len(work), name, config.id, seed,
                 run["accuracy"], run["seconds"], run["load"])
    report(list(read_results(args.results).values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
