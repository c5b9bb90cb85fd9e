"""Every knob of a search, validated once: the CLI flags and the ``--config`` file map onto it."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spaces import ConfigError, read_data_file

from search._objectives import Limits, SearchError, parse_count, parse_objectives
from search._samplers import SAMPLERS
from search._storage import default_storage_url, mask_url

__all__ = ["SearchSettings"]


@dataclass(frozen=True)
class SearchSettings:
    study: str = "ghostnas"
    storage: str | None = None  # None: SQLite in ``out``
    out: Path | None = None  # None: runs/<study>
    trials: int = 16
    timeout: float | None = None  # seconds; stops after the trial running then
    objectives: tuple[str, ...] = ("accuracy", "latency_ms", "flops")
    sampler: str = "tpe"
    seed: int = 0
    max_flops: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    baselines: bool = True
    early_stopping: bool = True
    rung_ratio: float = 3.0
    workers: int = 1
    space: Path | None = None  # None: spaces/ghostnet.yaml
    preset: str = "cifar"
    input_size: int | None = None  # None: the preset's
    dataset: str = "digits"
    data_root: Path | None = None
    download: bool = False
    subset: int | None = None
    val_fraction: float = 0.2
    epochs: int | None = None  # None: the trainer's default
    device: str = "cpu"
    threads: int = 1  # latency probe threads
    latency_backend: str = "torch"
    latency_model: Path | None = None  # a `ghostnas profile` file: predict latency instead of timing
    progress: bool = True

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", str(self.study)):
            raise SearchError(f"study name must be letters, digits, '_', '.', '-' (up to 100), got {self.study!r}")
        object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        for name in ("max_flops", "max_params", "max_latency_ms"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_count(value, name=f"--{name.replace('_', '-')}"))
        _positive_int("trials", self.trials)
        _positive_int("workers", self.workers)
        _positive_int("threads", self.threads)
        if self.timeout is not None and not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise SearchError(f"--timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.sampler not in SAMPLERS:
            raise SearchError(f"unknown sampler {self.sampler!r}: choose from {', '.join(SAMPLERS)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise SearchError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if self.device not in ("cpu", "cuda"):
            raise SearchError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.epochs is not None:
            _positive_int("epochs", self.epochs)
        if self.subset is not None:
            _positive_int("subset", self.subset)
        if self.input_size is not None:
            _positive_int("input-size", self.input_size)
        if not (isinstance(self.val_fraction, float) and 0 < self.val_fraction < 1):
            raise SearchError(f"--val-fraction must be between 0 and 1, got {self.val_fraction!r}")
        if not (isinstance(self.rung_ratio, (int, float)) and self.rung_ratio > 1):
            raise SearchError(f"--rung-ratio must be > 1, got {self.rung_ratio!r}")
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
        for key, value in settings.items():
            expected = _TYPES.get(key)
            if expected and value is not None and not isinstance(value, expected):
                raise SearchError(f"config file {path}: {key} has the wrong type ({type(value).__name__})")
        return settings

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


_TYPES: dict[str, tuple[type, ...]] = {
    "study": (str,), "storage": (str,), "out": (str,), "trials": (int,), "timeout": (int, float),
    "objectives": (str, list), "sampler": (str,), "seed": (int,), "max_flops": (str, int, float),
    "max_params": (str, int, float), "max_latency_ms": (str, int, float), "baselines": (bool,),
    "early_stopping": (bool,), "rung_ratio": (int, float), "workers": (int,), "space": (str,),
    "preset": (str,), "input_size": (int,), "dataset": (str,), "data_root": (str,), "download": (bool,),
    "subset": (int,), "val_fraction": (float,), "epochs": (int,), "device": (str,), "threads": (int,),
    "latency_backend": (str,), "latency_model": (str,), "progress": (bool,),
}


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SearchError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
