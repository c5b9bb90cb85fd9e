"""Open a GhostNAS study and flatten its trials into a pandas DataFrame.

Reads only what docs/STUDY_FORMAT.md lists, so any study written by ``search/`` (or by hand,
following that page) can be inspected here without torch training or the sampler.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import optuna
import pandas as pd
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from spaces import GhostNASError
from results._format import ACCURACY_RUNS_KEY, FORMAT_VERSION, OBJECTIVES, STAGE_SECONDS, StudyAttr, TrialAttr, is_feasible
from results._signal import signal_note

__all__ = ["ResultsError", "load_trials", "open_study"]


class ResultsError(GhostNASError):
    """A study that cannot be opened or read, or an export/plot request that cannot be met."""


def open_study(*, storage: BaseStorage, study_name: str) -> optuna.Study:
    """Load an existing study from an opened storage (``search.open_storage`` opens URLs).

    A missing study raises a one-line ``ResultsError`` naming the studies that are there.
    """
    names = optuna.get_all_study_names(storage=storage)
    if study_name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ResultsError(f"study {study_name!r} does not exist in this storage (studies there: {known})")
    return optuna.load_study(study_name=study_name, storage=storage)


def load_trials(study: optuna.Study, *, trials: list[FrozenTrial] | None = None) -> pd.DataFrame:
    """One row per trial of a GhostNAS study (any state), in trial-number order.

    Columns: ``number``, ``state`` (Optuna's name, e.g. ``COMPLETE``), ``feasible`` (COMPLETE and
    every constraint <= 0), ``baseline`` (reference name or None), the four scores as measured
    (NaN when never measured, e.g. accuracy of a trial a limit rejected), ``accuracy_runs`` and
    ``accuracy_sd`` (a COMPLETE trial's ``accuracy`` is the mean over the search's training run
    and those ``ghostnas confirm`` added; ``accuracy_search`` keeps the search's), ``rejected``/``failed``/
    ``stopped`` reasons, ``config_id``, ``config`` (dict), ``width``, ``ratio``, ``dw_size``,
    ``depth`` (blocks in all), ``s{i}.depth`` per stage, ``seconds_<stage>``, ``constraints``,
    ``trial_params`` (Optuna params), ``datetime_start``, ``datetime_complete``, ``duration``.

    Text columns follow pandas: a missing ``baseline`` or reason reads as NaN (``pd.isna``).

    ``df.attrs`` holds the study's ``study_name``, ``objectives``, ``limits``, ``proxy`` record,
    the parameter ``distributions`` (Optuna JSON) and ``signal``: ``signal_note``'s warning that
    the accuracies are indistinguishable from chance, or None; so later steps need nothing but
    the frame (a front keeps the note of the whole study).
    ``trials`` are the study's trials when the caller has just read them (the search's progress bar).
    """
    attrs = study.user_attrs
    version = attrs.get(StudyAttr.VERSION)
    if version != FORMAT_VERSION:
        raise ResultsError(
            f"study {study.study_name!r} is not a GhostNAS study of format {FORMAT_VERSION} "
            f"(ghostnas_version is {version!r})"
        )
    objectives = list(attrs.get(StudyAttr.OBJECTIVES) or [])
    unknown = [name for name in objectives if name not in OBJECTIVES]
    if not objectives or unknown:
        raise ResultsError(f"study {study.study_name!r} has invalid objectives {objectives!r}")

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    stage_count = max((len(_config_of(t).get("stages", [])) for t in trials), default=0)
    rows = [_row(trial, stage_count, extra_runs=attrs.get(f"{ACCURACY_RUNS_KEY}{trial.number}")) for trial in trials]
    frame = pd.DataFrame(rows, columns=_columns(stage_count))
    # Nullable integers: a trial without a config (a worker died early) must not turn the
    # other trials' ratio or depth into floats.
    counts = ["accuracy_runs", "ratio", "dw_size", "depth", *(f"s{i}.depth" for i in range(stage_count))]
    frame[counts] = frame[counts].astype("Int64")
    frame["feasible"] = frame["feasible"].astype(bool)
    frame.attrs = {
        "study_name": study.study_name,
        "objectives": objectives,
        "limits": dict(attrs.get(StudyAttr.LIMITS) or {}),
        "proxy": dict(attrs.get(StudyAttr.PROXY) or {}),
        "distributions": _distributions(trials),
    }
    frame.attrs["signal"] = signal_note(frame)
    return frame


def _columns(stage_count: int) -> list[str]:
    return [
        "number", "state", "feasible", "baseline", *OBJECTIVES, "accuracy_runs", "accuracy_sd", "accuracy_search",
        "rejected", "failed", "stopped",
        "config_id", "config", "width", "ratio", "dw_size", "depth",
        *(f"s{i}.depth" for i in range(stage_count)),
        *(f"seconds_{stage}" for stage in STAGE_SECONDS),
        "constraints", "trial_params", "datetime_start", "datetime_complete", "duration",
    ]  # fmt: skip


def _config_of(trial: FrozenTrial) -> dict[str, Any]:
    config = trial.user_attrs.get(TrialAttr.CONFIG)
    return config if isinstance(config, dict) else {}


def _row(trial: FrozenTrial, stage_count: int, *, extra_runs: Any = None) -> dict[str, Any]:
    attrs = trial.user_attrs
    scores = attrs.get(TrialAttr.SCORES) or {}
    seconds = attrs.get(TrialAttr.SECONDS) or {}
    config = _config_of(trial)
    stages = config.get("stages", [])
    complete = trial.state == optuna.trial.TrialState.COMPLETE
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": is_feasible(trial.state, trial.constraints),
        "baseline": attrs.get(TrialAttr.BASELINE),
        **{name: _number(scores.get(name)) for name in OBJECTIVES},
        **_accuracy_runs(_number(scores.get("accuracy")), extra_runs if complete else None),
        "rejected": attrs.get(TrialAttr.REJECTED),
        "failed": attrs.get(TrialAttr.FAILED),
        "stopped": attrs.get(TrialAttr.STOPPED),
        "config_id": attrs.get(TrialAttr.CONFIG_ID),
        "config": config or None,
        "width": config.get("width"),
        "ratio": config.get("ratio"),
        "dw_size": config.get("dw_size"),
        "depth": sum(len(stage) for stage in stages) if stages else None,
        **{f"seconds_{stage}": _number(seconds.get(stage)) for stage in STAGE_SECONDS},
        "constraints": dict(trial.constraints),
        "trial_params": dict(trial.params),
        "datetime_start": trial.datetime_start,
        "datetime_complete": trial.datetime_complete,
        "duration": trial.duration,
    }
    for i in range(stage_count):
        row[f"s{i}.depth"] = len(stages[i]) if i < len(stages) else None
    return row


def _accuracy_runs(search: float, extra_runs: Any) -> dict[str, Any]:
    """The accuracy columns: the mean over the search's run and every confirmed extra run.

    ``extra_runs`` is the study attr's list of ``{"seed", "accuracy"}`` (or ``"failed"``) runs;
    failed or malformed entries count for nothing.
    """
    if math.isnan(search):
        return {"accuracy": search, "accuracy_runs": None, "accuracy_sd": math.nan, "accuracy_search": search}
    runs = [search]
    for run in extra_runs if isinstance(extra_runs, list) else []:
        value = _number(run.get("accuracy")) if isinstance(run, dict) else math.nan
        if 0.0 <= value <= 1.0:
            runs.append(value)
    sd = statistics.stdev(runs) if len(runs) > 1 else math.nan
    return {"accuracy": statistics.fmean(runs), "accuracy_runs": len(runs), "accuracy_sd": sd, "accuracy_search": search}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _distributions(trials: list[FrozenTrial]) -> dict[str, str]:
    """Each parameter's distribution as Optuna JSON (plain data, cheap for pandas to copy)."""
    found: dict[str, str] = {}
    for trial in trials:
        for name, dist in trial.distributions.items():
            found.setdefault(name, optuna.distributions.distribution_to_json(dist))
    return found


def objectives_of(frame: pd.DataFrame, objectives: list[str] | None) -> list[str]:
    """``objectives`` checked against the score columns, or the study's own from ``frame.attrs``."""
    chosen = list(objectives) if objectives is not None else list(frame.attrs.get("objectives") or [])
    if not chosen:
        raise ResultsError("no objectives given and the frame does not name its study's objectives")
    unknown = [name for name in chosen if name not in OBJECTIVES]
    if unknown:
        raise ResultsError(f"unknown objective(s) {', '.join(map(repr, unknown))} (choose from {', '.join(OBJECTIVES)})")
    if len(set(chosen)) != len(chosen):
        raise ResultsError(f"objectives repeat a name: {chosen}")
    return chosen


def scored_mask(frame: pd.DataFrame, objectives: list[str]) -> pd.Series:
    """Feasible COMPLETE trials whose every objective in ``objectives`` was measured."""
    return frame["feasible"].astype(bool) & frame[objectives].notna().all(axis=1)


def scored(frame: pd.DataFrame, objectives: list[str]) -> pd.DataFrame:
    return frame[scored_mask(frame, objectives)]
