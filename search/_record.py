"""What a trial records of its evaluation (docs/STUDY_FORMAT.md, "Trial"), and why one failed."""

from __future__ import annotations

import dataclasses
import logging

import optuna
import torch
from optuna.trial import Trial

from evaluators.evaluate import Evaluation
from evaluators.training import TrainingFailed
from results import TrialAttr
from search._objectives import Limits

__all__ = ["TrialFailed", "fail", "failure_reason", "record_evaluation"]

log = logging.getLogger(__name__)


class TrialFailed(Exception):
    """An evaluation that ended with a recorded reason; Optuna marks the trial FAIL."""


def fail(trial: Trial, reason: str) -> None:
    """Record ``reason`` on ``trial`` and end it: TrialFailed, which the search lets Optuna catch."""
    trial.set_user_attr(TrialAttr.FAILED, reason)
    log.warning("trial %d failed: %s", trial.number, reason)
    raise TrialFailed(reason)


def failure_reason(exc: Exception) -> str:
    """The one-line ``failed`` reason of an evaluation that raised ``exc``."""
    if isinstance(exc, TrainingFailed):
        return f"training failed: {exc.reason}"
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return "out of memory"
    # a config the kernels reject, a bug: this trial fails, the search goes on
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def record_evaluation(trial: Trial, evaluation: Evaluation, *, limits: Limits) -> None:
    """Store every score, stage time, environment detail and limit check of ``evaluation``."""
    scores = evaluation.scores
    trial.set_user_attr(TrialAttr.SCORES, scores)
    trial.set_user_attr(TrialAttr.SECONDS, evaluation.seconds)
    trial.set_user_attr(TrialAttr.ENV, {**evaluation.env, "optuna": optuna.__version__})
    if evaluation.latency is not None:
        trial.set_user_attr(TrialAttr.LATENCY, evaluation.latency.to_dict())
    if evaluation.training is not None:
        trial.set_user_attr(TrialAttr.TRAINING, dataclasses.asdict(evaluation.training))
    if limits.any:
        for name in ("flops", "params", "latency_ms"):
            trial.set_constraint(name, limits.violation(name, scores[name]) if name in scores else 0.0)
    if evaluation.rejected:
        trial.set_user_attr(TrialAttr.REJECTED, evaluation.rejected)
