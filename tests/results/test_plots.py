from __future__ import annotations

import json
import os
import re

import pytest

from results import load_trials, pareto_front, plot_tradeoff, write_plots
from results._plots import _hypervolume_data, _importance_data, _objectives_3d_data, _parallel_data, _stage_summary, _tradeoff_data
from spaces import reference

PAGES = ["accuracy_latency.html", "accuracy_flops.html", "objectives_3d.html", "hypervolume.html", "parallel_coordinates.html", "param_importances.html"]


def figure_of(path):
    """The traces and layout a page hands to Plotly.newPlot, parsed back from the HTML."""
    page = path.read_text()
    start = page.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    decoder = json.JSONDecoder()
    pieces = []
    for _ in range(3):  # the div id, the traces, the layout
        while page[start] in " \n\t,":
            start += 1
        value, start = decoder.raw_decode(page, start)
        pieces.append(value)
    return pieces[1], pieces[2]


def names_and_counts(traces):
    return {t["name"]: len(t.get("x", [])) for t in traces}


def test_tradeoff_data_of_the_hand_study(hand_study):
    data = _tradeoff_data(load_trials(hand_study), x="latency_ms")
    # The exported front is the study's (accuracy and latency): 3, 0, 1, 4 (1 and 4 tie).
    assert sorted(data["exported"]["number"]) == [0, 1, 3, 4]
    assert data["staircase"]["number"].tolist() == [1, 4, 0, 3]  # this plot's own front, by latency
    assert data["trials"]["number"].tolist() == [2]
    assert data["baselines"]["number"].tolist() == [0]
    assert data["rejected"]["number"].tolist() == [8] and data["limit"] == 25.0  # 5 was rejected before it was timed
    assert data["hidden"] == 3  # 5 (no latency), 6 failed, 7 stopped early
    flops = _tradeoff_data(load_trials(hand_study), x="flops")
    # On accuracy vs FLOPs the 2-D front is 1, 3, but every exported member is still marked.
    assert flops["staircase"]["number"].tolist() == [1, 3] and sorted(flops["exported"]["number"]) == [0, 1, 3, 4]
    assert flops["trials"]["number"].tolist() == [2] and flops["rejected"]["number"].tolist() == [5, 8]
    assert flops["limit"] == 250e6 and flops["hidden"] == 2


def test_other_data_functions(search_study):
    frame = load_trials(search_study)
    members = pareto_front(frame)["number"]
    three = _objectives_3d_data(frame)
    assert three["axes"] == ["accuracy", "latency_ms", "flops"]
    assert three["exported"]["number"].tolist() == sorted(members)
    assert len(three["trials"]) + len(three["exported"]) + len(three["baselines"]) - three["exported"]["baseline"].notna().sum() == 12
    history = _hypervolume_data(frame)["history"]
    assert history["hypervolume"].is_monotonic_increasing and history["hypervolume"].iloc[-1] > 0
    assert history["share"].iloc[-1] == pytest.approx(history["hypervolume"].iloc[-1] / 1.1**3) and history["share"].max() <= 1
    parallel = _parallel_data(frame)
    assert list(parallel.columns)[:4] == ["width", "ratio", "dw_size", "depth"] and parallel.columns[-1] == "accuracy"
    assert {"s6.depth", "s6.exp ratio", "s6.kernel", "s6.SE share"} <= set(parallel.columns) and len(parallel) == 12
    assert not any(".b" in c for c in parallel.columns)  # no per-block dimensions
    importances, note = _importance_data(frame)
    assert note is None and sum(importances.values()) == pytest.approx(1.0)
    assert set(importances) <= {"width", "ratio", "dw_size", *(f"s{i}.depth" for i in range(9))}
    assert "s0.b0.exp" not in importances


def test_stage_summary_of_the_reference_network():
    config = reference("ghostnet-1.0x").to_dict()
    summary = _stage_summary(config)
    # Stage 1 is [3, 48, 24, 0, 2] after a 16-channel stage 0; stage 6 has five blocks, two with SE.
    assert summary["s0.depth"] == 1 and summary["s0.exp ratio"] == 1.0 and summary["s1.exp ratio"] == 3.0
    assert summary["s3.kernel"] == 5 and summary["s3.SE share"] == 1.0
    assert summary["s6.depth"] == 5 and summary["s6.SE share"] == pytest.approx(0.4)
    assert summary["s6.exp ratio"] == pytest.approx((200 / 80 + 184 / 80 + 184 / 80 + 480 / 80 + 672 / 112) / 5)


def test_importances_log_nothing(search_study):
    """Optuna's own "A new study created in memory" INFO line never reaches stderr (plot -q)."""
    import logging

    import optuna

    before, seen = optuna.logging.get_verbosity(), []
    handler = logging.Handler()
    handler.emit = seen.append
    logging.getLogger("optuna").addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)  # Optuna's default, as in a fresh process
    try:
        importances, _ = _importance_data(load_trials(search_study))
        assert importances and [r.getMessage() for r in seen] == []
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # set back afterwards
    finally:
        logging.getLogger("optuna").removeHandler(handler)
        optuna.logging.set_verbosity(before)


def test_importances_skipped_with_too_few_trials(hand_study):
    frame = load_trials(hand_study)
    importances, note = _importance_data(frame[frame["number"] < 2])
    assert importances == {} and "at least 4" in note


def test_write_plots_pages_hold_the_expected_traces(search_study, tmp_path):
    index = write_plots(search_study, tmp_path / "plots")
    out = tmp_path / "plots"
    assert index == out / "index.html"
    assert sorted(os.listdir(out)) == sorted([*PAGES, "index.html", "plotly.min.js"])  # no temp files left
    links = re.findall(r'href="([^"]+)"', index.read_text())
    assert links == PAGES
    assert "12 trials, 12 complete, 12 feasible" in index.read_text()

    frame = load_trials(search_study)
    for page in PAGES:
        text = (out / page).read_text()
        # Offline: the one shared plotly.min.js beside the page, nothing fetched from a CDN.
        assert '<script charset="utf-8" src="plotly.min.js"></script>' in text and "cdn" not in text.lower()

    traces, layout = figure_of(out / "accuracy_latency.html")
    data = _tradeoff_data(frame, x="latency_ms")
    assert names_and_counts(traces) == {
        "2-D front of this plot": len(data["staircase"]), "trials": len(data["trials"]), "baselines": 2,
        "exported front (all objectives)": len(data["exported"]),
    }  # no rejected trial, so no trace for them
    baselines = next(t for t in traces if t["name"] == "baselines")
    assert sorted(baselines["text"]) == ["0.5x", "1.0x"] and len(set(baselines["textposition"])) == 2  # labels apart
    exported = next(t for t in traces if t["uid"] == "exported")
    assert sorted(exported["customdata"]) == sorted(pareto_front(frame)["number"])
    first = data["exported"].iloc[0]
    assert exported["text"][0] == f"#{first['number']}" and exported["hovertext"][0].startswith(f"trial {first['number']}")
    assert f"width {first['width']}, depth {first['depth']}, ratio {first['ratio']}, dw_size {first['dw_size']}" in exported["hovertext"][0]
    assert "FLOPs" in exported["hovertext"][0] and "params" in exported["hovertext"][0]
    assert exported["x"][0] == pytest.approx(first["latency_ms"]) and exported["y"][0] == pytest.approx(first["accuracy"] * 100)
    assert next(t for t in traces if t["uid"] == "staircase")["mode"] == "lines"

    traces, _ = figure_of(out / "accuracy_flops.html")
    stair = next(t for t in traces if t["uid"] == "staircase")
    assert stair["x"] == pytest.approx((_tradeoff_data(frame, x="flops")["staircase"]["flops"] / 1e6).tolist())

    traces, _ = figure_of(out / "objectives_3d.html")
    assert [t["type"] for t in traces] == ["scatter3d"] * 3 and [t["uid"] for t in traces] == ["trials", "baselines", "exported"]

    traces, layout = figure_of(out / "hypervolume.html")
    assert traces[0]["name"] == "hypervolume" and len(traces[0]["x"]) == 12 and max(traces[0]["y"]) <= 1
    assert "reference point 1.1" in layout["title"]["text"] and "1 = 1.1^3" in layout["title"]["text"]

    traces, _ = figure_of(out / "parallel_coordinates.html")
    labels = [d["label"] for d in traces[0]["dimensions"]]
    assert traces[0]["type"] == "parcoords" and labels[-1] == "accuracy (%)" and "s6.depth" in labels
    ratio = next(d for d in traces[0]["dimensions"] if d["label"] == "ratio")
    assert ratio["tickvals"] == sorted(set(ratio["values"]))  # integer ticks only

    traces, _ = figure_of(out / "param_importances.html")
    assert traces[0]["type"] == "bar" and set(traces[0]["y"]) == set(_importance_data(frame)[0])


def test_write_plots_of_a_tiny_study_notes_what_is_missing(hand_study, tmp_path):
    frame = load_trials(hand_study)
    write_plots(frame[frame["number"] < 3], tmp_path)
    traces, layout = figure_of(tmp_path / "param_importances.html")
    assert traces == [] and "Importances skipped: needs at least 4" in layout["annotations"][0]["text"]


def test_tradeoff_rejects_a_bad_axis(hand_study):
    with pytest.raises(ValueError, match="x must be one of"):
        plot_tradeoff(load_trials(hand_study), x="accuracy")


def test_index_states_figures_in_units(hand_study, tmp_path):
    text = write_plots(hand_study, tmp_path).read_text()
    assert "limits: flops 250 M, latency_ms 25 ms." in text and "e+" not in text
    assert "Exported front (4 of accuracy (max), latency_ms (min)): trial 3: 90 %, 20 ms; trial 0 (ghostnet-1.0x): 80 %, 10 ms;" in text
    # Hypervolume 0.82 (test_pareto checks it by hand) of at most 1.1^2 = 1.21.
    assert f"Hypervolume {0.82 / 1.21:.1%} of the reference box" in text and "latency_ms 25 ms; reference point 1.1" in text
