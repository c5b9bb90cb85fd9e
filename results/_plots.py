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

from spaces import write_atomic
from results._format import OBJECTIVES
from results._frame import ResultsError, load_trials, scored, scored_mask
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


def _marked(frame: pd.DataFrame, axes: list[str]) -> dict[str, pd.DataFrame]:
    """Scored trials on ``axes``: ``exported`` (members of the study's front over all its
    objectives, the one ``export`` writes), ``baselines`` (labelled, members or not) and
    ``trials`` (the rest). Exported members are drawn once more on top, as rings.
    """
    points = scored(frame, axes)
    member = points["number"].isin(pareto_front(frame)["number"])
    baseline = points["baseline"].notna()
    return {"trials": points[~member & ~baseline], "baselines": points[baseline], "exported": points[member]}


def _tradeoff_data(frame: pd.DataFrame, *, x: str) -> dict[str, Any]:
    """The marked trials, the 2-D front of this plot (for its staircase, along ``x``), the trials a
    limit rejected that have an ``x`` value, the limit on ``x`` and how many trials are not drawn."""
    axes = ["accuracy", x]
    parts: dict[str, Any] = _marked(frame, axes)
    parts["staircase"] = pareto_front(scored(frame, axes), objectives=axes).sort_values([x, "number"])
    rejected = frame["rejected"].notna() & frame[x].notna() & ~scored_mask(frame, axes)
    parts["rejected"] = frame[rejected]
    parts["limit"] = (frame.attrs.get("limits") or {}).get(f"max_{x}")
    parts["hidden"] = int(len(frame) - len(scored(frame, axes)) - rejected.sum())
    return parts


def _objectives_3d_data(frame: pd.DataFrame) -> dict[str, Any]:
    """The study's first three objectives, topped up from accuracy, latency_ms, flops."""
    axes = list(frame.attrs.get("objectives") or [])[:3]
    axes += [name for name in ("accuracy", "latency_ms", "flops", "params") if name not in axes][: 3 - len(axes)]
    return {"axes": axes, **_marked(frame, axes)}


def _hypervolume_data(frame: pd.DataFrame) -> dict[str, Any]:
    """Hypervolume after each trial as a share of the reference box (0..1), and the bounds."""
    objectives = list(frame.attrs.get("objectives") or [])
    bounds = normalisation_bounds(frame, objectives=objectives)
    history = hypervolume_history(frame, objectives=objectives, bounds=bounds)
    history["share"] = history["hypervolume"] / REFERENCE_POINT ** len(objectives)
    return {"history": history, "bounds": bounds}


def _stage_summary(config: Any) -> dict[str, float]:
    """Per stage: blocks, mean expansion ratio (expansion size / input channels), mean kernel,
    share of blocks with squeeze-excite."""
    if not isinstance(config, dict):
        return {}
    summary, channels = {}, config.get("stem_channels", 16)
    for i, stage in enumerate(config.get("stages") or []):
        ratios = []
        for block in stage:
            ratios.append(block["exp"] / channels)
            channels = block["out"]
        summary[f"s{i}.depth"] = len(stage)
        summary[f"s{i}.exp ratio"] = sum(ratios) / len(ratios)
        summary[f"s{i}.kernel"] = sum(b["kernel"] for b in stage) / len(stage)
        summary[f"s{i}.SE share"] = sum(b["se"] > 0 for b in stage) / len(stage)
    return summary


def _parallel_data(frame: pd.DataFrame) -> pd.DataFrame:
    """The searched global dimensions and a per-stage summary (blocks, mean expansion ratio,
    mean kernel, SE share) of feasible trials, the columns that vary, plus accuracy."""
    points = scored(frame, ["accuracy"])
    stages = pd.DataFrame([_stage_summary(c) for c in points["config"]], index=points.index)
    data = pd.concat([points[["width", "ratio", "dw_size", "depth"]], stages], axis=1)
    varying = [c for c in data.columns if data[c].nunique() > 1]
    return pd.concat([data[varying], points[["accuracy"]]], axis=1).astype(float)


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
    # Optuna logs "A new study created in memory" at INFO through its own handler, whatever -q says.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], study_name="importance")
    finally:
        optuna.logging.set_verbosity(verbosity)
    study = optuna.Study(study_name="importance", storage=storage)
    study.add_trials(trials)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.get_param_importances(study, evaluator=evaluator), None


# -- drawing ------------------------------------------------------------------------------------

# Trace styles shared by the scatter plots; each trace's ``uid`` names it in the rendered page
# (Plotly draws it as ``<g class="trace scatter trace<uid>">``).
_TRIALS = dict(name="trials", uid="trials", marker=dict(color="#9aa5b1", size=8))
_BASELINES = dict(name="baselines", uid="baselines", marker=dict(symbol="star", size=14, color="#1f77b4"))
_EXPORTED = dict(
    name="exported front (all objectives)", uid="exported",
    marker=dict(symbol="circle-open", size=18, color="#d62728", line=dict(width=3)),
)  # fmt: skip
# Alternating label positions, so neighbouring baselines (0.35x, 0.5x) do not print over each other.
_LABEL_POSITIONS = ("top left", "bottom right", "top right", "bottom left")


def _hover(points: pd.DataFrame) -> list[str]:
    texts = []
    for row in points.itertuples(index=False):
        label = f"trial {row.number}" + ("" if pd.isna(row.baseline) else f" ({html.escape(row.baseline)})")
        runs = "" if pd.isna(row.accuracy_runs) or row.accuracy_runs < 2 else f" (mean of {row.accuracy_runs} runs)"
        rejected = "" if pd.isna(row.rejected) else f"<br>rejected: {html.escape(str(row.rejected))}"
        texts.append(
            f"{label}{rejected}<br>accuracy {_show(row.accuracy * 100, '.2f')} %{runs}<br>latency {_show(row.latency_ms, '.2f')} ms"
            f"<br>FLOPs {_show(row.flops / 1e6, '.1f')} M<br>params {_show(row.params / 1e6, '.2f')} M"
            f"<br>width {row.width}, depth {row.depth}, ratio {row.ratio}, dw_size {row.dw_size}"
        )
    return texts


def _show(value: float, spec: str) -> str:
    return "n/a" if pd.isna(value) else format(value, spec)


def _axis(points: pd.DataFrame, name: str) -> list[float]:
    return (points[name] * _SCALE[name]).tolist()


def _quantity(name: str, value: float) -> str:
    """A score as people read it: accuracy in %, latency in ms, FLOPs and params in M."""
    if name == "accuracy":
        return f"{value * 100:.4g} %"
    if name == "latency_ms":
        return f"{value:.4g} ms"
    return f"{value / 1e6:.4g} M"


def _note(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=html.escape(text), showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def _baseline_labels(points: pd.DataFrame, x: str) -> dict[str, Any]:
    order = points[x].rank(method="first").fillna(0).astype(int).tolist()
    return dict(
        text=[str(b).removeprefix("ghostnet-") for b in points["baseline"]],
        textposition=[_LABEL_POSITIONS[i % len(_LABEL_POSITIONS)] for i in order],
    )


def plot_tradeoff(frame: pd.DataFrame, *, x: str = "latency_ms") -> go.Figure:
    """Accuracy against ``x`` (``latency_ms``, ``flops`` or ``params``): the exported front's
    members ringed and labelled, this plot's own 2-D front as a staircase, baselines as stars,
    trials a limit rejected faintly along the bottom, the limit as a dashed line."""
    if x not in OBJECTIVES or x == "accuracy":
        raise ResultsError(f"x must be one of latency_ms, flops, params, got {x!r}")
    data = _tradeoff_data(frame, x=x)
    fig = go.Figure()
    stair = data["staircase"]
    fig.add_trace(go.Scatter(
        x=_axis(stair, x), y=_axis(stair, "accuracy"), name="2-D front of this plot", uid="staircase", mode="lines",
        line=dict(color="#d62728", shape="hv", dash="dot", width=1.5), hoverinfo="skip",
    ))  # fmt: skip
    rejected = data["rejected"]
    if len(rejected):
        fig.add_trace(go.Scatter(
            x=_axis(rejected, x), y=[0.03] * len(rejected), yaxis="y2", name="rejected by a limit (no accuracy)", uid="rejected",
            mode="markers", marker=dict(symbol="x-thin-open", size=9, color="rgba(120, 120, 120, 0.45)"),
            customdata=rejected["number"].tolist(), hovertext=_hover(rejected), hoverinfo="text",
        ))  # fmt: skip
    for style, key, extra in ((_TRIALS, "trials", {}), (_BASELINES, "baselines", None), (_EXPORTED, "exported", None)):
        points = data[key]
        if key == "baselines":
            extra = _baseline_labels(points, x)
        elif key == "exported":
            extra = dict(text=[f"#{n}" for n in points["number"]], textposition="middle right")
        fig.add_trace(go.Scatter(
            x=_axis(points, x), y=_axis(points, "accuracy"), mode="markers+text" if extra else "markers",
            customdata=points["number"].tolist(), hovertext=_hover(points), hoverinfo="text", **style, **extra,
        ))  # fmt: skip
    if data["limit"]:
        fig.add_vline(x=data["limit"] * _SCALE[x], line=dict(color="#7f7f7f", dash="dash"),
                      annotation_text=f"limit {_quantity(x, data['limit'])}", annotation_position="top")  # fmt: skip
    hidden = f"<br><sup>{data['hidden']} trial(s) not drawn: failed, stopped early, running, or rejected before {_LABELS[x].split(' (')[0]} was measured</sup>"
    fig.update_layout(
        title=f"Accuracy vs {_LABELS[x].split(' (')[0]}" + (hidden if data["hidden"] else ""),
        xaxis_title=_LABELS[x], yaxis_title=_LABELS["accuracy"],
        yaxis2=dict(overlaying="y", range=[0, 1], visible=False, fixedrange=True),
    )  # fmt: skip
    return fig


def plot_objectives_3d(frame: pd.DataFrame) -> go.Figure:
    """Three objectives at once, the exported front's members ringed."""
    data = _objectives_3d_data(frame)
    a, b, c = data["axes"]
    fig = go.Figure()
    styles = (
        (_TRIALS, dict(size=4)), (_BASELINES, dict(size=7, symbol="diamond")), (_EXPORTED, dict(size=9, line=dict(width=4))),
    )  # fmt: skip
    for style, marker in styles:
        points = data[style["uid"]]
        fig.add_trace(go.Scatter3d(
            x=_axis(points, a), y=_axis(points, b), z=_axis(points, c), mode="markers",
            customdata=points["number"].tolist(), hovertext=_hover(points), hoverinfo="text",
            **{**style, "marker": {**style["marker"], **marker}},
        ))  # fmt: skip
    fig.update_layout(
        title="Objectives of feasible trials",
        scene=dict(xaxis_title=_LABELS[a], yaxis_title=_LABELS[b], zaxis_title=_LABELS[c],
                   camera=dict(eye=dict(x=1.6, y=1.6, z=1.1))),
        margin=dict(l=10, r=10, b=10, t=60),
    )  # fmt: skip
    return fig


def plot_hypervolume(frame: pd.DataFrame) -> go.Figure:
    """Hypervolume of the front after each trial, as a share of the reference box (0..1)."""
    data = _hypervolume_data(frame)
    history = data["history"]
    fig = go.Figure(go.Scatter(
        x=history["number"].tolist(), y=history["share"].tolist(), name="hypervolume", uid="hypervolume",
        mode="lines+markers", line=dict(shape="hv"),
    ))  # fmt: skip
    bounds = ", ".join(f"{name} {_quantity(name, value)}" for name, value in data["bounds"].items())
    d = len(data["bounds"])
    fig.update_layout(
        title=(
            "Hypervolume over trials<br><sup>share of the reference box: each objective scaled to a loss in 0..1 "
            f"by its bound ({bounds}), reference point {REFERENCE_POINT} per axis, so 1 = {REFERENCE_POINT}^{d}</sup>"
        ),
        xaxis_title="trial number",
        yaxis=dict(title="hypervolume (share of the reference box)", range=[0, 1.02]),
    )
    return fig


def _ticks(values: pd.Series) -> dict[str, Any]:
    """Tick marks a reader expects: the values an integer or few-valued dimension takes (dw_size
    1, 3, 5; width 0.35 ... 1.3; never 1.1 blocks), else every integer of its range; Plotly's own
    for the rest (mean ratios)."""
    unique = sorted(values.dropna().unique())
    integer = bool(unique) and all(float(v).is_integer() for v in unique)
    if (integer and len(unique) <= 12) or (len(unique) <= 8 and all(round(v, 2) == v for v in unique)):
        return dict(tickvals=unique, ticktext=[f"{v:g}" for v in unique])
    if integer and unique[-1] - unique[0] <= 24:
        ticks = list(range(int(unique[0]), int(unique[-1]) + 1))
        return dict(tickvals=ticks, ticktext=[str(t) for t in ticks])
    return {}


def plot_parallel_coordinates(frame: pd.DataFrame) -> go.Figure:
    """The searched global dimensions and a per-stage summary of feasible trials, coloured by accuracy."""
    data = _parallel_data(frame)
    if data.empty:
        return _note(go.Figure(), "no feasible trial with accuracy yet")
    accuracy = (data["accuracy"] * 100).tolist()
    dimensions = [dict(label=name, values=data[name].tolist(), **_ticks(data[name])) for name in data.columns if name != "accuracy"]
    dimensions.append(dict(label=_LABELS["accuracy"], values=accuracy))
    fig = go.Figure(go.Parcoords(
        name="trials", uid="parcoords", dimensions=dimensions,
        line=dict(color=accuracy, colorscale="Viridis", showscale=True, colorbar=dict(title="accuracy %")),
    ))  # fmt: skip
    fig.update_layout(
        title="Searched dimensions of feasible trials<br><sup>global dimensions, then per stage: blocks, "
        "mean expansion ratio (expansion / input channels), mean kernel, share of blocks with SE</sup>",
        width=max(1100, 90 * len(dimensions) + 200), margin=dict(t=110),
    )  # fmt: skip
    return fig


def plot_param_importances(frame: pd.DataFrame) -> go.Figure:
    """fANOVA importance for accuracy of the searched global dimensions and stage depths."""
    importances, note = _importance_data(frame)
    if note:
        return _note(go.Figure(layout=dict(title="Parameter importances for accuracy")), f"Importances skipped: {note}.")
    ranked = list(importances.items())[::-1]  # largest at the top of the chart
    fig = go.Figure(go.Bar(
        x=[value for _, value in ranked], y=[name for name, _ in ranked], orientation="h", name="importance", uid="importance",
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
    write_atomic(out_dir / "plotly.min.js", get_plotlyjs(), error=ResultsError)
    for filename, title, draw in _PAGES:
        fig = draw(frame)
        page = fig.to_html(include_plotlyjs="directory", full_html=True, div_id=filename.removesuffix(".html"))
        write_atomic(out_dir / filename, page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1), error=ResultsError)
    return write_atomic(out_dir / "index.html", _index(frame), error=ResultsError)


def _index(frame: pd.DataFrame) -> str:
    name = str(frame.attrs.get("study_name", "study"))
    objectives = list(frame.attrs.get("objectives") or [])
    front = pareto_front(frame, objectives=objectives)
    bounds = normalisation_bounds(frame, objectives=objectives)
    share = hypervolume(frame, objectives=objectives, bounds=bounds) / REFERENCE_POINT ** len(objectives)
    limits = {k.removeprefix("max_"): v for k, v in (frame.attrs.get("limits") or {}).items() if v}
    members = "; ".join(
        f"trial {row.number}" + ("" if pd.isna(row.baseline) else f" ({row.baseline})") + ": "
        + ", ".join(_quantity(o, getattr(row, o)) for o in objectives)
        for row in front.itertuples(index=False)
    )  # fmt: skip
    summary = [
        f"{len(frame)} trials, {int((frame['state'] == 'COMPLETE').sum())} complete, "
        f"{int(frame['feasible'].sum())} feasible; limits: "
        f"{', '.join(f'{k} {_quantity(k, v)}' for k, v in limits.items()) or 'none'}.",
        f"Exported front ({len(front)} of {', '.join(f'{o} ({OBJECTIVES[o][:3]})' for o in objectives)}): {members or 'empty'}.",
        f"Hypervolume {share:.1%} of the reference box (objectives scaled to 0..1 by "
        f"{', '.join(f'{k} {_quantity(k, v)}' for k, v in bounds.items())}; reference point {REFERENCE_POINT} per axis).",
        *([f"Warning: {frame.attrs['signal']}."] if frame.attrs.get("signal") else []),
    ]
    links = "\n".join(f'  <li><a href="{f}">{html.escape(t)}</a></li>' for f, t, _ in _PAGES)
    paragraphs = "\n".join(f"<p>{html.escape(line)}</p>" for line in summary)
    return (
        "<!doctype html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>GhostNAS: {html.escape(name)}</title>\n</head>\n<body>\n"
        f"<h1>GhostNAS study {html.escape(name)}</h1>\n{paragraphs}\n<ul>\n{links}\n</ul>\n</body>\n</html>\n"
    )
