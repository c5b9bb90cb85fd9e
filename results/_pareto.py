"""The Pareto front of a study and its hypervolume.

Rules, stated once:

* Only feasible COMPLETE trials (every constraint <= 0) whose objectives were all measured take
  part; each objective's direction is fixed by its name (``OBJECTIVES``).
* A trial is on the front unless another is at least as good in every objective and strictly
  better in one. Trials with identical objective values do not dominate each other, so they
  are all kept.
* Hypervolume is measured on normalised objectives, all turned into losses in [0, 1]: a
  minimised objective ``v`` becomes ``v / bound``, a maximised one ``1 - v / bound``
  (accuracy's bound is 1, so its loss is the error rate). The reference point is 1.1 on every
  axis, so a front point on the bound still counts; points beyond it add nothing. The bounds
  default to the study's hard limits, else the worst value among its feasible trials; pass
  ``bounds`` to compare several studies on one scale.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from results._format import OBJECTIVES, non_dominated
from results._frame import ResultsError, objectives_of, scored, scored_mask

__all__ = ["REFERENCE_POINT", "hypervolume", "hypervolume_history", "normalisation_bounds", "pareto_front"]

REFERENCE_POINT = 1.1


def pareto_front(frame: pd.DataFrame, *, objectives: list[str] | None = None) -> pd.DataFrame:
    """The non-dominated feasible trials of ``frame`` (``load_trials`` output), best first.

    ``objectives`` defaults to the study's. Sorted by the first objective (best first), then
    by trial number; ``attrs`` are kept.
    """
    names = objectives_of(frame, objectives)
    candidates = scored(frame, names)
    keep = non_dominated(_losses(candidates, names))
    front = candidates[keep]
    first = names[0]
    front = front.sort_values([first, "number"], ascending=[OBJECTIVES[first] == "minimize", True])
    return front.reset_index(drop=True)


def _losses(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Objective values turned into quantities to minimise."""
    signs = np.array([1.0 if OBJECTIVES[name] == "minimize" else -1.0 for name in names])
    return frame[names].to_numpy(dtype=float) * signs


def normalisation_bounds(frame: pd.DataFrame, *, objectives: list[str] | None = None) -> dict[str, float]:
    """The default hypervolume bounds of ``frame``'s study (see the module notes)."""
    names = objectives_of(frame, objectives)
    limits = frame.attrs.get("limits") or {}
    feasible = scored(frame, names)
    bounds = {}
    for name in names:
        if OBJECTIVES[name] == "maximize":
            bounds[name] = 1.0
        elif limits.get(f"max_{name}"):
            bounds[name] = float(limits[f"max_{name}"])
        else:
            worst = feasible[name].max() if len(feasible) else float("nan")
            # No feasible trial yet (or only zeros): any positive bound gives hypervolume 0 alike.
            bounds[name] = float(worst) if worst > 0 else 1.0
    return bounds


def hypervolume(
    frame: pd.DataFrame,
    *,
    objectives: list[str] | None = None,
    bounds: Mapping[str, float] | None = None,
) -> float:
    """Exact hypervolume of ``frame``'s feasible trials in normalised objective space.

    ``frame`` may be all trials or a front (dominated points add nothing). The largest possible
    value is ``1.1 ** d`` for ``d`` objectives.
    """
    names = objectives_of(frame, objectives)
    bounds = _checked_bounds(frame, names, bounds)
    return _hypervolume_of(_normalised(scored(frame, names), names, bounds))


def hypervolume_history(
    frame: pd.DataFrame,
    *,
    objectives: list[str] | None = None,
    bounds: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Hypervolume of the front after each trial number (columns ``number``, ``hypervolume``).

    One set of bounds (computed from the whole frame unless given) serves every step, so the
    curve never falls.
    """
    names = objectives_of(frame, objectives)
    bounds = _checked_bounds(frame, names, bounds)
    ordered = frame.sort_values("number")
    losses = _normalised(ordered, names, bounds)
    usable = scored_mask(ordered, names).to_numpy()
    values, current = [], 0.0
    for i in range(len(ordered)):
        if usable[i]:  # only a new feasible point can change the front
            current = _hypervolume_of(losses[: i + 1][usable[: i + 1]])
        values.append(current)
    return pd.DataFrame({"number": ordered["number"].to_numpy(), "hypervolume": values})


def _checked_bounds(frame: pd.DataFrame, names: list[str], bounds: Mapping[str, float] | None) -> dict[str, float]:
    if bounds is None:
        return normalisation_bounds(frame, objectives=names)
    missing = [name for name in names if name not in bounds]
    if missing:
        raise ResultsError(f"hypervolume bounds miss {', '.join(missing)}")
    bad = {name: bounds[name] for name in names if not float(bounds[name]) > 0}
    if bad:
        raise ResultsError(f"hypervolume bounds must be positive, got {bad}")
    return {name: float(bounds[name]) for name in names}


def _normalised(frame: pd.DataFrame, names: list[str], bounds: dict[str, float]) -> np.ndarray:
    columns = []
    for name in names:
        scaled = frame[name].to_numpy(dtype=float) / bounds[name]
        columns.append(scaled if OBJECTIVES[name] == "minimize" else 1.0 - scaled)
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def _hypervolume_of(losses: np.ndarray) -> float:
    """Exact hypervolume dominated by ``losses`` (minimised) up to the reference point."""
    if len(losses) == 0:
        return 0.0
    losses = losses[(losses < REFERENCE_POINT).all(axis=1)]
    losses = losses[non_dominated(losses)]
    return float(_slice(losses, np.full(losses.shape[1], REFERENCE_POINT)))


def _slice(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume by slicing along the last axis (HSO); a sweep in two dimensions.

    Each slab between consecutive last coordinates is dominated by the points below it,
    projected one dimension down. Cost about n^(d-1) log n: fine for fronts of a few hundred.
    """
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    if points.shape[1] == 2:
        order = np.argsort(points[:, 0], kind="stable")
        xs, ys = points[order, 0], points[order, 1]
        widths = np.diff(np.append(xs, ref[0]))
        return float(np.sum(widths * (ref[1] - np.minimum.accumulate(ys))))
    order = np.argsort(points[:, -1], kind="stable")
    points = points[order]
    tops = np.append(points[1:, -1], ref[-1])
    volume = 0.0
    for i in range(len(points)):
        thickness = tops[i] - points[i, -1]
        if thickness > 0:
            volume += thickness * _slice(points[: i + 1, :-1], ref[:-1])
    return volume
