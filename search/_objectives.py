"""The scores a search can optimise (named, with their directions, by the study format,
results/_format.py), and the hard limits it can impose on them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from results import OBJECTIVES

from spaces import GhostNASError

__all__ = ["OBJECTIVES", "Limits", "SearchError", "parse_count", "parse_objectives"]


class SearchError(GhostNASError):
    """Bad search input (flags, config file, storage): the CLI shows it as one line, exit 2."""


_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}


def parse_objectives(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``accuracy,flops`` or a list of names: known, non-empty, each once."""
    choose = f"choose from {', '.join(OBJECTIVES)}"
    if isinstance(text, str):
        names: list[object] = [n.strip() for n in text.split(",")]
    elif isinstance(text, (list, tuple)):
        names = list(text)
    else:
        raise SearchError(f"--objectives must be a comma-separated string or a list of names, got {text!r}; {choose}")
    if not names or any(n == "" for n in names):
        raise SearchError(f"--objectives {text!r} has an empty name (a stray comma?); {choose}")
    unknown = [n for n in names if not isinstance(n, str) or n not in OBJECTIVES]
    if unknown:
        raise SearchError(f"--objectives: unknown objective {', '.join(n if isinstance(n, str) else repr(n) for n in unknown)}: {choose}")
    if len(set(names)) != len(names):
        raise SearchError(f"objectives repeat a name: {','.join(names)}")
    return tuple(names)


def parse_count(text: str | int | float, *, name: str) -> float:
    """``100M``, ``2.5M``, ``800K``, ``1G`` or a plain number; positive and finite."""
    if isinstance(text, bool):
        raise SearchError(f"{name} must be a number with an optional K/M/G suffix (like 100M or 2.5M), got {text!r}")
    match = re.fullmatch(r"\s*([+-]?)([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
    if not match:
        raise SearchError(f"{name} must be a number with an optional K/M/G suffix (like 100M or 2.5M), got {text!r}")
    value = float(match.group(2)) * _SUFFIXES[match.group(3).upper()]
    if not math.isfinite(value):
        raise SearchError(f"{name} must be a finite number (like 100M or 2.5M), got {text!r}")
    if match.group(1) == "-" or value <= 0:
        raise SearchError(f"{name} must be positive (like 100M or 2.5M), got {text!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """Hard limits, checked in the order of their cost: flops and params, then latency."""

    max_flops: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.max_flops, self.max_params, self.max_latency_ms))

    def violation(self, name: str, value: float) -> float:
        """How far ``value`` exceeds the limit, in units of the limit: <= 0 is feasible."""
        limit = {"flops": self.max_flops, "params": self.max_params, "latency_ms": self.max_latency_ms}[name]
        return 0.0 if limit is None else value / limit - 1.0

    def to_dict(self) -> dict[str, float | None]:
        return {"max_flops": self.max_flops, "max_params": self.max_params, "max_latency_ms": self.max_latency_ms}


def human(value: float, unit: str = "") -> str:
    """``141.2M`` style for counts (the same suffixes the limits accept)."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{suffix}{unit}"
    return f"{value:g}{unit}"
