"""Proxy fidelity: does the short proxy training rank architectures as longer training does?

Samples configs from the default search space (cifar preset) and keeps ``--models`` of them
spread evenly in log FLOPs. Each is trained on one fixed, stratified CIFAR-10 split with the
trainer's default recipe at the default proxy budget (``TrainSettings().epochs``), at other
budgets (``--also``; default half of it) and at ``--factor`` (8) times the budget. Reported:
Kendall tau (and Spearman) of each proxy's accuracies against the long run's, beside the tau of
a FLOPs-only and a params-only ranking (more FLOPs = predicted more accurate) against the same
long run.

Results are written to a JSON-lines file as each model finishes, so a run can be resumed or
extended with other budgets (``--resume``), and a crash costs one model, not the benchmark.

    nohup .venv/bin/python bench/proxy_fidelity.py > /tmp/fidelity.md 2> /tmp/fidelity.log &

The CIFAR-10 archive is decoded once into the cache (outside the project; see
``evaluators.data.cache_dir``), never copied into the project.

Target (issue 3): proxy tau >= 0.6, and >= 0.1 above the FLOPs-only tau.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import platform
import random
import sys
import time
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
from spaces import GhostNetConfig, load_space, random_suggest  # noqa: E402

log = logging.getLogger("bench.proxy_fidelity")

DEFAULT_DATA = Path("/work/shared/data/cifar10/train.tar.gz")


def spread_configs(*, count: int, pool: int, seed: int, input_size: int) -> list[tuple[GhostNetConfig, int, int]]:
    """``count`` (config, FLOPs, params) from ``pool`` uniform samples, evenly spaced in log FLOPs."""
    space = load_space()
    suggest = random_suggest(random.Random(seed))
    candidates = []
    for _ in range(pool):
        config = space.to_config(space.sample(suggest), preset="cifar", num_classes=10, input_size=input_size)
        cost = count_cost(config)
        candidates.append((config, cost.flops, cost.params))
    candidates.sort(key=lambda c: c[1])
    targets = np.geomspace(candidates[0][1], candidates[-1][1], count)
    chosen: list[tuple[GhostNetConfig, int, int]] = []
    for target in targets:
        best = min((c for c in candidates if c not in chosen), key=lambda c: abs(math.log(c[1] / target)))
        chosen.append(best)
    return sorted(chosen, key=lambda c: c[1])


def long_key(epochs: int, seed: int, default_seed: int) -> str:
    """The results-file key of a long run: plain epochs for the default seed (as in older files)."""
    return str(epochs) if seed == default_seed else f"{epochs} seed={seed}"


def noise_ceiling(rows: list[dict[str, Any]], long_keys: list[str], accuracy: Any, *, val_size: int) -> str:
    """The Kendall tau a noiseless, perfect proxy could expect against the (mean) long run.

    A score with reliability r (the share of its variance across models that is signal) correlates
    at most sqrt(r) with the truth; for normal scores Kendall tau = (2 / pi) * asin(correlation).
    With one long run, r counts only the validation set's binomial noise (training-seed noise is
    unseen, so the bound is optimistic); with several seeds, r is their mean pairwise Pearson
    correlation, raised by Spearman-Brown for the mean of k seeds.
    """
    def to_tau(reliability: float) -> float:
        return 2 / math.pi * math.asin(math.sqrt(min(1.0, max(0.0, reliability))))

    if len(long_keys) == 1:
        target = np.array([accuracy(r, long_keys[0]) for r in rows])
        mean = float(target.mean())
        se = math.sqrt(mean * (1 - mean) / val_size)
        r = max(0.0, 1 - se**2 / float(target.var()))
        return (f"Binomial standard error of one accuracy at {mean:.2f} on {val_size} images: {se:.3f}; {r:.0%} of the long "
                f"run's variance across models is signal (training-seed noise not counted), so a noiseless perfect proxy "
                f"would expect Kendall tau <= {to_tau(r):.2f} against it.")
    seeds = np.array([[accuracy(r, key) for r in rows] for key in long_keys])
    pairs = [(i, j) for i in range(len(long_keys)) for j in range(i + 1, len(long_keys))]
    r1 = float(np.mean([np.corrcoef(seeds[i], seeds[j])[0, 1] for i, j in pairs]))
    tau1 = float(np.mean([stats.kendalltau(seeds[i], seeds[j]).statistic for i, j in pairs]))
    k = len(long_keys)
    rk = k * r1 / (1 + (k - 1) * r1)
    return (f"The long run's own repeatability: Kendall tau {tau1:.3f} (Pearson {r1:.3f}) between training seeds; the mean "
            f"of {k} seeds has reliability {rk:.2f} (Spearman-Brown), so a noiseless perfect proxy would expect Kendall tau "
            f"{to_tau(rk):.2f} against it, and {to_tau(r1):.2f} against one seed's long run.")


def parse_recipe(items: list[str], defaults: TrainSettings) -> dict[str, Any]:
    """``["batch_size=32", "lr=0.2"]`` -> ``{"batch_size": 32, "lr": 0.2}``, typed like the defaults."""
    recipe: dict[str, Any] = {}
    for item in items:
        field, _, value = item.partition("=")
        if not hasattr(defaults, field) or not value:
            raise SystemExit(f"--recipe {item!r}: expected FIELD=VALUE with a TrainSettings field")
        recipe[field] = type(getattr(defaults, field))(value)
    dataclasses.replace(defaults, **recipe)  # validates the values
    return recipe


def parse_args(argv: list[str] | None, defaults: TrainSettings) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--pool", type=int, default=48, help="uniform samples to pick the spread from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, default=2000, help="images of the split, train + validation")
    parser.add_argument("--val-fraction", type=float, default=0.4)
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="the proxy budget")
    parser.add_argument("--factor", type=int, default=8, help="the long run trains this many times the budget")
    parser.add_argument("--long-seeds", type=int, nargs="+", default=None,
                        help="training seeds of the long run (default: --seed); the target is their mean accuracy, "
                        "and their agreement with each other bounds what any proxy can reach")
    parser.add_argument("--also", type=int, nargs="*", default=None, help="other proxy epochs to rank against the same long run (default: half the budget)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--recipe", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainSettings field changed for the proxy runs only (repeatable; e.g. batch_size=32, lr=0.2, "
                        "seed=1); the runs are stored under their own key, so they rank against the same long run")
    parser.add_argument("--proxy-train-images", type=int, default=None, metavar="N",
                        help="train the proxy runs on N images instead of the split's training part: a larger draw of the "
                        "same seed, whose validation images are the split's, so they rank against the same long run")
    parser.add_argument("--results", type=Path, default=Path("/tmp/ghostnas-bench/proxy_fidelity.jsonl"))
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --results, add the missing ones")
    parser.add_argument("--report-only", action="store_true",
                        help="report from the runs in --results and train nothing (--resume trains what is missing)")
    parser.add_argument("--shard", default="0/1", help="I/N: train only models I, I+N, ... (one process per core, each with its own --results; "
                        "concatenate the files and run again with --resume for the report)")
    args = parser.parse_args(argv)
    if args.report_only and not args.results.exists():
        parser.error(f"--report-only: no results file {args.results}")
    return parser, args


Split = tuple[ImageSet, ImageSet]


def load_splits(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Split, Split]:
    """The split the long runs train on, and the one the proxy runs train on (the same, unless
    ``--proxy-train-images`` draws a larger training part with the same validation images)."""
    data = load_dataset(str(args.data))
    train, val = proxy_split(data, seed=args.seed, subset=args.subset, val_fraction=args.val_fraction)
    log.info("split: %d train, %d validation images; input %dx%d", len(train), len(val), args.input_size, args.input_size)
    if args.proxy_train_images is None:
        return (train, val), (train, val)
    # proxy_split draws each class's images in one seeded order, validation first: with the
    # same validation count, a bigger subset keeps these validation images and adds training ones.
    bigger = args.proxy_train_images + len(val)
    proxy_data = proxy_split(data, seed=args.seed, subset=bigger, val_fraction=len(val) / bigger)
    if not torch.equal(proxy_data[1].images, val.images):
        parser.error("--proxy-train-images: the larger split's validation images differ; pick another N")
    log.info("proxy runs: %d train images, the same %d validation images", len(proxy_data[0]), len(val))
    return (train, val), proxy_data


@dataclasses.dataclass(frozen=True)
class Plan:
    runs: dict[str, TrainSettings]  # key in the results file -> settings
    long_epochs: int
    long_keys: list[str]
    also: list[int]
    suffix: str  # the key suffix of this invocation's proxy runs (recipe, training images)


def make_plan(args: argparse.Namespace, defaults: TrainSettings) -> Plan:
    """The runs to make; the long run always has the default recipe."""
    long_epochs = args.epochs * args.factor
    also = args.also if args.also is not None else [args.epochs // 2] if args.epochs >= 2 else []
    base = dataclasses.replace(defaults, input_size=args.input_size, threads=args.threads, seed=args.seed, progress=False)
    recipe = parse_recipe(args.recipe, defaults)
    proxy_base = dataclasses.replace(base, **recipe)
    suffix = "".join(f" {field}={value}" for field, value in recipe.items())
    if args.proxy_train_images is not None:
        suffix += f" train={args.proxy_train_images}"
    runs = {f"{e}{suffix}": dataclasses.replace(proxy_base, epochs=e) for e in sorted({args.epochs, *also})}
    long_seeds = args.long_seeds or [args.seed]
    long_keys = [long_key(long_epochs, seed, args.seed) for seed in long_seeds]
    for key, seed in zip(long_keys, long_seeds):
        runs[key] = dataclasses.replace(base, epochs=long_epochs, seed=seed)
    return Plan(runs=runs, long_epochs=long_epochs, long_keys=long_keys, also=also, suffix=suffix)


def read_done(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The models already in ``--results`` (with ``--resume`` or ``--report-only``), by config id."""
    done: dict[str, dict[str, Any]] = {}
    if (args.resume or args.report_only) and args.results.exists():
        for row in map(json.loads, args.results.read_text().splitlines()):
            # Concatenated shard files hold a model more than once: keep every run of it.
            done.setdefault(row["id"], {**row, "runs": {}})["runs"].update(row["runs"])
    return done


def train_missing(config: GhostNetConfig, row: dict[str, Any], missing: list[str], plan: Plan, splits: tuple[Split, Split]) -> None:
    """Train the runs ``missing`` from ``row`` and add them to it (a failed run too)."""
    for key in missing:
        try:
            images = splits[0] if key in plan.long_keys else splits[1]
            result = train_proxy(config, *images, plan.runs[key])
            row["runs"][key] = {
                "accuracy": result.accuracy,
                "seconds": round(sum(result.seconds.values()), 1),
                "images_per_second": round(result.images_per_second, 1),
            }
        except TrainingFailed as exc:
            log.warning("model %s, run %r: failed: %s", config.id, key, exc.reason)
            row["runs"][key] = {"accuracy": None, "failed": exc.reason}


def save(path: Path, rows: list[dict[str, Any]], done: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows + [d for k, d in done.items() if d not in rows]))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    defaults = TrainSettings()
    parser, args = parse_args(argv, defaults)
    shard, shards = map(int, args.shard.split("/"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("evaluators.training", "fvcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    started = time.perf_counter()
    splits = load_splits(args, parser)
    models = spread_configs(count=args.models, pool=args.pool, seed=args.seed, input_size=args.input_size)
    plan = make_plan(args, defaults)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(args)
    rows = []
    for i, (config, flops, params) in enumerate(models):
        if i % shards != shard:
            continue
        row = done.get(config.id) or {"id": config.id, "flops": flops, "params": params, "width": config.width, "runs": {}}
        rows.append(row)
        missing = [] if args.report_only else [key for key in plan.runs if key not in row["runs"]]
        train_missing(config, row, missing, plan, splits)
        if missing:
            accuracies = {key: row["runs"][key]["accuracy"] for key in plan.runs}
            log.info("model %d/%d %s: %.1fM MACs, accuracy by epochs %s", i + 1, len(models), config.id, flops / 1e6, accuracies)
            save(args.results, rows, done)

    train, val = splits[0]
    report(rows, args=args, proxy=args.epochs, long=plan.long_epochs, long_keys=plan.long_keys, others=plan.also, suffix=plan.suffix,
           train_size=len(train), val_size=len(val), minutes=(time.perf_counter() - started) / 60)
    return 0


def report(
    rows: list[dict[str, Any]], *, args: argparse.Namespace, proxy: int, long: int, long_keys: list[str], others: list[int], suffix: str,
    train_size: int, val_size: int, minutes: float,
) -> None:
    def accuracy(row: dict[str, Any], key: str) -> float | None:
        return row["runs"].get(key, {}).get("accuracy")

    proxies = {f"{e}{suffix}": e for e in sorted({proxy, *others})}
    ok = [r for r in rows if all(accuracy(r, key) is not None for key in (*proxies, *long_keys))]
    target = [float(np.mean([accuracy(r, key) for key in long_keys])) for r in ok]
    rankers = {
        f"proxy, {'default budget (' if e == proxy else ''}{e} epoch(s){')' if e == proxy else ''}{suffix}": [accuracy(r, key) for r in ok]
        for key, e in proxies.items()
    }
    rankers.update({"FLOPs only": [r["flops"] for r in ok], "params only": [r["params"] for r in ok]})
    compute = sum(run.get("seconds", 0.0) for r in rows for run in r["runs"].values()) / 60
    print(f"# proxy fidelity: {len(ok)} of {len(rows)} models, CIFAR-10 split {train_size} train / {val_size} val, "
          f"{args.input_size}x{args.input_size}, long run {args.factor}x = {long} epochs "
          f"(mean of {len(long_keys)} training seed(s)), {args.threads} thread(s)")
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, torch {torch.__version__}, "
          f"python {platform.python_version()}; this invocation {minutes:.0f} min, all training runs {compute:.0f} min")
    print()
    print(f"| ranking by | Kendall tau vs {long}-epoch accuracy | p-value | Spearman | mean accuracy | spread (sd) across models |")
    print("|---|---|---|---|---|---|")
    for name, values in rankers.items():
        tau, p = stats.kendalltau(values, target)
        rho = stats.spearmanr(values, target).statistic
        spread = f"{np.mean(values):.3f} | {np.std(values):.3f}" if "only" not in name else "- | -"
        print(f"| {name} | {tau:.3f} | {p:.2g} | {rho:.3f} | {spread} |")
    for key in long_keys if len(long_keys) > 1 else []:
        values = [accuracy(r, key) for r in ok]
        tau, p = stats.kendalltau(values, target)
        rho = stats.spearmanr(values, target).statistic
        print(f"| the long run, one seed ({key}) | {tau:.3f} | {p:.2g} | {rho:.3f} | {np.mean(values):.3f} | {np.std(values):.3f} |")
    print(f"| (the {long}-epoch target itself) | 1 | - | 1 | {np.mean(target):.3f} | {np.std(target):.3f} |")
    print()
    print(noise_ceiling(ok, long_keys, accuracy, val_size=val_size))
    # Every other proxy run in the file for these models (other recipes and seeds, from earlier
    # invocations): how each ranks against the same target, and how two runs agree with each other
    # (two seeds of one recipe: the proxy's own repeatability).
    others_in_file = sorted(k for k in set.intersection(*(set(r["runs"]) for r in ok)) - {*proxies, *long_keys}
                            if all(accuracy(r, k) is not None for r in ok) and not k.startswith(f"{long} "))
    if others_in_file:
        print("\nOther proxy runs in the results file, against the same target:\n")
        print("| run (epochs + recipe) | Kendall tau vs target | mean accuracy |")
        print("|---|---|---|")
        for key in others_in_file:
            values = [accuracy(r, key) for r in ok]
            print(f"| {key} | {stats.kendalltau(values, target).statistic:.3f} | {np.mean(values):.3f} |")
        print("\n| run | run | Kendall tau between them |")
        print("|---|---|---|")
        keys = sorted({*proxies, *others_in_file})
        for i, first in enumerate(keys):
            for second in keys[i + 1 :]:
                tau = stats.kendalltau([accuracy(r, first) for r in ok], [accuracy(r, second) for r in ok]).statistic
                print(f"| {first} | {second} | {tau:.3f} |")
    print()
    columns = [*proxies, *long_keys]
    print(f"| model | MACs | params | width | {' | '.join(f'{key} ep' for key in columns)} |")
    print(f"|---|---|---|---|{'---|' * len(columns)}")
    for r in rows:
        cells = [f"{a:.3f}" if (a := accuracy(r, key)) is not None else "failed" if key in r["runs"] else "-" for key in columns]
        print(f"| {r['id']} | {r['flops'] / 1e6:.1f}M | {r['params'] / 1e6:.2f}M | {r['width']} | {' | '.join(cells)} |")

if __name__ == "__main__":
    sys.exit(main())
