"""Plotly views of a study, written as HTML pages that open offline.

As in ``optuna.visualization``, each plot is split into a data function (``_*_data``: which
trials go where, tested directly) and a drawing function (``plot_*``: a ``go.Figure``). Every
page references one ``plotly.min.js`` written beside it, so the folder opens without network
and the library is stored once rather than once per page.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from results._atomic import write_atomic
from results._format import OBJECTIVES
from results._frame import ResultsError, load_trials, scored
from results._pareto import REFERENCE_POINT, hypervolume, hypervolume_history, normalisation_bounds, pareto_front

__all__ = [
    "plot_hypervolume",
    "plot_objectives_3d",
    "plot_parallel_coordinates",
    "plot_param_importances",
    "plot_tradeoff",
    "write_plots",
]

# Importance needs a few points to fit its random forest to anything but noise.
MIN_IMPORTANCE_TRIALS = 4
_LABELS = {
    "accuracy": "accuracy (%)",
    "latency_ms": "latency (ms)",
    "flops": "FLOPs (M multiply-adds)",
    "params": "params (M)",
}
# Shown values: accuracy in %, FLOPs and params in millions.
_SCALE = {"accuracy": 100.0, "latency_ms": 1.0, "flops": 1e-6, "params": 1e-6}


# -- data ---------------------------------------------------------------------------------------


def _split(frame: pd.DataFrame, axes: list[str]) -> dict[str, pd.DataFrame]:
    """Scored trials on ``axes`` split into disjoint ``trials`` and ``front``, plus ``baselines``.

    ``front`` is the Pareto front over exactly the plotted axes, so its line is the trade-off
    the reader sees. Baselines are also drawn on their own (labelled), on or off the front.
    """
    points = scored(frame, axes)
    front = pareto_front(points, objectives=axes)
    on_front = points["number"].isin(front["number"])
    is_baseline = points["baseline"].notna()
    return {
        "trials": points[~on_front & ~is_baseline],
        "front": front,
        "baselines": points[is_baseline],
    }


def _tradeoff_data(frame: pd.DataFrame, *, x: str) -> dict[str, Any]:
    parts = _split(frame, ["accuracy", x])
    parts["front"] = parts["front"].sort_values([x, "number"])  # along the x axis, for the line
    parts["hidden"] = int(len(frame) - len(scored(frame, ["accuracy", x])))
    return parts


def _objectives_3d_data(frame: pd.DataFrame) -> dict[str, Any]:
    """The study's first three objectives, topped up from accuracy, latency_ms, flops."""
    axes = list(frame.attrs.get("objectives") or [])[:3]
    axes += [name for name in ("accuracy", "latency_ms", "flops", "params") if name not in axes][: 3 - len(axes)]
    return {"axes": axes, **_split(frame, axes)}


def _hypervolume_data(frame: pd.DataFrame) -> dict[str, Any]:
    objectives = list(frame.attrs.get("objectives") or [])
    bounds = normalisation_bounds(frame, objectives=objectives)
    return {"history": hypervolume_history(frame, objectives=objectives, bounds=bounds), "bounds": bounds}


def _searched_columns(frame: pd.DataFrame) -> list[str]:
    stages = [c for c in frame.columns if c.startswith("s") and c.endswith(".depth")]
    return ["width", "ratio", "dw_size", "depth", *stages]


def _parallel_data(frame: pd.DataFrame) -> pd.DataFrame:
    """The searched global dimensions and per-stage depths that vary, plus accuracy."""
    points = scored(frame, ["accuracy"])
    varying = [c for c in _searched_columns(frame) if points[c].nunique() > 1]
    return points[[*varying, "accuracy"]].astype(float)


def _importance_data(frame: pd.DataFrame) -> tuple[dict[str, float], str | None]:
    """Importances for accuracy of the searched global dimensions and stage depths over
    feasible trials, or ({}, why they are missing).

    Block-level parameters are left out: they exist only in deep enough stages, and with the
    few trials of a search they would spread the importance thin over a hundred names. fANOVA
    (seeded) rather than Optuna's default PED-ANOVA: it is defined for a handful of trials too.
    The trials are copied into an in-memory single-objective study of accuracy, because
    importance evaluators take a study and the infeasible trials must be dropped first.
    """
    points = scored(frame, ["accuracy"])
    if len(points) < MIN_IMPORTANCE_TRIALS:
        return {}, f"needs at least {MIN_IMPORTANCE_TRIALS} feasible trials with accuracy, the study has {len(points)}"
    if points["accuracy"].nunique() < 2:
        return {}, "every feasible trial has the same accuracy: nothing to attribute"
    distributions = {
        name: optuna.distributions.json_to_distribution(text)
        for name, text in (frame.attrs.get("distributions") or {}).items()
        if name in ("width", "ratio", "dw_size") or name.endswith(".depth")
    }
    if not distributions:
        return {}, "no global dimension or stage depth was searched"
    trials = [
        optuna.trial.create_trial(
            params={name: row.trial_params[name] for name in distributions},
            distributions=distributions,
            value=row.accuracy,
        )
        for row in points.itertuples(index=False)
    ]
    storage = optuna.storages.InMemoryStorage()
    # Made through the storage, not create_study, which would log a "new study" line.
    storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], study_name="importance")
    study = optuna.Study(study_name="importance", storage=storage)
    study.add_trials(trials)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.get_param_importances(study, evaluator=evaluator), None


# -- drawing ------------------------------------------------------------------------------------


def _hover(points: pd.DataFrame) -> list[str]:
    texts = []
    for row in points.itertuples(index=False):
        label = f"trial {row.number}" + ("" if pd.isna(row.baseline) else f" ({html.escape(row.baseline)})")
        runs = "" if pd.isna(row.accuracy_runs) or row.accuracy_runs < 2 else f" (mean of {row.accuracy_runs} runs)"
        texts.append(
            f"{label}<br>accuracy {_show(row.accuracy * 100, '.2f')} %{runs}<br>latency {_show(row.latency_ms, '.2f')} ms"
            f"<br>FLOPs {_show(row.flops / 1e6, '.1f')} M<br>params {_show(row.params / 1e6, '.2f')} M"
            f"<br>width {row.width}, depth {row.depth}, ratio {row.ratio}, dw_size {row.dw_size}"
        )
    return texts


def _show(value: float, spec: str) -> str:
    return "n/a" if pd.isna(value) else format(value, spec)


def _axis(points: pd.DataFrame, name: str) -> list[float]:
    return (points[name] * _SCALE[name]).tolist()


def _note(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=html.escape(text), showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def plot_tradeoff(frame: pd.DataFrame, *, x: str = "latency_ms") -> go.Figure:
    """Accuracy against ``x`` (``latency_ms``, ``flops`` or ``params``), the trade-off front as a line."""
    if x not in OBJECTIVES or x == "accuracy":
        raise ResultsError(f"x must be one of latency_ms, flops, params, got {x!r}")
    data = _tradeoff_data(frame, x=x)
    fig = go.Figure()
    styles = {
        "trials": dict(mode="markers", marker=dict(color="#9aa5b1", size=8)),
        "front": dict(mode="lines+markers", line=dict(color="#d62728", shape="hv"), marker=dict(size=10)),
        "baselines": dict(mode="markers+text", marker=dict(symbol="star", size=14, color="#1f77b4"), textposition="top center"),
    }
    names = {"trials": "trials", "front": "Pareto front", "baselines": "baselines"}
    for key, style in styles.items():
        points = data[key]
        text = points["baseline"].tolist() if key == "baselines" else None
        fig.add_trace(go.Scatter(
            x=_axis(points, x), y=_axis(points, "accuracy"), name=names[key], text=text,
            hovertext=_hover(points), hoverinfo="text", **style,
        ))  # fmt: skip
    hidden = f" ({data['hidden']} trials not shown: rejected by a limit, failed, stopped or running)" if data["hidden"] else ""
    fig.update_layout(
        title=f"Accuracy vs {_LABELS[x].split(' (')[0]}{hidden}",
        xaxis_title=_LABELS[x],
        yaxis_title=_LABELS["accuracy"],
    )
    return fig


def plot_objectives_3d(frame: pd.DataFrame) -> go.Figure:
    """Three objectives at once, the front over those three highlighted."""
    data = _objectives_3d_data(frame)
    a, b, c = data["axes"]
    fig = go.Figure()
    styles = {
        "trials": ("trials", dict(color="#9aa5b1", size=4)),
        "front": ("Pareto front", dict(color="#d62728", size=6)),
        "baselines": ("baselines", dict(color="#1f77b4", size=7, symbol="diamond")),
    }
    for key, (name, marker) in styles.items():
        points = data[key]
        fig.add_trace(go.Scatter3d(
            x=_axis(points, a), y=_axis(points, b), z=_axis(points, c), name=name, mode="markers",
            marker=marker, hovertext=_hover(points), hoverinfo="text",
        ))  # fmt: skip
    fig.update_layout(
        title="Objectives of feasible trials",
        scene=dict(xaxis_title=_LABELS[a], yaxis_title=_LABELS[b], zaxis_title=_LABELS[c]),
    )
    return fig


def plot_hypervolume(frame: pd.DataFrame) -> go.Figure:
    """Hypervolume of the front after each trial (normalised objectives, reference 1.1)."""
    data = _hypervolume_data(frame)
    history = data["history"]
    fig = go.Figure(go.Scatter(
        x=history["number"].tolist(), y=history["hypervolume"].tolist(), name="hypervolume",
        mode="lines+markers", line=dict(shape="hv"),
    ))  # fmt: skip
    bounds = ", ".join(f"{name} {value:g}" for name, value in data["bounds"].items())
    fig.update_layout(
        title=f"Hypervolume over trials (bounds: {bounds}; reference point {REFERENCE_POINT} per axis)",
        xaxis_title="trial number",
        yaxis_title="hypervolume",
    )
    return fig


def plot_parallel_coordinates(frame: pd.DataFrame) -> go.Figure:
    """The searched global dimensions and per-stage depths of feasible trials, coloured by accuracy."""
    data = _parallel_data(frame)
    if data.empty:
        return _note(go.Figure(), "no feasible trial with accuracy yet")
    accuracy = (data["accuracy"] * 100).tolist()
    dimensions = [dict(label=name, values=data[name].tolist()) for name in data.columns if name != "accuracy"]
    dimensions.append(dict(label=_LABELS["accuracy"], values=accuracy))
    fig = go.Figure(go.Parcoords(
        name="trials", dimensions=dimensions,
        line=dict(color=accuracy, colorscale="Viridis", showscale=True, colorbar=dict(title="accuracy %")),
    ))  # fmt: skip
    fig.update_layout(title="Searched dimensions of feasible trials")
    return fig


def plot_param_importances(frame: pd.DataFrame) -> go.Figure:
    """fANOVA importance for accuracy of the searched global dimensions and stage depths."""
    importances, note = _importance_data(frame)
    if note:
        return _note(go.Figure(layout=dict(title="Parameter importances for accuracy")), f"Importances skipped: {note}.")
    ranked = list(importances.items())[::-1]  # largest at the top of the chart
    fig = go.Figure(go.Bar(
        x=[value for _, value in ranked], y=[name for name, _ in ranked], orientation="h", name="importance",
    ))  # fmt: skip
    fig.update_layout(
        title="Parameter importances for accuracy (fANOVA over feasible trials)",
        xaxis_title="importance (sums to 1)",
        height=max(400, 24 * len(ranked) + 160),
    )
    return fig


# -- pages --------------------------------------------------------------------------------------

_PAGES = (
    ("accuracy_latency.html", "Accuracy vs latency", lambda f: plot_tradeoff(f, x="latency_ms")),
    ("accuracy_flops.html", "Accuracy vs FLOPs", lambda f: plot_tradeoff(f, x="flops")),
    ("objectives_3d.html", "Three objectives", plot_objectives_3d),
    ("hypervolume.html", "Hypervolume over trials", plot_hypervolume),
    ("parallel_coordinates.html", "Searched dimensions", plot_parallel_coordinates),
    ("param_importances.html", "Parameter importances", plot_param_importances),
)


def write_plots(data: optuna.Study | pd.DataFrame, out_dir: str | Path) -> Path:
    """Write every plot, ``plotly.min.js`` and an ``index.html`` linking them; returns the index.

    Each file is written atomically and the index last, so it never links a page that is
    missing or half written.
    """
    frame = load_trials(data) if isinstance(data, optuna.Study) else data
    out_dir = Path(out_dir)
    write_atomic(out_dir / "plotly.min.js", get_plotlyjs())
    for filename, title, draw in _PAGES:
        fig = draw(frame)
        page = fig.to_html(include_plotlyjs="directory", full_html=True, div_id=filename.removesuffix(".html"))
        write_atomic(out_dir / filename, page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1))
    return write_atomic(out_dir / "index.html", _index(frame))


def _index(frame: pd.DataFrame) -> str:
    name = str(frame.attrs.get("study_name", "study"))
    objectives = list(frame.attrs.get("objectives") or [])
    front = pareto_front(frame, objectives=objectives)
    bounds = normalisation_bounds(frame, objectives=objectives)
    summary = [
        f"{len(frame)} trials, {int((frame['state'] == 'COMPLETE').sum())} complete, "
        f"{int(frame['feasible'].sum())} feasible; {len(front)} on the Pareto front of "
        f"{', '.join(f'{o} ({OBJECTIVES[o][:3]})' for o in objectives)}.",
        f"Hypervolume {hypervolume(frame, objectives=objectives, bounds=bounds):.4f} (objectives normalised by "
        f"{', '.join(f'{k} {v:g}' for k, v in bounds.items())}; reference point {REFERENCE_POINT} per axis).",
    ]
    links = "\n".join(f'  <li><a href="{f}">{html.escape(t)}</a></li>' for f, t, _ in _PAGES)
    paragraphs = "\n".join(f"<p>{html.escape(line)}</p>" for line in summary)
    return (
        "<!doctype html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>GhostNAS: {html.escape(name)}</title>\n</head>\n<body>\n"
        f"<h1>GhostNAS study {html.escape(name)}</h1>\n{paragraphs}\n<ul>\n{links}\n</ul>\n</body>\n</html>\n"
    )

