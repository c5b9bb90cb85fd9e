"""One config through every score, cheapest first: FLOPs/params, then latency, then accuracy
(a proxy training run, or an accuracy model's prediction).

A ``gate`` callback sees the scores after each cheap stage and may reject the config before the
next, more expensive one (the search uses it for its hard limits), so a rejected sample is never
timed or trained needlessly.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from evaluators.accuracy_model import AccuracyModel
from evaluators.calibration import Calibration
from evaluators.data import ImageSet
from evaluators.flops import count_cost
from evaluators.latency import LatencyProbe, LatencyResult, cpu_model
from evaluators.latency_model import LatencyModel
from evaluators.training import TrainResult, TrainSettings, train_proxy
from spaces import GhostNetConfig

__all__ = ["Evaluation", "Evaluator", "Gate"]

STAGES = ("flops", "latency", "train")  # in the order they run, cheapest first
# Given the scores so far, the reason to stop here, or None to go on.
Gate = Callable[[dict[str, float]], "str | None"]


@dataclass(frozen=True)
class Evaluation:
    config: GhostNetConfig
    scores: dict[str, float]  # accuracy (0..1), latency_ms (calibrated), flops (MACs), params: those measured
    seconds: dict[str, float]  # per stage: flops, latency, train, total
    latency: LatencyResult | None = None
    training: TrainResult | None = None
    rejected: str | None = None  # the gate's reason, when it stopped the evaluation
    env: dict[str, Any] = field(default_factory=dict)


class Evaluator:
    """Scores configs on one device; build it once and reuse it (the probe caches its reference).

    ``probe=None`` skips latency; with a ``calibration`` the latency score is the probe's ratio
    to the reference times the calibration's reference figure, without one the raw median.
    A ``latency_model`` predicts the latency score instead (no probe runs).
    ``data=None`` skips accuracy. ``data`` is the (proxy-train, proxy-validation) pair;
    every config is built for its classes. With an ``accuracy_model`` the accuracy score is its
    prediction from the proxy-train images (no training runs).
    """

    def __init__(
        self,
        *,
        probe: LatencyProbe | None = None,
        calibration: Calibration | None = None,
        latency_model: LatencyModel | None = None,
        data: tuple[ImageSet, ImageSet] | None = None,
        train_settings: TrainSettings | None = None,
        accuracy_model: AccuracyModel | None = None,
    ) -> None:
        self.probe = probe
        self.calibration = calibration
        self.latency_model = latency_model
        self.data = data
        self.train_settings = train_settings or TrainSettings()
        self.accuracy_model = accuracy_model

    def evaluate(
        self,
        config: GhostNetConfig,
        *,
        gate: Gate | None = None,
        on_epoch: Callable[[int, float], bool] | None = None,
        check_stop: Callable[[], None] | None = None,
        until: str = "train",
    ) -> Evaluation:
        """All scores of ``config``, through stage ``until`` ("flops", "latency" or "train": the
        search's prefilter stops before training). ``check_stop`` is called where stopping is
        safe (before each stage, at each training step); whatever it raises ends the evaluation there."""
        if until not in STAGES:
            raise ValueError(f"until must be one of {STAGES}, got {until!r}")
        if self.data is not None and config.num_classes != len(self.data[0].classes):
            config = config.replace(num_classes=len(self.data[0].classes))
        scores: dict[str, float] = {}
        seconds: dict[str, float] = {}
        start = time.perf_counter()

        def stop_here() -> str | None:
            return gate(dict(scores)) if gate else None

        def done(**results: Any) -> Evaluation:
            seconds["total"] = time.perf_counter() - start
            return Evaluation(config=config, scores=scores, seconds=seconds, env=self.env(), **results)

        def stop_if_asked() -> None:
            if check_stop is not None:
                check_stop()

        stop_if_asked()
        t = time.perf_counter()
        cost = count_cost(config)
        scores.update(flops=float(cost.flops), params=float(cost.params))
        seconds["flops"] = time.perf_counter() - t
        if reason := stop_here():
            return done(rejected=reason)
        if until == "flops":
            return done()

        latency = None
        if self.latency_model is not None:
            t = time.perf_counter()
            scores["latency_ms"] = self.latency_model.predict(config)
            seconds["latency"] = time.perf_counter() - t
            if reason := stop_here():
                return done(rejected=reason)
        elif self.probe is not None:
            stop_if_asked()
            t = time.perf_counter()
            latency = self.probe.measure(config)
            if self.calibration is not None:
                latency = self.calibration.apply(latency)
            scores["latency_ms"] = latency.calibrated_ms if latency.calibrated_ms is not None else latency.median_ms
            seconds["latency"] = time.perf_counter() - t
            if reason := stop_here():
                return done(latency=latency, rejected=reason)

        training = None
        if self.data is not None and until == "train" and self.accuracy_model is not None:
            stop_if_asked()
            scores["accuracy"], seconds["predict"] = self.accuracy_model.predict_config(config, self.data[0], seed=self.train_settings.seed, cost=cost)
        elif self.data is not None and until == "train":
            t = time.perf_counter()
            training = train_proxy(config, *self.data, self.train_settings, on_epoch=on_epoch, check_stop=check_stop)
            scores["accuracy"] = training.accuracy
            seconds["train"] = time.perf_counter() - t
        return done(latency=latency, training=training)

    def env(self) -> dict[str, Any]:
        device = self.probe.settings.device if self.probe else self.train_settings.device
        return {
            "device": torch.cuda.get_device_name() if device == "cuda" else cpu_model(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        }
