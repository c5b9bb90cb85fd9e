"""The one root of every bad-input error, and the value checks the settings classes share.

Every package's error class (``ConfigError``, ``DataError``, ``SearchError``, ``ResultsError``)
derives from :class:`GhostNASError`, which the command line turns into one line and exit
status 2. It lives here, in the package the others all import and that imports none of them.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["GhostNASError", "check_choice", "check_int", "check_number", "check_odd", "is_int"]


class GhostNASError(ValueError):
    """Bad input of any kind (flags, files, data, storage): one line that names what and why."""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, low: int, high: int | None = None, why: str = "", error: type[Exception] = GhostNASError) -> None:
    if not is_int(value) or value < low or (high is not None and value > high):
        bound = ("a positive integer" if low == 1 else f"an integer >= {low}") if high is None else f"an integer in [{low}, {high}]"
        raise error(f"{name} must be {bound}{' ' + why if why else ''}, got {value!r}")


def check_odd(name: str, value: Any, *, high: int | None = None, error: type[Exception] = GhostNASError) -> None:
    if not is_int(value) or value < 1 or value % 2 == 0 or (high is not None and value > high):
        bound = "a positive odd integer" + ("" if high is None else f" up to {high}")
        raise error(f"{name} must be {bound}, got {value!r}")


def check_number(
    name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False, error: type[Exception] = GhostNASError
) -> None:
    """A finite real number in [low, high] (or (low, high] with ``low_open``)."""
    # (an int is finite however large; math.isfinite would overflow on 10**400)
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"{name} must be a finite number, got {value!r}")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not low <= value <= high or (low_open and value == low):
        if high == math.inf:
            bound = "a positive number" if (low, low_open) == (0, True) else f"a number {'>' if low_open else '>='} {low:g}"
        else:
            bound = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise error(f"{name} must be {bound}, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[Any, ...], *, error: type[Exception] = GhostNASError) -> None:
    if isinstance(value, bool) or value not in choices:
        raise error(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
