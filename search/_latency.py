"""Where a study's latency comes from, fixed when it is created and checked by every joining worker.

A study stores one latency calibration (the reference model's latency and the device
fingerprint it holds for, see ``evaluators.calibration``). Workers and resumes on the same kind
of device reuse the stored figure, so every trial's ``latency_ms`` is scaled by the same
number; a worker whose fingerprint differs is refused, since its ratios are another device's.
"""

from __future__ import annotations

import logging

import optuna

from evaluators.calibration import Calibration, calibrate, fingerprint_difference
from evaluators.latency import LatencyProbe
from search._objectives import SearchError
from spaces import GhostNetConfig

__all__ = ["CALIBRATION_ATTR", "study_calibration"]

log = logging.getLogger(__name__)

CALIBRATION_ATTR = "latency_calibration"


def study_calibration(study: optuna.Study, probe: LatencyProbe, *, like: GhostNetConfig) -> Calibration:
    """The study's stored calibration if this device matches it; timed and stored on first use."""
    stored = study.user_attrs.get(CALIBRATION_ATTR)
    if stored is None:
        if any("latency" in t.user_attrs for t in study.get_trials(deepcopy=False)):
            raise SearchError(
                f"study {study.study_name!r} recorded raw latency medians (it predates calibrated latency); "
                "start a new --study to rank on calibrated latency"
            )
        calibration = calibrate(probe, like)
        study.set_user_attr(CALIBRATION_ATTR, calibration.to_dict())
        log.info(
            "latency calibration: reference %s at %d px timed %.3f ms (spread %.3f over %d runs); stored in the study",
            calibration.fingerprint["reference"], calibration.fingerprint["input_size"],
            calibration.reference_ms, calibration.spread, calibration.runs,
        )
        # Another machine creating the study at the same moment may have written its own: the
        # stored one is the study's, whoever wrote it.
        stored = study.user_attrs.get(CALIBRATION_ATTR, calibration.to_dict())
    try:
        calibration = Calibration.from_dict(stored)
    except ValueError as exc:
        raise SearchError(f"study {study.study_name!r}: {exc}") from None
    difference = fingerprint_difference(calibration.fingerprint, probe.fingerprint(like))
    if difference:
        raise SearchError(
            f"study {study.study_name!r} calibrated its latency on another device ({difference}); "
            "join it from the same kind of device and settings, or start a new --study"
        )
    return calibration
