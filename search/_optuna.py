"""Every use of a private Optuna name, in one place.

Optuna's public API cannot fail another process's trial, list the trials whose heartbeat
stopped without its "experimental" warning, tell which params a queued trial was enqueued with,
or name the system attribute its genetic samplers file a trial's generation under. This module
does those through Optuna's internals; tests/search/test_optuna_adapter.py pins each name, so an
Optuna release that moves one fails there, and pyproject.toml bounds Optuna to the majors tested.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.samplers import BaseGASampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

__all__ = ["enqueued_params", "generation_key", "stale_trial_ids", "storage_of", "study_id", "trial_id"]


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage behind ``study`` (for RDB storages, Optuna's cache around it)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    return study._study_id


def trial_id(trial: FrozenTrial) -> int:
    """The storage's id of ``trial`` (not its number), which storage calls take."""
    return trial._trial_id


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """RUNNING trials whose heartbeat is older than the storage's grace period."""
    return storage_of(study)._get_stale_trial_ids(study_id(study))


def enqueued_params(trial: FrozenTrial) -> dict[str, Any] | None:
    """The params ``Study.enqueue_trial`` queued ``trial`` with, or None if it was sampled."""
    return trial.system_attrs.get("fixed_params")


def generation_key(sampler: BaseGASampler) -> str:
    """The system attribute under which a genetic sampler files each trial's generation."""
    return sampler._get_generation_key()
