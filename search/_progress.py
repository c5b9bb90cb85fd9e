"""The search's progress bar: models trained / asked for, samples rejected, feasible count,
front size, best accuracy.

The counts are the study's as ``results`` reads it (``load_trials``, ``pareto_front``), so the bar
and ``ghostnas show`` never disagree on which trials are feasible or on the front.
"""

from __future__ import annotations

import sys

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from results import TrialAttr, load_trials, pareto_front
from search._objectives import Limits

__all__ = ["Progress", "trained"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def trained(trial: FrozenTrial) -> bool:
    """A model ``--trials`` counts: finished (complete, or stopped early) and not rejected by a limit."""
    return trial.state in FINISHED and not trial.user_attrs.get(TrialAttr.REJECTED)


class Progress:
    def __init__(self, *, total: int, objectives: tuple[str, ...], limits: Limits, enabled: bool = True) -> None:
        self.objectives = objectives
        self.limits = limits
        # Elapsed and remaining time come from tqdm's own rate estimate over finished trials.
        self.bar = tqdm(total=total, desc="search (trained)", unit="model", file=sys.stderr, disable=not enabled, dynamic_ncols=True)

    def update(self, trials: list[FrozenTrial], study: optuna.Study) -> None:
        if self.bar.disable:  # nothing shows it: skip reading the study
            return
        frame = load_trials(study, trials=trials)
        finished = sum(trained(t) for t in trials)
        rejected = int((frame["state"].isin(("COMPLETE", "PRUNED")) & frame["rejected"].notna()).sum())
        feasible = frame[frame["feasible"]]
        postfix = {"rejected": rejected} if self.limits.any else {}  # nothing to reject without limits
        postfix |= {"feasible": len(feasible), "front": len(pareto_front(frame)) if len(feasible) else 0}
        if "accuracy" in self.objectives and len(feasible):
            postfix["best_acc"] = f"{feasible['accuracy_search'].fillna(0.0).max():.3f}"
        prefiltered = sum(bool(t.user_attrs.get(TrialAttr.PREFILTERED)) for t in trials)
        if prefiltered:
            postfix["prefiltered"] = prefiltered
        failed = [t for t in trials if t.state == TrialState.FAIL and not (t.user_attrs.get(TrialAttr.SURPLUS) or t.user_attrs.get(TrialAttr.PREFILTERED))]
        duplicates = sum(t.user_attrs.get(TrialAttr.DUPLICATE_OF) is not None for t in failed)
        if duplicates:
            postfix["duplicates"] = duplicates
        if len(failed) > duplicates:
            postfix["failed"] = len(failed) - duplicates
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(max(0, min(finished, self.bar.total) - self.bar.n))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
