"""Every knob of a search, validated once: the CLI flags and the ``--config`` file map onto it."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import types as types_module
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evaluators import DEVICES, MAX_PROXY_EPOCHS, MAX_SEED, TrainSettings, check_device
from evaluators.latency import BACKENDS
from evaluators.zero_cost import ZERO_COST_SCORES
from spaces import MAX_INPUT_SIZE, PRESETS, ConfigError, GhostNASError, check_int, check_number, read_data_file, write_atomic

from search._objectives import Limits, SearchError, parse_count, parse_objectives
from search._samplers import SAMPLERS
from search._storage import default_storage_url, mask_url

__all__ = ["EVALUATION_FLAGS", "SearchSettings", "add_setting_flags"]


def _flag(default: Any, help: str, **argparse: Any) -> Any:
    """A setting that is also a command-line flag: ``--name-with-dashes``, with this help."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse})


# Far more than any search of this space runs (a few hundred trials); more is a typo, not a plan.
MAX_TRIALS = 100_000

# Candidates a prefilter may score per trained model: each costs a trial record and a zero-cost
# score (about a second); past this the sampler's proposals are mostly thrown away.
MAX_PREFILTER = 64

# What a prefilter can rank by: the fitted accuracy model (evaluators/accuracy_model.py) or one
# zero-cost score; the model ranked 20 CIFAR-10 models best (docs/BENCHMARKS.md, issue 18).
PREFILTER_SCORES = ("ridge", *ZERO_COST_SCORES)

# How a trial's accuracy is scored: a proxy training run, or the fitted accuracy model's
# prediction (seconds, no training; docs/BENCHMARKS.md, "Ground truth and proxy ranking").
ACCURACY_ESTIMATORS = ("train", "ridge")

# Flags ``eval`` shares with ``search`` (the data, the budget, the device).
EVALUATION_FLAGS = ("dataset", "data_root", "download", "subset", "epochs", "train_input_size", "device", "threads", "latency_backend", "latency_model")


@dataclass(frozen=True)
class SearchSettings:
    """Every setting of a search. The one schema: the ``search`` flags (names, types, help) and
    the ``--config`` file's keys and types are derived from these fields."""

    study: str = _flag("ghostnas", "study name (default ghostnas); the same name resumes")
    storage: str | None = _flag(None, "Optuna storage URL (default sqlite under --out)")
    out: Path | None = _flag(None, "output directory (default runs/<study>)")
    trials: int = _flag(16, f"finished trials the study should have (default 16, at most {MAX_TRIALS})")
    timeout: float | None = _flag(None, "stop after the trial running when S seconds have passed")
    objectives: tuple[str, ...] | str = _flag(("accuracy", "latency_ms", "flops"), "comma-separated: accuracy, latency_ms, flops, params")
    sampler: str = _flag("tpe", "tpe (default), nsga2, nsga3, gp, random")
    seed: int = _flag(0, f"seed for the sampler and the data split (default 0, at most {MAX_SEED})")
    max_flops: float | str | None = _flag(None, "hard limit, e.g. 100M")
    max_params: float | str | None = _flag(None, "hard limit, e.g. 3M")
    max_latency_ms: float | str | None = _flag(None, "hard limit in milliseconds")
    baselines: bool = _flag(True, "enqueue the GhostNet width family first (default on)")
    early_stopping: bool = _flag(True, "stop clear losers at epoch 2, 2x ratio, ... before the last (default on; nothing to stop at 2 epochs)")
    rung_ratio: float = _flag(3.0, "early stopping keeps the top 1/ratio at each rung, rungs ratio apart (default 3)")
    prefilter: int = _flag(1, f"score N sampled candidates per trained model with --prefilter-score, train only the best (default 1: off; at most {MAX_PREFILTER})")
    prefilter_score: str = _flag("ridge", "what --prefilter ranks by: ridge (default: FLOPs, params and the six zero-cost scores, fitted on CIFAR-10) or one zero-cost score", choices=PREFILTER_SCORES)
    accuracy_estimator: str | None = _flag(None, "how accuracy is scored: train (a proxy training run) or ridge (predicted from FLOPs, params and the six zero-cost scores by the model fitted on CIFAR-10 at 16 px: seconds a trial, no training; train a chosen member with `ghostnas train`). Default: ridge for --dataset cifar10, where it ranked models best, train otherwise; a resumed study keeps its own", choices=ACCURACY_ESTIMATORS)
    workers: int = _flag(1, "worker processes on this machine (default 1; at most 4 per core, and no more than trials left)")
    space: Path | None = _flag(None, "search space YAML (default: spaces/ghostnet.yaml)")
    preset: str = _flag("cifar", "input layout (default cifar: 32x32, total stride 8)", choices=tuple(PRESETS))
    input_size: int | None = _flag(None, "input resolution (default: the preset's)")
    train_input_size: int | None = _flag(None, "train and validate the proxy at this resolution instead (a budget knob: FLOPs and latency stay at --input-size)")
    dataset: str = _flag("digits", "digits (default, embedded), cifar10, cifar100, mnist, fashion-mnist, or an ImageFolder dir / .tar.gz")
    data_root: Path | None = _flag(None, "where torchvision datasets live (read locally)")
    download: bool = _flag(False, "download a torchvision dataset into --data-root")
    subset: int | None = _flag(None, "use this many images of the training data (stratified)")
    val_fraction: float = _flag(0.2, "share of the (subset of the) data held out for validation (default 0.2)")
    epochs: int | None = _flag(None, f"proxy training epochs (default {TrainSettings.epochs}, at most {MAX_PROXY_EPOCHS})")  # None: the trainer's default
    device: str = _flag("cpu", "where latency is timed and training runs (default cpu)", choices=DEVICES)
    threads: int = _flag(1, "CPU threads for the latency probe (default 1, at most the cores)")
    latency_backend: str = _flag("torch", "time with PyTorch (default) or ONNX Runtime", choices=BACKENDS)
    latency_model: Path | None = _flag(None, "a `ghostnas profile` file: predict latency with it instead of timing")
    progress: bool = _flag(True, "progress bar (default on)")

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", str(self.study)):
            raise SearchError(f"study name must be letters, digits, '_', '.', '-' (up to 100), got {self.study!r}")
        object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        for name in ("max_flops", "max_params", "max_latency_ms"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_count(value, name=_flag_name(name)))
        cores = os.cpu_count() or 1
        _int("trials", self.trials, low=1, high=MAX_TRIALS)
        _int("workers", self.workers, low=1, high=4 * cores, why=f"(4 per core of this machine's {cores})")
        _int("threads", self.threads, low=1, high=cores, why="(the cores of this machine)")
        _int("seed", self.seed, low=0, high=MAX_SEED)
        _int("prefilter", self.prefilter, low=1, high=MAX_PREFILTER)
        if self.prefilter > 1 and "accuracy" not in self.objectives:
            raise SearchError("--prefilter ranks candidates by predicted accuracy: it needs accuracy among the --objectives")
        if self.prefilter > 1 and self.accuracy_estimator == "ridge":  # (left unset, it resolves to train here)
            raise SearchError("--prefilter picks which candidate to train; with --accuracy-estimator ridge nothing is trained: drop one of them")
        if self.epochs is not None:
            _int("epochs", self.epochs, low=1, high=MAX_PROXY_EPOCHS)
        for name in ("subset", "input_size"):  # bounded by the data set and the config schema
            if getattr(self, name) is not None:
                _int(name, getattr(self, name), low=1)
        if self.train_input_size is not None:
            _int("train_input_size", self.train_input_size, low=8, high=MAX_INPUT_SIZE)
        if self.timeout is not None:
            check_number("--timeout", self.timeout, low=0, low_open=True, error=SearchError)
        if not (isinstance(self.val_fraction, float) and 0 < self.val_fraction < 1):
            raise SearchError(f"--val-fraction must be a number between 0 and 1 (both excluded), got {self.val_fraction!r}")
        check_number("--rung-ratio", self.rung_ratio, low=1, low_open=True, error=SearchError)
        if self.sampler not in SAMPLERS:
            raise SearchError(f"unknown sampler {self.sampler!r}: choose from {', '.join(SAMPLERS)}")
        estimator = () if self.accuracy_estimator is None else (("accuracy_estimator", ACCURACY_ESTIMATORS),)  # None: the default
        for name, choices in (("preset", tuple(PRESETS)), ("latency_backend", BACKENDS), ("prefilter_score", PREFILTER_SCORES), *estimator):
            if getattr(self, name) not in choices:
                raise SearchError(f"{_flag_name(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        try:
            check_device(self.device)
        except GhostNASError as exc:
            raise SearchError(str(exc)) from None
        for name in ("space", "data_root", "out", "latency_model"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("runs") / self.study

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage_url(self.out_dir)

    @property
    def default_accuracy_estimator(self) -> str:
        """What scores accuracy in a new study when --accuracy-estimator is not given: the ridge on
        CIFAR-10, whose 20 ground-truth models it ranked best (Kendall 0.76 out of sample, against
        0.71 for the best proxy training budget, at 14x the cost; docs/BENCHMARKS.md, "Ground truth and proxy
        ranking"); training elsewhere, where the fit has not been measured, and with --prefilter,
        which picks what to train."""
        return "ridge" if self.dataset == "cifar10" and self.prefilter == 1 and "accuracy" in self.objectives else "train"

    @property
    def limits(self) -> Limits:
        return Limits(max_flops=self.max_flops, max_params=self.max_params, max_latency_ms=self.max_latency_ms)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready, with the storage password masked."""
        data = dataclasses.asdict(self)
        data["objectives"] = list(self.objectives)
        data["storage"] = mask_url(self.storage_url)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        return data

    @classmethod
    def from_file(cls, path: str | Path) -> dict[str, Any]:
        """The settings a ``--config`` YAML/JSON file holds (keys as flags, ``-`` or ``_``)."""
        try:
            data = read_data_file(path, what="config file")
        except ConfigError as exc:
            raise SearchError(str(exc)) from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise SearchError(f"config file {path} must hold a mapping of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        settings = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise SearchError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        for key, value in settings.items():
            expected = _file_types(hints[key])
            if value is not None and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
                allowed = " or ".join(sorted({_TYPE_NAMES.get(t, t.__name__) for t in expected}))
                raise SearchError(f"config file {path}: {key} has the wrong type ({type(value).__name__}: {value!r}); it takes {allowed}")
        return settings

    def save(self, path: Path) -> None:
        write_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False), error=SearchError)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list"}


def _file_types(hint: Any) -> tuple[type, ...]:
    """The YAML/JSON types a field takes in a config file, from its annotation."""
    types: list[type] = []
    for t in typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types_module.UnionType) else (hint,):
        if t is type(None):
            continue
        if typing.get_origin(t) is tuple:
            types.append(list)
        elif t is Path:
            types.append(str)
        elif t is float:
            types += [int, float]
        else:
            types.append(t)
    return tuple(types)


def _flag_name(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _int(name: str, value: Any, *, low: int, high: int | None = None, why: str = "") -> None:
    check_int(_flag_name(name), value, low=low, high=high, why=why, error=SearchError)


def add_setting_flags(parser: argparse.ArgumentParser, *, names: Sequence[str] | None = None) -> None:
    """Add the flags of ``names`` (default: every setting) to ``parser``, typed from the fields.

    Every flag defaults to None, so that a ``--config`` file's values stand unless a flag is given.
    """
    hints = typing.get_type_hints(SearchSettings)
    for field in dataclasses.fields(SearchSettings):
        if names is not None and field.name not in names:
            continue
        meta = dict(field.metadata)
        kwargs: dict[str, Any] = {"help": meta.pop("help"), "default": None, **meta}
        types = _file_types(hints[field.name])
        if bool in types:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif "choices" not in kwargs:
            kwargs["type"] = Path if Path in typing.get_args(hints[field.name]) + (hints[field.name],) else next((t for t in (int, float) if types == _file_types(t)), str)
        parser.add_argument(_flag_name(field.name), **kwargs)
