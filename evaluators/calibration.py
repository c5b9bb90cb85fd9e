"""Calibrated latency: a probe's ratio to the reference model times one stored reference figure.

The absolute median of one probe moves by 30-40 % between processes on a shared or throttling
CPU; the ratio to the reference model timed in the same interleaved pairs moves by a few percent
(docs/BENCHMARKS.md, "Latency probe"). A study therefore times the reference once, for longer,
when it is created, and stores that figure with the device fingerprint it holds for; every
trial's latency is then ``ratio_to_reference x reference_ms``: milliseconds on this device, but
ranked by the stable ratio. ``eval`` does the same with a reference timed in its own process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from evaluators.latency import LatencyProbe, LatencyResult
from spaces import GhostNetConfig

__all__ = ["REFERENCE_SECONDS", "Calibration", "calibrate", "fingerprint_difference"]

# How long the reference is timed for the stored figure (it stops earlier once its spread is
# below half the probe's target). docs/BENCHMARKS.md, "Calibrated latency", measures how much the
# stored figure moves between processes at this budget.
REFERENCE_SECONDS = 5.0


@dataclass(frozen=True)
class Calibration:
    """The reference latency (ms) a study's trials are scaled by, and the device it holds for."""

    fingerprint: dict[str, Any]
    reference_ms: float
    runs: int
    spread: float
    measured: str  # UTC, ISO 8601

    def apply(self, result: LatencyResult) -> LatencyResult:
        """``result`` with ``calibrated_ms`` set (``None`` if it was timed without the reference)."""
        if result.ratio_to_reference is None:
            return result
        return dataclasses.replace(
            result, calibrated_ms=result.ratio_to_reference * self.reference_ms, calibration_reference_ms=self.reference_ms
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """A stored calibration; ValueError (one line) if it is not one."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != fields or not isinstance(data["fingerprint"], dict):
            raise ValueError(f"not a latency calibration: {str(data)[:80]}")
        reference_ms = data["reference_ms"]
        if not isinstance(reference_ms, (int, float)) or isinstance(reference_ms, bool) or not reference_ms > 0:
            raise ValueError(f"latency calibration reference_ms must be a positive number, got {reference_ms!r}")
        return cls(**data)


def calibrate(probe: LatencyProbe, like: GhostNetConfig, *, seconds: float = REFERENCE_SECONDS) -> Calibration:
    """Time the reference model for ``like``'s layout once, long enough to be stable."""
    result = probe.reference_latency(like, seconds=seconds)
    return Calibration(
        fingerprint=probe.fingerprint(like),
        reference_ms=result.median_ms,
        runs=result.runs,
        spread=result.spread,
        measured=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def fingerprint_difference(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """``None`` if the fingerprints are equal, else what differs, briefly (``threads 1 here, 2 stored``)."""
    keys = sorted(set(stored) | set(current))
    differ = [f"{key} {current.get(key)!r} here, {stored.get(key)!r} stored" for key in keys if stored.get(key) != current.get(key)]
    return "; ".join(differ) if differ else None
