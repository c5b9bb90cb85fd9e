"""Proxy ranking: how well each cheap accuracy estimator ranks models against the ground truth.

The ground truth is ``docs/bench/ground_truth.jsonl`` (``bench/ground_truth.py``: the same model
set, the long recipe, validated on 10,000 held-out images). The estimators, for the same models:

* short proxy training at several budgets (``--budgets IMAGESxEPOCHS[@PX]``; equal cost =
  equal images x epochs x pixels), on images of the 40,000-image pool only (never the held-out
  ones), validated on ``--proxy-val`` fixed pool images that no budget trains on;
* FLOPs only and params only (more = predicted more accurate);
* each zero-cost score of ``evaluators.zero_cost`` (``--batches`` batches of ``--batch-size``);
* combinations, out of sample only: the rank average of each zero-cost score with FLOPs (nothing
  fitted), and a ridge regression on the z-scored cheap features (log FLOPs, log params, every
  zero-cost score; "+ proxy" adds the cheapest budget), fitted leave-one-out: each model's
  prediction comes from a fit on the other models.

Reported: Kendall tau and Spearman rho against the ground truth (the mean over its seeds), each
with a 90 % bootstrap interval over models (2,000 resamples of the models with replacement; for
the leave-one-out combinations the predictions are resampled, not refitted), and the median
cost per model in seconds. With few models the intervals are wide, and the table says how many.

The proxy measurements go to ``--results`` (``docs/bench/proxy_ranking.jsonl``, one line per
model, written as each measurement finishes, like the ground truth). ``--resume`` continues a
file: measurements already there (same budget, seed, proxy split; same zero-cost settings) are
skipped. Zero-cost scores are taken for every model of the set; training budgets only for models
that already have a ground-truth run (``--all-models`` for all). ``--report`` trains nothing.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/proxy_ranking.py --resume > /tmp/ranking.md
    .venv/bin/python bench/proxy_ranking.py --report
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ground_truth as gt  # noqa: E402

from evaluators import accuracy_model  # noqa: E402
from evaluators.accuracy_model import features_of, fit_ridge  # noqa: E402
from evaluators.data import ImageSet, load_dataset  # noqa: E402
from evaluators.flops import count_cost  # noqa: E402
from evaluators.latency import cpu_model  # noqa: E402
from evaluators.training import TrainSettings  # noqa: E402
from evaluators.zero_cost import ZERO_COST_SCORES, zero_cost_scores  # noqa: E402
from spaces import GhostNetConfig  # noqa: E402

log = logging.getLogger("bench.proxy_ranking")

DEFAULT_RESULTS = gt.ROOT / "docs" / "bench" / "proxy_ranking.jsonl"
FIDELITY_RESULTS = gt.ROOT / "docs" / "bench" / "proxy_ranking_fidelity.jsonl"
PROXY_SPLIT_SEED = 1  # the pool's order for proxy validation / training images (the ground truth draws with 18)


def parse_budget(text: str) -> tuple[int, int, int]:
    """``"10000x3@16"`` -> (images, epochs, input size); the size defaults to 16."""
    try:
        size_part = text.split("@")
        images, epochs = map(int, size_part[0].lower().split("x"))
        size = int(size_part[1]) if len(size_part) > 1 else 16
        assert images > 1 and epochs > 0 and size > 0
    except (ValueError, AssertionError):
        raise argparse.ArgumentTypeError(f"budget {text!r}: expected IMAGESxEPOCHS[@PX], e.g. 10000x3@16") from None
    return images, epochs, size


def proxy_data(pool: ImageSet, *, val: int, largest: int) -> tuple[ImageSet, ImageSet]:
    """(training images in one seeded order, validation): ``val`` pool images validate every
    budget; a budget of N images trains on the first N of the rest, so budgets nest."""
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(PROXY_SPLIT_SEED))
    if val + largest > len(pool):
        raise SystemExit(f"error: {val} validation + {largest} training images exceed the {len(pool)}-image pool")
    return pool.subset(order[val : val + largest]), pool.subset(order[:val].sort().values)


def fidelity_truth(path: Path) -> tuple[list[tuple[str, GhostNetConfig]], dict[str, dict[str, Any]]]:
    """The 16 models of ``bench/proxy_fidelity.py`` run 3 (``--subset 6000 --val-fraction 0.6``) as a
    second, weaker target: rows in the ground-truth format whose runs are the two 16-epoch seeds,
    each row's ``"fidelity_proxy"`` the bench's own 2-epoch proxy (seed 0) on its 2,400 images."""
    import proxy_fidelity

    rows = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        runs = [{"seed": seed, "accuracy": row["runs"][key]["accuracy"]} for seed, key in ((0, "16"), (1, "16 seed=1")) if key in row["runs"]]
        rows[row["id"]] = {**row, "runs": runs, "fidelity_proxy": row["runs"].get("2")}
    configs = proxy_fidelity.spread_configs(count=16, pool=48, seed=0, input_size=16)
    models = [(f"fidelity-{i:02d}", c) for i, (c, _, _) in enumerate(configs) if c.id in rows]
    return models, rows


def measure(args: argparse.Namespace, models: list[tuple[str, GhostNetConfig]], with_truth: set[str]) -> None:
    """Every measurement the results file lacks, zero-cost first (all models), then training."""
    data = load_dataset(str(args.data))
    pool, _held_out = gt.holdout_split(data)  # the held-out images are never touched here
    # (zero-cost only: the training images of the default budgets, which the seed-0 scores were drawn from)
    train_all, val = proxy_data(pool, val=args.proxy_val, largest=max((b[0] for b in args.budgets), default=30_000))
    zc = {"batches": args.batches, "batch_size": args.batch_size, "seed": args.seed}
    work: list[tuple[str, GhostNetConfig, dict[str, Any]]] = [(n, c, {"kind": "zero_cost", **zc}) for n, c in models]
    for images, epochs, size in args.budgets:
        work += [(n, c, {"kind": "train", "budget": f"{images}x{epochs}@{size}", "seed": args.seed, "proxy_val": len(val)})
                 for n, c in models if c.id in with_truth]
    for name, config, key in work:
        if args.stop_at and f"{datetime.now(timezone.utc):%H:%M}" >= args.stop_at:
            log.info("past %s UTC: stopping (rerun with --resume to continue)", args.stop_at)
            return
        row = gt.read_results(args.results).get(config.id)
        if row and any(all(r.get(k) == v for k, v in key.items()) for r in row["runs"]):
            continue
        t = time.perf_counter()
        if key["kind"] == "zero_cost":
            scores, seconds = zero_cost_scores(config, train_all, batches=args.batches, batch_size=args.batch_size, seed=args.seed)
            flops_t = time.perf_counter()
            count_cost(config)
            run = {**key, "scores": scores, "seconds": {**seconds, "flops": time.perf_counter() - flops_t}}
        else:
            images, epochs, size = parse_budget(key["budget"])
            settings = TrainSettings(epochs=epochs, input_size=size, threads=args.threads, seed=args.seed, progress=False)
            trained = gt.train_one(config, train_all.subset(torch.arange(images)), val, settings)
            run = {**key, "accuracy": trained["accuracy"], "seconds": trained["seconds"], "load": trained["load"]}
        gt.append_run(args.results, name=name, config=config, run=run)
        log.info("%s %s %s: %.0f s", name, config.id, key.get("budget", "zero-cost"), time.perf_counter() - t)


# -- the report ---------------------------------------------------------------------------------


def bootstrap(x: np.ndarray, y: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Kendall and Spearman of (x, y) with 90 % percentile intervals over resampled models."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, fn in (("kendall", stats.kendalltau), ("spearman", stats.spearmanr)):
        draws = []
        for _ in range(resamples):
            i = rng.integers(0, len(x), len(x))
            if len(set(x[i])) > 1 and len(set(y[i])) > 1:
                draws.append(fn(x[i], y[i]).statistic)
        low, high = np.percentile(draws, [5, 95]) if draws else (np.nan, np.nan)
        out[name] = (float(fn(x, y).statistic), float(low), float(high))
    return out


def loo_ridge(features: np.ndarray, target: np.ndarray, *, alpha: float = 1.0, predict_from: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-out predictions of a ridge regression (features z-scored on the training fold);
    with ``predict_from``, each left-out model is predicted from its row there instead (the same
    features measured on other batches) while the fits stay on ``features``."""
    predict_from = features if predict_from is None else predict_from
    predictions = np.empty(len(target))
    for i in range(len(target)):
        keep = np.arange(len(target)) != i
        mean, scale, coef = fit_ridge(features[keep], target[keep], alpha=alpha)
        predictions[i] = np.r_[1.0, (predict_from[i] - mean) / scale] @ coef
    return predictions


def trained(row: dict[str, Any], budget: str) -> dict[str, Any] | None:
    """The row's finished proxy training run at this budget, if any."""
    return next((r for r in row["proxy"]["runs"] if r.get("budget") == budget and r.get("accuracy") is not None), None)


def zero_cost_run(runs: list[dict[str, Any]], seed: int = 0) -> dict[str, Any] | None:
    """The zero-cost measurement on the batches of ``seed`` among a model's proxy runs, if any."""
    return next((r for r in runs if r["kind"] == "zero_cost" and r.get("seed", 0) == seed), None)


def cheap_features(row: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """The accuracy model's features of one model (evaluators/accuracy_model.py), its zero-cost
    scores from the batches of ``seed``."""
    zc = zero_cost_run(row["proxy"]["runs"], seed)
    return features_of(flops=row["flops"], params=row["params"], scores=zc["scores"])


def estimators(rows: list[dict[str, Any]], budgets: list[str]) -> dict[str, tuple[np.ndarray, float]]:
    """Name -> (score per model, median seconds per model) for every estimator all rows have."""
    def zc(row: dict[str, Any]) -> dict[str, Any]:
        return zero_cost_run(row["proxy"]["runs"])

    out: dict[str, tuple[np.ndarray, float]] = {}
    for budget in budgets:
        if all(trained(r, budget) for r in rows):
            out[f"proxy {budget}"] = (np.array([trained(r, budget)["accuracy"] for r in rows]),
                                      float(np.median([trained(r, budget)["seconds"] for r in rows])))
    flops_s = float(np.median([zc(r)["seconds"]["flops"] for r in rows]))
    out["FLOPs only"] = (np.array([r["flops"] for r in rows], dtype=float), flops_s)
    out["params only"] = (np.array([r["params"] for r in rows], dtype=float), flops_s)
    for name in ZERO_COST_SCORES:
        out[name] = (np.array([zc(r)["scores"][name] for r in rows]), float(np.median([zc(r)["seconds"][name] for r in rows])))
    flops_rank = stats.rankdata(out["FLOPs only"][0])
    for name in ZERO_COST_SCORES:
        out[f"rank mean: {name} + FLOPs"] = ((stats.rankdata(out[name][0]) + flops_rank) / 2, out[name][1] + flops_s)
    target = np.array([r["target"] for r in rows])
    cheap = np.array([list(cheap_features(r).values()) for r in rows])
    if not np.isfinite(cheap).all():  # a singular NASWOT kernel gives -inf: leave that feature out
        cheap = cheap[:, np.isfinite(cheap).all(axis=0)]
    zc_cost = sum(out[n][1] for n in ZERO_COST_SCORES) + flops_s
    if len(rows) >= 4:
        out["ridge, leave-one-out: FLOPs, params, zero-cost"] = (loo_ridge(cheap, target), zc_cost)
        first = next((k for k in out if k.startswith("proxy ")), None)
        if first:
            out[f"ridge, leave-one-out: the above + {first}"] = (loo_ridge(np.c_[cheap, out[first][0]], target), zc_cost + out[first][1])
    return out


def report(args: argparse.Namespace, truth: dict[str, dict[str, Any]]) -> None:
    proxies = gt.read_results(args.results)
    rows = []
    for key, row in truth.items():
        accuracy = gt.mean_accuracy(row)
        if accuracy is not None and key in proxies and zero_cost_run(proxies[key]["runs"]):
            proxy = proxies[key]
            if row.get("fidelity_proxy"):  # the fidelity bench's own 2-epoch proxy, as a budget
                extra = {"kind": "train", "budget": "2400x2@16", **row["fidelity_proxy"]}
                proxy = {**proxy, "runs": proxy["runs"] + [extra]}
            rows.append({**row, "target": accuracy, "proxy": proxy})
    seeds = sorted({r["seed"] for row in rows for r in row["runs"] if r.get("accuracy") is not None})
    print(f"# proxy ranking: {len(rows)} model(s) with a ground truth (mean of seeds {seeds}) and proxy measurements; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, torch {torch.__version__}\n")
    measured = [r for r in proxies.values() if zero_cost_run(r["runs"])]
    if len(measured) >= 3:  # how much of each score is model size, over every model measured
        flops = [r["flops"] for r in measured]
        taus = ", ".join(f"{name} {stats.kendalltau([zero_cost_run(r['runs'])['scores'][name] for r in measured], flops).statistic:.2f}"
                         for name in ZERO_COST_SCORES)
        print(f"Kendall tau of each zero-cost score with FLOPs over all {len(measured)} measured models: {taus}.\n")
    if len(rows) < 3:
        print("Too few models for a rank correlation.")
        return
    target = np.array([r["target"] for r in rows])
    if args.fidelity:
        print(f"Target: not the ground truth but the mean of the two 16-epoch runs in {args.fidelity.name} "
              "(bench/proxy_fidelity.py run 3: 2,400 training / 3,600 validation images, 16 px); "
              "budget 2400x2@16 is that bench's own 2-epoch proxy, seed 0.\n")
    print(f"Target over these models: mean accuracy {target.mean():.3f}, sd {target.std():.3f}.\n")
    print("| estimator | models | Kendall tau [90 % interval] | Spearman rho [90 % interval] | cost per model (median s) |")
    print("|---|---|---|---|---|")

    def table(subset: list[dict[str, Any]], found: dict[str, tuple[np.ndarray, float]]) -> None:
        truth_here = np.array([r["target"] for r in subset])
        for name, (values, seconds) in found.items():
            b = bootstrap(values, truth_here)
            cells = " | ".join(f"{v:.2f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in (b["kendall"], b["spearman"]))
            print(f"| {name} | {len(subset)} | {cells} | {seconds:.1f} |")

    budgets = [f"{i}x{e}@{s}" for i, e, s in args.budgets]
    table(rows, estimators(rows, budgets))
    # A budget measured on only some of the models (still running, or begun after others) is
    # ranked on those, beside FLOPs on the same models, rather than hidden.
    for budget in budgets:
        subset = [r for r in rows if trained(r, budget)]
        if 4 <= len(subset) < len(rows):
            found = estimators(subset, [budget])
            table(subset, {f"proxy {budget}": found[f"proxy {budget}"], "FLOPs only": found["FLOPs only"]})
    batch_seeds(rows)
    print(f"\nBased on {len(rows)} models only: the intervals are wide, and a difference between two rows that "
          "lies inside both intervals is not evidence that one estimator is better.")
    if getattr(args, "fit", None):
        write_fit(args, rows)


def batch_seeds(rows: list[dict[str, Any]]) -> None:
    """How much the ridge's ranking depends on the two batches its zero-cost scores are taken on
    (a search draws them from its own split): for each other batch seed every model has, the
    leave-one-out prediction from a fit on the seed-0 features (as the shipped model is fitted),
    each model predicted from its features on that seed's batches."""
    seeds = sorted(set.intersection(*({r.get("seed", 0) for r in row["proxy"]["runs"] if r["kind"] == "zero_cost"} for row in rows)))
    if seeds[1:] == []:
        return
    target = np.array([r["target"] for r in rows])
    by_seed = {seed: np.array([list(cheap_features(r, seed).values()) for r in rows]) for seed in seeds}
    finite = np.logical_and.reduce([np.isfinite(x).all(axis=0) for x in by_seed.values()])
    base = loo_ridge(by_seed[0][:, finite], target)
    print("\nThe ridge on other zero-cost batches (leave-one-out fits on the seed-0 features; each model predicted "
          "from its features on the batches of the seed):\n")
    print("| batch seed | Kendall tau with the ground truth [90 % interval] | Kendall tau with the seed-0 predictions | largest change (points) |")
    print("|---|---|---|---|")
    for seed in seeds:
        predicted = loo_ridge(by_seed[0][:, finite], target, predict_from=by_seed[seed][:, finite])
        lo_hi = bootstrap(predicted, target)["kendall"]
        print(f"| {seed} | {lo_hi[0]:.2f} [{lo_hi[1]:.2f}, {lo_hi[2]:.2f}] | {stats.kendalltau(predicted, base).statistic:.2f} | "
              f"{100 * np.abs(predicted - base).max():.1f} |")


def write_fit(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """``--fit PATH``: the ridge on every model (the report's leave-one-out row is its honest figure)."""
    loo = loo_ridge(np.array([list(cheap_features(r).values()) for r in rows]), np.array([r["target"] for r in rows]))
    tau = stats.kendalltau(loo, [r["target"] for r in rows]).statistic
    zc = [zero_cost_run(r["proxy"]["runs"]) for r in rows]
    fitted_on = {
        "data": "CIFAR-10 training split, bench/ground_truth.py recipe (40,000 images x 5 epochs, 16 px)",
        "models": len(rows), "ground_truth_runs": sum(len(r["runs"]) for r in rows),
        "leave_one_out_kendall": round(float(tau), 3), "written": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
    }  # fmt: skip
    model = accuracy_model.fit([(cheap_features(r), r["target"]) for r in rows], input_size=16,
                               batches=zc[0]["batches"], batch_size=zc[0]["batch_size"], fitted_on=fitted_on)
    args.fit.write_text(json.dumps(model.to_dict(), indent=1) + "\n")
    print(f"\nWrote the ridge on all {len(rows)} models to {args.fit} (features: {', '.join(model.features)}).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=gt.DEFAULT_DATA)
    parser.add_argument("--ground-truth", type=Path, default=gt.DEFAULT_RESULTS)
    parser.add_argument("--results", type=Path, default=None,
                        help=f"proxy measurements (default {DEFAULT_RESULTS.name}, with --fidelity {FIDELITY_RESULTS.name}, in docs/bench)")
    parser.add_argument("--resume", action="store_true", help="add to an existing --results file, measuring only what it lacks")
    parser.add_argument("--report", action="store_true", help="print the table and measure nothing")
    parser.add_argument("--fit", type=Path, default=None, metavar="JSON",
                        help=f"also write the ridge on FLOPs, params and zero-cost scores fitted on every model (the search's is {accuracy_model.SHIPPED.relative_to(gt.ROOT)})")
    parser.add_argument("--budgets", type=parse_budget, nargs="*", default=[parse_budget(b) for b in ("2400x2", "10000x3", "30000x1")])
    parser.add_argument("--proxy-val", type=int, default=5000, help="pool images validating every proxy budget")
    parser.add_argument("--batches", type=int, default=2, help="zero-cost batches")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="proxy training and zero-cost seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--all-models", action="store_true", help="train the budgets for models without a ground truth too")
    parser.add_argument("--stop-at", default=None, metavar="HH:MM", help="start no new measurement after this UTC time")
    # the model set: as in bench/ground_truth.py (keep these equal to its flags)
    parser.add_argument("--models", type=int, default=15)
    parser.add_argument("--pool", type=int, default=150)
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--fidelity", type=Path, default=None, metavar="JSONL",
                        help="rank against bench/proxy_fidelity.py's run 3 instead (its 16 models, the mean of its two "
                        "16-epoch seeds, its own 2-epoch proxy as budget 2400x2@16); only zero-cost scores are measured")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    args.results = args.results or (FIDELITY_RESULTS if args.fidelity else DEFAULT_RESULTS)
    if args.fidelity:
        models, truth = fidelity_truth(args.fidelity)
        args.budgets, with_truth = [parse_budget("2400x2@16")], set()
    else:
        truth = gt.read_results(args.ground_truth)
        with_truth = set(truth)
    if not args.report:
        if gt.read_results(args.results) and not args.resume:
            parser.error(f"{args.results} already holds measurements: pass --resume to add the missing ones")
        if not args.fidelity:
            models = gt.model_set(models=args.models, pool=args.pool, seed=args.sample_seed, input_size=16)
        measure(args, models, {c.id for _, c in models} if args.all_models and not args.fidelity else with_truth)
        if not args.fidelity:
            truth = gt.read_results(args.ground_truth)
    report(args, truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
