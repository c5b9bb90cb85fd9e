"""The search's progress bar: trials done / total, feasible count, front size, best accuracy."""

from __future__ import annotations

import sys

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from search._objectives import Limits

__all__ = ["Progress"]


class Progress:
    def __init__(self, *, total: int, objectives: tuple[str, ...], limits: Limits, enabled: bool = True) -> None:
        self.objectives = objectives
        self.limits = limits
        # Elapsed and remaining time come from tqdm's own rate estimate over finished trials.
        self.bar = tqdm(total=total, desc="search", unit="trial", file=sys.stderr, disable=not enabled, dynamic_ncols=True)

    def update(self, trials: list[FrozenTrial], study: optuna.Study) -> None:
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        feasible = [
            t for t in trials
            if t.state == TrialState.COMPLETE and not t.user_attrs.get("rejected") and all(v <= 0 for v in t.constraints.values())
        ]
        postfix = {"feasible": len(feasible), "front": len(study.best_trials) if feasible else 0}
        if "accuracy" in self.objectives and feasible:
            postfix["best_acc"] = f"{max(t.user_attrs['scores'].get('accuracy', 0.0) for t in feasible):.3f}"
        failed = sum(t.state == TrialState.FAIL for t in trials)
        if failed:
            postfix["failed"] = failed
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(max(0, min(finished, self.bar.total) - self.bar.n))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
