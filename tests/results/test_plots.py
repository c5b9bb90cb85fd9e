from __future__ import annotations

import json
import os
import re

import pytest

from results import load_trials, plot_tradeoff, write_plots
from results._plots import _hypervolume_data, _importance_data, _objectives_3d_data, _parallel_data, _tradeoff_data

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
    assert data["front"]["number"].tolist() == [1, 4, 0, 3]  # by latency, for the line
    assert data["trials"]["number"].tolist() == [2]
    assert data["baselines"]["number"].tolist() == [0]
    assert data["hidden"] == 4  # two rejected by a limit, one failed, one stopped early
    flops = _tradeoff_data(load_trials(hand_study), x="flops")
    assert flops["front"]["number"].tolist() == [1, 3] and flops["trials"]["number"].tolist() == [2, 4]


def test_other_data_functions(search_study):
    frame = load_trials(search_study)
    three = _objectives_3d_data(frame)
    assert three["axes"] == ["accuracy", "latency_ms", "flops"]
    assert len(three["trials"]) + len(three["front"]) + len(three["baselines"]) - three["front"]["baseline"].notna().sum() == 12
    history = _hypervolume_data(frame)["history"]
    assert history["hypervolume"].is_monotonic_increasing and history["hypervolume"].iloc[-1] > 0
    parallel = _parallel_data(frame)
    assert list(parallel.columns)[:3] == ["width", "ratio", "dw_size"] and parallel.columns[-1] == "accuracy"
    assert {"depth", "s6.depth"} <= set(parallel.columns) and len(parallel) == 12
    importances, note = _importance_data(frame)
    assert note is None and sum(importances.values()) == pytest.approx(1.0)
    assert set(importances) <= {"width", "ratio", "dw_size", *(f"s{i}.depth" for i in range(9))}
    assert "s0.b0.exp" not in importances


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
    assert names_and_counts(traces) == {"trials": len(data["trials"]), "Pareto front": len(data["front"]), "baselines": 2}
    baselines = next(t for t in traces if t["name"] == "baselines")
    assert sorted(baselines["text"]) == ["ghostnet-0.5x", "ghostnet-1.0x"]
    front = next(t for t in traces if t["name"] == "Pareto front")
    assert front["mode"] == "lines+markers"
    first = data["front"].iloc[0]
    assert front["hovertext"][0].startswith(f"trial {first['number']}")
    assert f"width {first['width']}, depth {first['depth']}, ratio {first['ratio']}, dw_size {first['dw_size']}" in front["hovertext"][0]
    assert "FLOPs" in front["hovertext"][0] and "params" in front["hovertext"][0]
    assert front["x"][0] == pytest.approx(first["latency_ms"]) and front["y"][0] == pytest.approx(first["accuracy"] * 100)

    traces, _ = figure_of(out / "accuracy_flops.html")
    assert next(t for t in traces if t["name"] == "Pareto front")["x"] == pytest.approx((_tradeoff_data(frame, x="flops")["front"]["flops"] / 1e6).tolist())

    traces, _ = figure_of(out / "objectives_3d.html")
    assert [t["type"] for t in traces] == ["scatter3d"] * 3 and [t["name"] for t in traces] == ["trials", "Pareto front", "baselines"]

    traces, layout = figure_of(out / "hypervolume.html")
    assert traces[0]["name"] == "hypervolume" and len(traces[0]["x"]) == 12
    assert "reference point 1.1" in layout["title"]["text"]

    traces, _ = figure_of(out / "parallel_coordinates.html")
    labels = [d["label"] for d in traces[0]["dimensions"]]
    assert traces[0]["type"] == "parcoords" and labels[-1] == "accuracy (%)" and "s6.depth" in labels

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
