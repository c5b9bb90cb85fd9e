"""``ghostnas profile``: time the space's building blocks on this device and fit a latency model.

Run on the target device. It samples ``models`` configs from the space (the GhostNet width
family first, where the space holds it), times every distinct unit they contain (stem, each
bottleneck shape, head) as a ratio to the reference model timed in the same interleaved pairs,
and times the configs whole. Before that it times a grid of the grouped convs the space
produces (each kernel family at a grid of group counts; the families from the training configs and
``KERNEL_DRAWS`` further draws, never from the held-out ones), which costs the grouped convs of
any unit (``evaluators.latency_model.KernelGrid``). A non-negative least-squares fit on the units' features predicts
shapes never timed; a scale and a cost per unit fitted on the whole models correct the units'
sum ("blocks"). The same features with coefficients fitted on the whole models instead ("models")
cost a block as it runs inside a model; the profile keeps whichever predicts the training models
better left-one-out. Then ``holdout`` further configs, never used in any fit, are timed
whole and predicted: the file records that error. See ``evaluators.latency_model``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import optimize, stats
from torch import nn
from tqdm import tqdm

from evaluators.calibration import calibrate
from evaluators.latency import LatencyProbe, LatencySettings
from evaluators.latency_model import ALIGN, FEATURES, FORMAT, GRID_GROUPS, VERSION, ConvFamily, LatencyModel, Unit, config_units
from evaluators.training import MAX_SEED
from spaces import MAX_CLASSES, MAX_INPUT_SIZE, PRESETS, ConfigError, GhostNetConfig, SearchSpace, check_int, random_suggest, reference, reference_names

__all__ = ["MAX_MODELS", "ProfileSettings", "profile"]

log = logging.getLogger(__name__)

# At most this many training (and held-out) models: each is timed whole for up to
# ``model_seconds`` (2 s), and its blocks too, so 1000 of each is already about an hour.
MAX_MODELS = 1000
# Configs drawn only to find the space's grouped-conv families (no timing: one forward pass
# each, about 5 s for 100 cifar configs): the grid then covers shapes the training models lack.
KERNEL_DRAWS = 100
# A grid conv is repeated inside one timed run until the run takes about this long: a 4-group
# conv alone takes microseconds, where the clock's and the call's jitter are a large part.
KERNEL_RUN_MS = 1.0
# ... but at most this many copies in one ONNX graph (each export and session costs time; a
# session's own call, about 30 us here, is then at most a few us a conv).
ONNX_COPIES = 16


@dataclass(frozen=True)
class ProfileSettings:
    preset: str = "cifar"
    input_size: int | None = None  # None: the preset's
    num_classes: int = 10
    backend: str = "torch"
    threads: int = 1
    device: str = "cpu"
    models: int = 20  # whole models to fit on; their units are the lookup table
    holdout: int = 30  # whole models to measure the predictor's error on
    seed: int = 0
    # channels_last's cost is shape-dependent in ways the block features do not show (one sampled
    # cifar model ran 1.8x slower in it than in NCHW, where the reference ran 0.8x): a predictor
    # learns NCHW, the layout ONNX graphs and most runtimes take.
    memory_format: str = "nchw"
    unit_seconds: float = 0.5  # timing cap per unit
    model_seconds: float = LatencySettings.max_seconds  # per whole model: the search probe's cap
    progress: bool = True

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"profile preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        # Named as the flags are; bounded so that no value can run for days or fill the memory.
        cores = os.cpu_count() or 1
        check_int("--threads", self.threads, low=1, high=cores, why="(the cores of this machine)")
        check_int("--models", self.models, low=3, high=MAX_MODELS)
        check_int("--holdout", self.holdout, low=1, high=MAX_MODELS)
        check_int("--seed", self.seed, low=0, high=MAX_SEED)
        check_int("--num-classes", self.num_classes, low=2, high=MAX_CLASSES)
        if self.input_size is not None:
            check_int("--input-size", self.input_size, low=8, high=MAX_INPUT_SIZE)
        for name in ("unit_seconds", "model_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"profile {name.replace('_', '-')} must be positive, got {value!r}")
        LatencySettings(device=self.device, threads=self.threads, backend=self.backend, input_size=self.size, memory_format=self.memory_format)

    @property
    def size(self) -> int:
        return self.input_size or PRESETS[self.preset]["input_size"]


def profile(settings: ProfileSettings, space: SearchSpace, *, cache_dir: Path | None = None) -> dict[str, Any]:
    """Profile this device for ``space``; the latency-model file's content (JSON-ready)."""
    started = time.perf_counter()
    s = settings
    probe_settings = LatencySettings(
        device=s.device, threads=s.threads, backend=s.backend, input_size=s.size, max_seconds=s.model_seconds, memory_format=s.memory_format
    )
    probe = LatencyProbe(settings=probe_settings, cache_dir=cache_dir)
    unit_probe = LatencyProbe(settings=dataclasses.replace(probe_settings, max_seconds=s.unit_seconds), cache_dir=cache_dir)
    like = reference("ghostnet-1.0x", preset=s.preset, num_classes=s.num_classes, input_size=s.size)
    calibration = calibrate(probe, like)
    train, holdout = _sample(space, s)
    kernels = _time_kernels(unit_probe, _families(space, s, train), like=like, progress=s.progress)
    units = _time_units(unit_probe, train, progress=s.progress)
    measured = _time_models(probe, train + holdout, progress=s.progress, what="whole models")
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": calibration.fingerprint,
        "settings": {**dataclasses.asdict(s), "input_size": s.size, "batch_size": probe_settings.batch_size},
        "probe": dataclasses.asdict(probe_settings),
        "reference_ms": calibration.reference_ms,
        "kernels": kernels,
        "units": {unit.key: ratio for unit, ratio in units},
        "fit": {"features": list(FEATURES), "mode": "blocks"},
        "correction": {"slope": 1.0, "per_unit": 0.0},
    }
    model = LatencyModel(data=data, sha256="", path="(profile)")
    data["fit"]["coef"] = _fit_units(model, units)
    _fit_whole(model, train, measured[: len(train)])
    data["error"], data["holdout"] = _holdout_error(model, holdout, measured[len(train) :], reference_ms=calibration.reference_ms)
    data["train_models"] = [c.id for c in train]
    data["train_measured_ms"] = [r * calibration.reference_ms for r in measured[: len(train)]]  # for audits and refits
    data["profile_seconds"] = time.perf_counter() - started
    return data


def _sample(space: SearchSpace, s: ProfileSettings) -> tuple[list[GhostNetConfig], list[GhostNetConfig]]:
    """Training configs (the width family that fits the space, then random ones) and held-out ones."""
    family = []
    for name in reference_names():
        config = reference(name, preset=s.preset, num_classes=s.num_classes, input_size=s.size)
        try:
            space.to_params(config)
        except ConfigError:
            continue
        family.append(config)
    rng = random.Random(s.seed)

    def draw() -> GhostNetConfig:
        params = space.sample(random_suggest(rng))
        return space.to_config(params, preset=s.preset, num_classes=s.num_classes, input_size=s.size)

    train = family[: s.models] + [draw() for _ in range(s.models - min(len(family), s.models))]
    return train, [draw() for _ in range(s.holdout)]


def _families(space: SearchSpace, s: ProfileSettings, train: list[GhostNetConfig]) -> dict[ConvFamily, int]:
    """The grouped-conv families of the training configs and of ``KERNEL_DRAWS`` more drawn from
    their own random stream (so never the held-out configs), each with the most groups seen."""
    rng = random.Random(f"kernel-families-{s.seed}")
    draws = [space.to_config(space.sample(random_suggest(rng)), preset=s.preset, num_classes=s.num_classes, input_size=s.size)
             for _ in range(KERNEL_DRAWS)]  # fmt: skip
    most: dict[ConvFamily, int] = {}
    for config in train + draws:
        for unit, _ in config_units(config):
            for family, groups in unit.grouped:
                most[family] = max(most.get(family, 0), groups)
    return most


def _time_kernels(probe: LatencyProbe, families: dict[ConvFamily, int], *, like: GhostNetConfig, progress: bool) -> dict[str, Any]:
    """Each family timed at the grid's group counts of both classes (``ALIGN``), in each up to the
    first at or above twice the most seen (so the groups a held-out model has are nearly always
    inside the grid) and at least two: the file's ``kernels`` section, ratios to the reference model."""
    todo = []
    for family, most in families.items():
        for aligned in (True, False):
            counts = [g for g in GRID_GROUPS if (g % ALIGN == 0) == aligned]
            grid = [g for g in counts if g < 2 * most] + [g for g in counts if g >= 2 * most][:1]
            todo += [(family, g) for g in (grid if len(grid) >= 2 else counts[:2])]
    todo.sort(key=lambda item: (item[0].key, item[1]))  # each family's counts in order: the file's rows are sorted
    kernels: dict[str, Any] = {}
    onnx = probe.settings.backend == "onnxruntime"
    with torch.random.fork_rng(devices=[]):  # the convs' random weights leave the caller's stream alone
        for family, groups in tqdm(todo, desc="profile: kernels", unit="conv", disable=not progress):
            conv, shape = family.conv(groups).eval(), family.input_shape(groups, batch_size=probe.settings.batch_size)
            repeats = _repeats(conv, shape)
            module = _Repeated(conv, min(ONNX_COPIES, repeats) if onnx else repeats, copies=onnx)
            result = probe.measure_module(module, shape, like=like)
            row = kernels.setdefault(family.key, {"groups": [], "ratios": []})
            row["groups"].append(groups)
            row["ratios"].append(result.ratio_to_reference / module.repeats)
    log.info("profile: %d grouped convs of %d families timed", len(todo), len(families))
    return kernels


class _Repeated(nn.Module):
    """``repeats`` calls of a conv in one forward pass, on the same input. For ONNX Runtime,
    ``repeats`` copies of it with their own weights, every output returned: its graph optimiser
    would merge identical nodes and drop unused ones, and one conv alone in a session is mostly
    the session's call (a 3x3 depthwise conv of 200 channels at 4x4: about 35 us alone, where a
    model runs it in a few), which is not what the conv costs inside a model."""

    def __init__(self, conv: nn.Conv2d, repeats: int, *, copies: bool) -> None:
        super().__init__()
        self.repeats = repeats
        self.convs = nn.ModuleList([copy.deepcopy(conv).eval() for _ in range(repeats)] if copies else [conv])
        if copies:
            with torch.no_grad():
                for c in self.convs:
                    c.weight.normal_()

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(self.convs) > 1:
            return tuple(conv(x) for conv in self.convs)
        for _ in range(self.repeats - 1):
            self.convs[0](x)
        return self.convs[0](x)


def _repeats(conv: nn.Conv2d, input_shape: tuple[int, ...]) -> int:
    """How many calls of ``conv`` take about ``KERNEL_RUN_MS`` here (a rough untimed estimate)."""
    x = torch.randn(input_shape)
    with torch.inference_mode():
        conv(x)
        started = time.perf_counter()
        for _ in range(3):
            conv(x)
        seconds = (time.perf_counter() - started) / 3
    return int(np.clip(round(KERNEL_RUN_MS / 1e3 / max(seconds, 1e-7)), 1, 200))


def _time_units(probe: LatencyProbe, configs: list[GhostNetConfig], *, progress: bool) -> list[tuple[Unit, float]]:
    """Each distinct unit of ``configs`` timed once: (unit, ratio to the reference)."""
    todo: dict[str, tuple[Unit, Any, GhostNetConfig]] = {}
    for config in configs:
        for unit, module in config_units(config, batch_size=probe.settings.batch_size):
            todo.setdefault(unit.key, (unit, module, config))
    timed = []
    for unit, module, config in tqdm(todo.values(), desc="profile: blocks", unit="block", disable=not progress):
        result = probe.measure_module(module, unit.input_shape, like=config)
        timed.append((unit, result.ratio_to_reference))
    log.info("profile: %d distinct units timed", len(timed))
    return timed


def _time_models(probe: LatencyProbe, configs: list[GhostNetConfig], *, progress: bool, what: str) -> list[float]:
    return [probe.measure(c).ratio_to_reference for c in tqdm(configs, desc=f"profile: {what}", unit="model", disable=not progress)]


def _fit_units(model: LatencyModel, units: list[tuple[Unit, float]]) -> list[float]:
    """Non-negative coefficients minimising the relative error of the units' ratios."""
    features = np.array([model.features(u) for u, _ in units])
    ratios = np.array([r for _, r in units])
    coef, _ = optimize.nnls(features / ratios[:, None], np.ones(len(ratios)))
    return [float(c) for c in coef]


def _fit_whole(model: LatencyModel, train: list[GhostNetConfig], measured: list[float]) -> None:
    """Fit both predictors on the whole training models and keep the one that predicts them
    better left-one-out: ``blocks`` (the timed blocks' sum, scaled, plus a cost per unit of
    either sign) or
    ``models`` (the same unit features, their coefficients fitted on whole models, so a block is
    costed as it runs inside a model)."""
    data, m = model.data, np.array(measured)
    sums = np.array([model.predict_ratio(c, mode="blocks") for c in train])  # correction still the identity
    units = [[u for u, _ in config_units(c)] for c in train]  # built and run once per model
    counts = np.array([len(u) for u in units], dtype=float)
    summed = np.array([np.sum([model.features(u) for u in model_units], axis=0) for model_units in units])
    blocks = np.stack([sums, counts], axis=1)
    loo = {"blocks": _leave_one_out(blocks, m, _lstsq_relative), "models": _leave_one_out(summed, m, _nnls_relative)}
    slope, per_unit = _lstsq_relative(blocks, m)
    data["correction"] = {"slope": slope, "per_unit": per_unit}
    data["fit"]["model_coef"] = _nnls_relative(summed, m)
    data["fit"]["mode"] = min(loo, key=loo.get)
    data["fit"]["train_loo_median_abs_rel"] = loo
    log.info("profile: left-one-out median error on the training models: %s; using %s", loo, data["fit"]["mode"])


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> list[float]:
    coef, _ = optimize.nnls(x / y[:, None], np.ones(len(y)))
    return [float(c) for c in coef]


def _lstsq_relative(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Least squares on the relative error, coefficients of either sign: the correction's cost
    per unit is negative where each unit timed alone carries a call's overhead (measured: the
    units' sum less about 0.013 reference latencies a unit gives the whole model within 9 %,
    where the non-negative fit's scale alone left 37 % errors)."""
    coef, *_ = np.linalg.lstsq(x / y[:, None], np.ones(len(y)), rcond=None)
    return [float(c) for c in coef]


def _leave_one_out(x: np.ndarray, y: np.ndarray, fit: Callable[[np.ndarray, np.ndarray], list[float]]) -> float:
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        errors.append(abs(x[i] @ np.array(fit(x[keep], y[keep])) / y[i] - 1))
    return float(np.median(errors))


def _holdout_error(
    model: LatencyModel, configs: list[GhostNetConfig], measured: list[float], *, reference_ms: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The predictor against whole-model measurements it never saw (calibrated ms)."""
    predicted = np.array([model.predict_ratio(c) for c in configs]) * reference_ms
    actual = np.array(measured) * reference_ms
    rel = predicted / actual - 1
    other = "blocks" if model.data["fit"]["mode"] == "models" else "models"
    other_rel = np.array([model.predict_ratio(c, mode=other) for c in configs]) * reference_ms / actual - 1
    error = {
        "models": len(configs),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "median_abs_rel": float(np.median(np.abs(rel))),
        "max_abs_rel": float(np.max(np.abs(rel))),
        "kendall": _kendall(predicted, actual),
        "mode": model.data["fit"]["mode"],
        f"{other}_within_10pct": float(np.mean(np.abs(other_rel) <= 0.10)),
        f"{other}_median_abs_rel": float(np.median(np.abs(other_rel))),
    }
    rows = [
        {"config": c.to_dict(), "config_id": c.id, "measured_ms": float(a), "predicted_ms": float(p)}
        for c, a, p in zip(configs, actual, predicted)
    ]
    return error, rows


def _kendall(a: np.ndarray, b: np.ndarray) -> float | None:
    tau = stats.kendalltau(a, b).statistic if len(a) > 1 else float("nan")
    return float(tau) if np.isfinite(tau) else None  # undefined for fewer than 2 distinct values
