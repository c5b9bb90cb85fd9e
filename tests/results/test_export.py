from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch

from results import EXPORT_FORMATS, ResultsError, export, load_trials, pareto_front, read_exported, render
from spaces import GhostNetConfig, build_model


@pytest.fixture
def front(search_study):
    front = pareto_front(load_trials(search_study))
    assert 3 <= len(front) < len(search_study.trials)  # a real selection, not every trial
    return front


def originals(front):
    return [GhostNetConfig.from_dict(c) for c in front["config"]]


def test_csv_round_trips_through_pandas(front, tmp_path):
    path = export(front, fmt="csv", path=tmp_path / "pareto.csv")
    back = pd.read_csv(path)
    assert back["number"].tolist() == front["number"].tolist()
    assert back["accuracy"].tolist() == pytest.approx(front["accuracy"].tolist())
    assert back["flops"].tolist() == pytest.approx(front["flops"].tolist())
    assert back["config_id"].tolist() == front["config_id"].tolist()
    assert back["s6.depth"].tolist() == front["s6.depth"].tolist()
    assert back["baseline"].fillna("").tolist() == front["baseline"].fillna("").tolist()


def test_markdown_is_a_readable_table(front, tmp_path):
    lines = export(front, fmt="md", path=tmp_path / "pareto.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| trial")]
    assert lines[0] == "# Pareto front of study `search`"
    assert len(rows) == len(front)
    first = front.iloc[0]
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[0] == str(first["number"])
    assert cells[1] == f"{first['accuracy'] * 100:.2f}" and cells[2] == "1" and cells[4] == f"{first['flops'] / 1e6:.1f}"
    assert cells[5] == f"{first['params'] / 1e6:.2f}" and cells[9] == str(first["depth"])
    baselines = [line for line in rows if "ghostnet-" in line]
    assert len(baselines) == front["baseline"].notna().sum()
    assert "Accuracies are single proxy runs: `ghostnas confirm`" in lines[2]


def test_markdown_says_which_accuracies_are_means(hand_study):
    # Front of the hand study: 3, 0, 1, 4. Trial 3 gets two more runs, trial 0 one.
    hand_study.set_user_attr("accuracy_runs.3", [{"seed": 1, "accuracy": 0.9}, {"seed": 2, "accuracy": 0.9}])
    hand_study.set_user_attr("accuracy_runs.0", [{"seed": 1, "accuracy": 0.8}])
    front = pareto_front(load_trials(hand_study))
    text = render(front, fmt="md")
    assert "Accuracies of 2 of 4 members are means over 2-3 training runs; the rest are single runs." in text
    assert "| 3 | 90.00 ± 0.00 | 3 |" in text
    for number in (1, 4):
        hand_study.set_user_attr(f"accuracy_runs.{number}", [{"seed": 1, "accuracy": 0.7}, {"seed": 2, "accuracy": 0.7}])
    front = pareto_front(load_trials(hand_study))
    assert "Accuracies are means over 2-3 training runs (`ghostnas confirm`)." in render(front, fmt="md")


def test_json_holds_full_and_official_configs(front, tmp_path):
    path = export(front, fmt="json", path=tmp_path / "best.json")
    members = json.loads(path.read_text())
    assert [m["trial"] for m in members] == front["number"].tolist()
    for member, config in zip(members, originals(front)):
        assert GhostNetConfig.from_dict(member["config"]) == config
        assert member["official"]["cfgs"] == [[b.row() for b in stage] for stage in config.stages]
        assert member["official"]["width"] == config.width
        assert member["official_compatible"] == (config.official_incompatibility() is None)
        assert member["official_incompatibility"] == config.official_incompatibility()
        assert set(member["scores"]) == {"accuracy", "latency_ms", "flops", "params"}
    assert any(m["official_compatible"] for m in members) and not all(m["official_compatible"] for m in members)
    assert read_exported(path) == originals(front)


def test_py_export_reads_back_and_builds(front, tmp_path):
    path = export(front, fmt="py", path=tmp_path / "best.py")
    configs = read_exported(path)
    assert configs == originals(front)
    text = path.read_text()
    for n, config in zip(front["number"], configs):
        assert f"cfgs_{n} = [" in text and f"width_{n} = {config.width!r}" in text
    # The tables are the official ones: run the module in a scratch namespace (our own file).
    namespace = {}
    exec(compile(text, str(path), "exec"), namespace)
    for n, config in zip(front["number"], configs):
        assert namespace[f"cfgs_{n}"] == config.to_official(strict=False)["cfgs"]
        assert GhostNetConfig.from_dict(namespace["CONFIGS"][n]) == config
    models = [build_model(config).eval() for config in configs]
    assert all(sum(p.numel() for p in model.parameters()) > 0 for model in models)
    # One forward pass is enough to show a built network runs (each costs seconds of CPU setup).
    with torch.no_grad():
        out = models[0](torch.randn(1, 3, configs[0].input_size, configs[0].input_size))
    assert out.shape == (1, configs[0].num_classes)


def test_read_exported_never_executes(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.py"
    path.write_text(f"open({str(marker)!r}, 'w')\nCONFIGS = {{1: __import__('os').getcwd()}}\n")
    with pytest.raises(ResultsError, match="plain literal"):
        read_exported(path)
    assert not marker.exists()


@pytest.mark.parametrize("name, text, message", [
    ("pareto.csv", "number\n1\n", "hold no configs"),
    ("pareto.md", "# x\n", "hold no configs"),
    ("model.txt", "", "cannot read configs"),
    ("best.json", "[", "not valid JSON"),
    ("best.json", "[1, 2]", "neither a config nor"),
    ("best.json", "[]", "holds no configs"),
    ("best.py", "x = 1\n", "defines no CONFIGS"),
    ("best.py", "CONFIGS = {1: {'stages': []}}\n", "config 1:"),
    ("best.py", "def f(:\n", "not valid Python"),
])  # fmt: skip
def test_read_exported_bad_files_are_one_line_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ResultsError, match=message) as err:
        read_exported(path)
    assert "\n" not in str(err.value)


def test_read_exported_accepts_single_config_files(tmp_path, sampled_config):
    config = sampled_config(5)
    config.save(tmp_path / "one.json")
    config.save(tmp_path / "one.yaml")
    assert read_exported(tmp_path / "one.json") == [config]
    assert read_exported(tmp_path / "one.yaml") == [config]


def test_empty_front_exports(make_study, storage_url, tmp_path):
    front = pareto_front(load_trials(make_study(storage_url, "empty", ["accuracy", "flops"], [])))
    for fmt in EXPORT_FORMATS:
        export(front, fmt=fmt, path=tmp_path / f"empty.{fmt}")
    assert json.loads((tmp_path / "empty.json").read_text()) == []
    assert pd.read_csv(tmp_path / "empty.csv").empty


def test_unknown_format(front):
    with pytest.raises(ResultsError, match="unknown export format 'xlsx'"):
        render(front, fmt="xlsx")


def test_export_is_atomic(front, tmp_path, monkeypatch):
    path = export(front, fmt="json", path=tmp_path / "out" / "best.json")
    before = path.read_text()
    assert os.listdir(tmp_path / "out") == ["best.json"]

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ResultsError, match="cannot write .*best.json: No space left on device"):
        export(front.iloc[:1], fmt="json", path=path)
    assert path.read_text() == before and os.listdir(tmp_path / "out") == ["best.json"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_md_states_limits_in_units(hand_study):
    text = render(pareto_front(load_trials(hand_study)), fmt="md")
    assert "limits: max_flops 250 M, max_latency_ms 25 ms." in text and "e+" not in text
