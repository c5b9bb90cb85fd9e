"""Where a study's latency comes from, fixed when it is created and checked by every joining worker.

A study stores one latency calibration (the reference model's latency and the device
fingerprint it holds for, see ``evaluators.calibration``). Workers and resumes on the same kind
of device reuse the stored figure, so every trial's ``latency_ms`` is scaled by the same
number; a worker whose fingerprint differs is refused, since its ratios are another device's.
A study searched with ``--latency-model`` records the file's hash instead (and the device it
was profiled on); a joining worker must bring the same file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna

from evaluators.calibration import Calibration, calibrate, fingerprint_difference
from evaluators.latency import LatencyProbe, LatencySettings
from evaluators.latency_model import LatencyModel, LatencyModelError
from results import StudyAttr
from search._objectives import SearchError
from search._settings import SearchSettings
from spaces import GhostNetConfig

__all__ = ["CALIBRATION_ATTR", "MODEL_ATTR", "bind_latency", "latency_source", "study_calibration", "study_latency_model"]

log = logging.getLogger(__name__)

CALIBRATION_ATTR = StudyAttr.LATENCY_CALIBRATION
MODEL_ATTR = StudyAttr.LATENCY_MODEL


def latency_source(settings: SearchSettings, *, input_size: int) -> tuple[LatencyProbe | None, LatencyModel | None]:
    """What scores latency, if anything needs it: a probe on this device, or a ``--latency-model``
    file (then no probe exists, so none can run)."""
    model = None
    if settings.latency_model is not None:  # checked even when nothing needs it: a bad file is a mistake
        model = load_latency_model(settings.latency_model, preset=settings.preset, input_size=input_size)
    if "latency_ms" not in settings.objectives and settings.max_latency_ms is None:
        return None, None
    if model is not None:
        return None, model
    probe_settings = LatencySettings(device=settings.device, threads=settings.threads, backend=settings.latency_backend)
    return LatencyProbe(settings=probe_settings), None


def bind_latency(
    study: optuna.Study, *, probe: LatencyProbe | None, model: LatencyModel | None, like: GhostNetConfig | None
) -> Calibration | None:
    """Check the latency source against the study's record (written on first use); the
    calibration a probe's ratios are scaled by."""
    if model is not None:
        study_latency_model(study, model)
    return study_calibration(study, probe, like=like) if probe is not None and like is not None else None


def study_calibration(study: optuna.Study, probe: LatencyProbe, *, like: GhostNetConfig) -> Calibration:
    """The study's stored calibration if this device matches it; timed and stored on first use."""
    if study.user_attrs.get(MODEL_ATTR) is not None:
        raise SearchError(
            f"study {study.study_name!r} predicts latency with a latency model; resume it with the same --latency-model"
        )
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


def load_latency_model(path: Path, *, preset: str, input_size: int) -> LatencyModel:
    """The ``--latency-model`` file, checked against the search's preset and input size."""
    try:
        model = LatencyModel.load(path)
        model.check(preset=preset, input_size=input_size)
    except LatencyModelError as exc:
        raise SearchError(str(exc)) from None
    return model


def study_latency_model(study: optuna.Study, model: LatencyModel) -> None:
    """Record which file the study predicts latency with; a joining worker must bring the same one."""
    if study.user_attrs.get(CALIBRATION_ATTR) is not None:
        raise SearchError(
            f"study {study.study_name!r} times latency on its device; resume it without --latency-model, or start a new --study"
        )
    stored = study.user_attrs.get(MODEL_ATTR)
    if stored is None:
        study.set_user_attr(MODEL_ATTR, model.record())
        return
    if not isinstance(stored, dict) or stored.get("sha256") != model.sha256:
        device = (stored.get("fingerprint") or {}).get("cpu") if isinstance(stored, dict) else None
        raise SearchError(
            f"study {study.study_name!r} predicts latency with another latency model ({_brief(stored, device)}); "
            f"resume it with the same --latency-model file, not {model.path} (sha256 {model.sha256[:12]})"
        )


def _brief(stored: Any, device: str | None) -> str:
    if not isinstance(stored, dict):
        return "unreadable record"
    return f"{stored.get('file')}, sha256 {str(stored.get('sha256'))[:12]}" + (f", profiled on {device}" if device else "")
