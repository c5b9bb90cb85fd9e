"""The search's progress bar: trials done / total, feasible count, front size, best accuracy.

The counts are the study's as ``results`` reads it (``load_trials``, ``pareto_front``), so the bar
and ``ghostnas show`` never disagree on which trials are feasible or on the front.
"""

from __future__ import annotations

import sys

import optuna
from optuna.trial import FrozenTrial
from tqdm import tqdm

from results import load_trials, pareto_front
from search._objectives import Limits

__all__ = ["Progress"]


class Progress:
    def __init__(self, *, total: int, objectives: tuple[str, ...], limits: Limits, enabled: bool = True) -> None:
        self.objectives = objectives
        self.limits = limits
        # Elapsed and remaining time come from tqdm's own rate estimate over finished trials.
        self.bar = tqdm(total=total, desc="search", unit="trial", file=sys.stderr, disable=not enabled, dynamic_ncols=True)

    def update(self, trials: list[FrozenTrial], study: optuna.Study) -> None:
        if self.bar.disable:  # nothing shows it: skip reading the study
            return
        frame = load_trials(study, trials=trials)
        finished = int(frame["state"].isin(("COMPLETE", "PRUNED")).sum())
        feasible = frame[frame["feasible"]]
        postfix = {"feasible": len(feasible), "front": len(pareto_front(frame)) if len(feasible) else 0}
        if "accuracy" in self.objectives and len(feasible):
            postfix["best_acc"] = f"{feasible['accuracy_search'].fillna(0.0).max():.3f}"
        failed = int((frame["state"] == "FAIL").sum())
        if failed:
            postfix["failed"] = failed
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(max(0, min(finished, self.bar.total) - self.bar.n))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
