"""A predicted accuracy from cheap features: a ridge regression on FLOPs, params and the
zero-cost scores, fitted on a ground truth (issue 18).

On the 20 CIFAR-10 models of ``docs/bench/ground_truth.jsonl`` (16 px), leave-one-out, this ranked
better than any single zero-cost score and than FLOPs alone (docs/BENCHMARKS.md, "Ground truth and
proxy ranking"); ``bench/proxy_ranking.py --fit`` refits it and writes :data:`SHIPPED`. Only the
ranking it gives is meant to carry over to other data: its accuracies are CIFAR-10's.

The features of a config are computed as the fit's were: FLOPs and params counted at the model's
``input_size`` with the data's classes, the six scores from ``batches`` seeded batches of
``batch_size`` images resized to that size (``evaluators.zero_cost``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluators.data import ImageSet
from evaluators.flops import Cost, count_cost
from evaluators.zero_cost import ZERO_COST_SCORES, zero_cost_scores
from spaces import GhostNetConfig

__all__ = ["FEATURES", "SHIPPED", "AccuracyModel", "features_of", "fit", "fit_ridge"]

FORMAT = "ghostnas-accuracy-model/1"
SHIPPED = Path(__file__).with_name("accuracy_cifar10_16px.json")

# synflow, FLOPs and params span orders of magnitude: their logs are the features.
FEATURES = ("log_flops", "log_params", *(f"log_{n}" if n == "synflow" else n for n in ZERO_COST_SCORES))


def features_of(*, flops: float, params: float, scores: Mapping[str, float]) -> dict[str, float]:
    """Every feature in :data:`FEATURES` (a log of a non-positive value is -inf)."""
    def log(value: float) -> float:
        return math.log(value) if value > 0 else -math.inf

    out = {"log_flops": log(flops), "log_params": log(params)}
    out.update({f"log_{n}" if n == "synflow" else n: log(scores[n]) if n == "synflow" else float(scores[n]) for n in ZERO_COST_SCORES})
    return out


def fit_ridge(features: np.ndarray, target: np.ndarray, *, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, coefficients with the intercept first) of a ridge regression of ``target``
    on z-scored ``features`` (rows are models); the intercept is not shrunk."""
    mean, scale = features.mean(0), features.std(0) + 1e-12
    a = np.c_[np.ones(len(features)), (features - mean) / scale]
    penalty = alpha * np.eye(a.shape[1])
    penalty[0, 0] = 0.0
    return mean, scale, np.linalg.solve(a.T @ a + penalty, a.T @ target)


@dataclass(frozen=True)
class AccuracyModel:
    features: tuple[str, ...]  # a subset of FEATURES, in the order of the coefficients
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]  # intercept first
    input_size: int  # the features are computed at this resolution
    batches: int
    batch_size: int
    fitted_on: Mapping[str, Any]  # what the fit saw: data, models, ground-truth runs, its LOO figures

    def predict(self, values: Mapping[str, float]) -> float:
        """The predicted accuracy for one model's feature values; -inf if any is not finite."""
        x = np.array([values[f] for f in self.features], dtype=float)
        if not np.isfinite(x).all():
            return -math.inf
        return float(np.r_[1.0, (x - np.array(self.mean)) / np.array(self.scale)] @ np.array(self.coef))

    def predict_config(self, config: GhostNetConfig, data: ImageSet, *, seed: int = 0, cost: Cost | None = None) -> tuple[float, float]:
        """(predicted accuracy, seconds) of ``config`` on ``data``'s images; ``cost``, the config's
        count when the caller has it, is reused if the config is already at the fit's size and classes."""
        t = time.perf_counter()
        at = config.replace(num_classes=data.num_classes, input_size=self.input_size)
        cost = cost if cost is not None and at == config else count_cost(at)
        config = at
        batch_size = min(self.batch_size, len(data) // self.batches)
        scores, _ = zero_cost_scores(config, data, batches=self.batches, batch_size=batch_size, seed=seed)
        value = self.predict(features_of(flops=cost.flops, params=cost.params, scores=scores))
        return value, time.perf_counter() - t

    @property
    def sha256(self) -> str:
        """A digest of the fit (the file's content, key order aside): a study scored by one fit is
        resumed only with the same one."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                "coef": list(self.coef), "input_size": self.input_size, "batches": self.batches,
                "batch_size": self.batch_size, "fitted_on": dict(self.fitted_on)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyModel:
        """ValueError for anything but a whole file of this format."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        try:
            features = tuple(data["features"])
            vectors = [tuple(float(v) for v in data[k]) for k in ("mean", "scale", "coef")]
            model = cls(features, *vectors, int(data["input_size"]), int(data["batches"]), int(data["batch_size"]), dict(data["fitted_on"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed {FORMAT} file ({exc})") from None
        unknown = [f for f in features if f not in FEATURES]
        if unknown or not features or len(model.mean) != len(features) or len(model.scale) != len(features) or len(model.coef) != len(features) + 1:
            raise ValueError(f"malformed {FORMAT} file (features {list(features)} and coefficients disagree)")
        return model

    @classmethod
    def load(cls, path: Path = SHIPPED) -> AccuracyModel:
        return cls.from_dict(json.loads(Path(path).read_text()))


def fit(rows: Sequence[tuple[Mapping[str, float], float]], *, input_size: int, batches: int, batch_size: int,
        fitted_on: Mapping[str, Any], alpha: float = 1.0) -> AccuracyModel:
    """The model fitted on (feature values, accuracy) rows; a feature not finite for every row
    (a singular NASWOT kernel gives -inf) is left out."""
    x = np.array([[values[f] for f in FEATURES] for values, _ in rows], dtype=float)
    keep = np.isfinite(x).all(axis=0)
    mean, scale, coef = fit_ridge(x[:, keep], np.array([accuracy for _, accuracy in rows]), alpha=alpha)
    features = tuple(f for f, k in zip(FEATURES, keep, strict=True) if k)
    return AccuracyModel(features, tuple(mean.tolist()), tuple(scale.tolist()), tuple(coef.tolist()), input_size, batches, batch_size, dict(fitted_on))
