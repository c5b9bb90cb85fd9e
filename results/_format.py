"""What a GhostNAS study holds, defined once (docs/STUDY_FORMAT.md is its prose).

``search/`` writes a study with these names and ``results/`` reads it with them: the format
version, the objectives and their directions, the value an unmeasured objective is given, the
user attribute keys of the study and of its trials, which trials are feasible, and which
points are non-dominated (the front). It lives in ``results`` because data flows from the search
to the results: the writer may import the reader's package, the reader may not import the
writer's (``search`` pulls in samplers, evaluators and torch training). Plain data, numpy and
Optuna's trial states only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from optuna.trial import TrialState

__all__ = [
    "ACCURACY_RUNS_KEY",
    "FORMAT_VERSION",
    "OBJECTIVES",
    "STAGE_SECONDS",
    "UNMEASURED",
    "StudyAttr",
    "TrialAttr",
    "is_feasible",
    "non_dominated",
]

FORMAT_VERSION = 1

# Every score a trial can have and the direction it is optimised in (DESIGN.md, "Scores"), in
# the words ``optuna.create_study(directions=...)`` takes.
OBJECTIVES: dict[str, str] = {
    "accuracy": "maximize",
    "latency_ms": "minimize",
    "flops": "minimize",
    "params": "minimize",
}

# The value recorded for an objective that was never measured because a cheaper limit rejected
# the sample first: the worst value, so that no front ever contains it.
UNMEASURED: dict[str, float] = {"accuracy": 0.0, "latency_ms": 1e12, "flops": 1e12, "params": 1e12}

# The stages a trial's ``seconds`` attribute times.
STAGE_SECONDS = ("build", "flops", "latency", "train", "predict", "total")  # predict: --accuracy-estimator ridge


class StudyAttr:
    """Keys of the study's user attributes."""

    VERSION = "ghostnas_version"
    OBJECTIVES = "objectives"  # written last: a study that has it has the whole record
    LIMITS = "limits"
    SETTINGS = "settings"
    SPACE = "space"
    PROXY = "proxy"
    LATENCY_CALIBRATION = "latency_calibration"  # the reference latency trials are scaled by, and its device
    LATENCY_MODEL = "latency_model"  # or the --latency-model file latency is predicted with (its sha256)


# Study user attr prefix of a trial's extra training runs ("accuracy_runs.<trial number>"),
# written by ``ghostnas confirm``.
ACCURACY_RUNS_KEY = "accuracy_runs."


class TrialAttr:
    """Keys of a trial's user attributes."""

    CONFIG = "config"
    CONFIG_ID = "config_id"
    BASELINE = "baseline"
    SCORES = "scores"
    LATENCY = "latency"
    TRAINING = "training"
    SECONDS = "seconds"
    ENV = "env"
    WORKER = "worker"
    REJECTED = "rejected"
    FAILED = "failed"
    STOPPED = "stopped"
    SURPLUS = "surplus"
    DUPLICATE_OF = "duplicate_of"  # a config the study already held: recorded FAIL, never run
    EPOCH_ACCURACY = "epoch_accuracy"
    # search --prefilter: on each scored candidate (recorded FAIL, not trained) its score and rank;
    # on the trial that trains the best of them, the candidates' trial numbers.
    PREFILTERED = "prefiltered"
    PREFILTER = "prefilter"
    REASONS = (FAILED, REJECTED, STOPPED)  # why a trial did not count; a retry clears its parent's


def is_feasible(state: TrialState, constraints: Mapping[str, float]) -> bool:
    """A trial counts for the front when it is COMPLETE and every constraint is <= 0."""
    return state == TrialState.COMPLETE and all(value <= 0 for value in constraints.values())


def non_dominated(losses: np.ndarray) -> np.ndarray:
    """Mask of the rows (points to minimise) that no other row dominates: at least as good in
    every column and strictly better in one. Equal rows do not dominate each other, so all are
    kept. O(n^2 d), enough for study-sized inputs."""
    keep = np.ones(len(losses), dtype=bool)
    for i, point in enumerate(losses):
        no_worse = (losses <= point).all(axis=1)
        better = (losses < point).any(axis=1)
        keep[i] = not (no_worse & better).any()
    return keep
