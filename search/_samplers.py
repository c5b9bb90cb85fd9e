"""Optuna samplers by name, all seeded, each set up for a small, conditional, constrained space."""

from __future__ import annotations

import warnings

import optuna
from optuna.samplers import BaseSampler

from search._objectives import SearchError

__all__ = ["SAMPLERS", "make_sampler"]

SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random")


def make_sampler(name: str, *, seed: int, trials: int) -> BaseSampler:
    # TPE's `group` and NSGA-III are marked experimental; the warning is noise for our users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make(name, seed=seed, trials=trials)


def _make(name: str, *, seed: int, trials: int) -> BaseSampler:
    """A fresh sampler. Constraints reach every sampler through ``Trial.set_constraint``.

    ``trials`` sizes the startup phase and populations: the defaults (a 50-trial population for
    NSGA-II) assume budgets far larger than an architecture search on one machine affords.
    """
    startup = max(4, min(10, trials // 3))
    population = max(8, min(50, trials // 4))
    if name == "tpe":
        # multivariate + group model the joint, define-by-run space (stage depths switch blocks
        # on and off); constant_liar keeps parallel workers from sampling the same point.
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=startup
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=population)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"unknown sampler {name!r}: choose from {', '.join(SAMPLERS)}")
