"""Choose one model of a study to train: by trial number, by front member, or the most accurate
front member within a latency or FLOPs budget.

Accuracies are the frame's: the mean over every training run where ``ghostnas confirm`` added
runs, the single search run elsewhere. Every refusal is a one-line ``ResultsError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from results._frame import ResultsError, load_trials
from results._pareto import pareto_front

if TYPE_CHECKING:
    import optuna

__all__ = ["Selection", "select_model"]

_FLAGS = {"latency_ms": "--max-latency-ms", "flops": "--max-flops"}


@dataclass(frozen=True)
class Selection:
    number: int  # trial number
    config: dict[str, Any]  # the trial's config (GhostNetConfig.to_dict())
    how: str  # how it was chosen, one line
    scores: dict[str, float]  # accuracy (mean where confirmed), latency_ms, flops, params: those measured
    accuracy_runs: int | None
    settings: dict[str, Any]  # the study's recorded search settings (data set, preset, ...), {} if none
    proxy: dict[str, Any]  # the study's proxy record, {} if none


def select_model(
    study: "optuna.Study",
    *,
    trial: int | None = None,
    member: int | None = None,
    max_latency_ms: float | None = None,
    max_flops: float | None = None,
) -> Selection:
    """The one trial of ``study`` that exactly one of the keyword arguments names."""
    given = {k: v for k, v in (("trial", trial), ("member", member), ("max_latency_ms", max_latency_ms), ("max_flops", max_flops)) if v is not None}
    if len(given) != 1:
        raise ResultsError(f"choose the model with exactly one of trial, member, max_latency_ms, max_flops (got {', '.join(given) or 'none'})")
    frame = load_trials(study)
    name = study.study_name
    if trial is not None:
        row, how = _trial(frame, trial, name), f"trial {trial}"
    elif member is not None:
        row, how = _member(frame, member, name), f"front member {member}"
    else:
        objective, budget = ("latency_ms", max_latency_ms) if max_latency_ms is not None else ("flops", max_flops)
        row, how = _within(frame, objective, float(budget), name)
    attrs = study.user_attrs
    runs = row["accuracy_runs"]
    return Selection(
        number=int(row["number"]),
        config=dict(row["config"]),
        how=how,
        scores={k: float(row[k]) for k in ("accuracy", "latency_ms", "flops", "params") if not pd.isna(row[k])},
        accuracy_runs=None if pd.isna(runs) else int(runs),
        settings=dict(attrs.get("settings") or {}),
        proxy=dict(attrs.get("proxy") or {}),
    )


def _trial(frame: pd.DataFrame, number: int, name: str) -> pd.Series:
    rows = frame[frame["number"] == number]
    if rows.empty:
        span = f"trials 0 to {int(frame['number'].max())}" if len(frame) else "no trials"
        raise ResultsError(f"trial {number} is not in study {name!r} (it has {span})")
    row = rows.iloc[0]
    if row["state"] not in ("COMPLETE", "PRUNED"):
        reason = row["failed"] if isinstance(row["failed"], str) else row["state"].lower()
        raise ResultsError(f"trial {number} of study {name!r} has no result to train ({row['state'].lower()}: {reason})")
    if isinstance(row["rejected"], str):
        raise ResultsError(f"trial {number} of study {name!r} was rejected by a limit ({row['rejected']}); choose another")
    if not row["config"]:
        raise ResultsError(f"trial {number} of study {name!r} records no config")
    return row


def _member(frame: pd.DataFrame, member: int, name: str) -> pd.Series:
    front = pareto_front(frame)
    if not 0 <= member < len(front):
        span = f"members 0 to {len(front) - 1}" if len(front) else "no members"
        raise ResultsError(f"member {member} is out of range: the front of study {name!r} has {span}")
    return front.iloc[member]


def _within(frame: pd.DataFrame, objective: str, budget: float, name: str) -> tuple[pd.Series, str]:
    flag = _FLAGS[objective]
    if not budget > 0 or math.isinf(budget):
        raise ResultsError(f"{flag} must be a positive number, got {budget:g}")
    front = pareto_front(frame)
    measured = front[front[objective].notna()]
    if measured.empty:
        raise ResultsError(f"study {name!r} has no front member with a measured {objective}; choose by --trial or --member")
    fits = measured[measured[objective] <= budget]
    if fits.empty:
        smallest = _budget_text(objective, float(measured[objective].min()))
        raise ResultsError(f"no front member of study {name!r} fits {flag} {budget:g}; the smallest budget that fits one is {flag} {smallest}")
    best = fits.sort_values(["accuracy", objective, "number"], ascending=[False, True, True]).iloc[0]
    return best, f"most accurate front member with {objective} <= {budget:g}"


def _budget_text(objective: str, value: float) -> str:
    """``value`` as a flag value that admits it: rounded up (FLOPs are whole, ms to 1e-4)."""
    return str(math.ceil(value)) if objective == "flops" else f"{math.ceil(value * 1e4) / 1e4:g}"
