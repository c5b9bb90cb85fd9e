"""Searches and evals with ``--latency-model``: predicted latency, no probe, the file's hash stored."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import cli
from evaluators.latency import LatencyProbe
from evaluators.latency_model import LatencyModel
from search import SearchError, SearchSettings, run_search
from search._search import NOT_TRAINED_PER_TRIAL
from search._latency import CALIBRATION_ATTR, MODEL_ATTR
from spaces import GhostNetConfig


def settings(tiny_space, tmp_path, model, **overrides) -> SearchSettings:
    values = dict(
        study="m", out=tmp_path / "run", space=tiny_space, subset=300, input_size=16, baselines=False,
        progress=False, trials=3, objectives=("latency_ms", "flops"), latency_model=model,
    )  # fmt: skip
    return SearchSettings(**(values | overrides))


@pytest.fixture
def no_probe(monkeypatch):
    """Any latency timing at all fails the test."""

    def timed(*args, **kwargs):
        raise AssertionError("a latency probe ran")

    for name in ("__init__", "measure", "measure_module", "reference_latency"):
        monkeypatch.setattr(LatencyProbe, name, timed)
    monkeypatch.setattr("evaluators.latency._time_interleaved", timed)


def test_a_search_with_a_latency_model_predicts_and_records_the_file(tiny_space, tiny_profile, tmp_path, no_probe):
    s = settings(tiny_space, tmp_path, tiny_profile)
    assert run_search(s).finished == 3
    study = optuna.load_study(study_name="m", storage=s.storage_url)
    record = study.user_attrs[MODEL_ATTR]
    assert record["sha256"] == hashlib.sha256(tiny_profile.read_bytes()).hexdigest()
    assert record["settings"]["input_size"] == 16 and record["fingerprint"]["cpu"]
    assert CALIBRATION_ATTR not in study.user_attrs
    model = LatencyModel.load(tiny_profile)
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        config = GhostNetConfig.from_dict(t.user_attrs["config"])
        assert t.values[0] == t.user_attrs["scores"]["latency_ms"] == pytest.approx(model.predict(config))
        assert "latency" not in t.user_attrs  # nothing was timed


def test_the_latency_limit_applies_to_the_prediction(tiny_space, tiny_profile, tmp_path, no_probe):
    model = LatencyModel.load(tiny_profile)
    s = settings(tiny_space, tmp_path, tiny_profile, trials=1, objectives=("flops", "params"), max_latency_ms=1e-6)
    # Every prediction is over the limit, so no model is trained and the search stops saying so.
    with pytest.raises(SearchError, match=r"latency_ms rejected most .*--max-latency-ms"):
        run_search(s)
    study = optuna.load_study(study_name="m", storage=s.storage_url)
    assert len(study.get_trials()) == NOT_TRAINED_PER_TRIAL
    for t in study.get_trials():
        predicted = model.predict(GhostNetConfig.from_dict(t.user_attrs["config"]))
        assert t.user_attrs["rejected"] == f"latency_ms {predicted:.2f} ms > max 1e-06 ms"


def test_eval_with_a_latency_model_prints_the_prediction(tiny_profile, capsys, no_probe):
    code = cli.main(["eval", "--reference", "ghostnet-0.5x", "--preset", "cifar", "--input-size", "16", "--num-classes", "10",
                     "--skip-accuracy", "--latency-model", str(tiny_profile), "--json"])  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    config = GhostNetConfig.from_dict(result["config"])
    assert result["latency_ms"] == pytest.approx(LatencyModel.load(tiny_profile).predict(config))
    assert result["latency_model"]["sha256"] == hashlib.sha256(tiny_profile.read_bytes()).hexdigest()
    assert "latency" not in result


def one_line_exit_2(capsys, argv) -> str:
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ghostnas: error: "), err
    return err[0]


def test_bad_latency_model_files_end_in_one_line(tiny_space, tiny_profile, tmp_path, capsys):
    flags = ["search", "--space", str(tiny_space), "--out", str(tmp_path / "run"), "--study", "m", "--subset", "300",
             "--input-size", "16", "--no-baselines", "--no-progress", "--objectives", "latency_ms,flops", "--trials", "2"]  # fmt: skip
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "cfg.json").write_text('{"cfgs": [[[3, 16, 16, 0, 1]]], "width": 1.0}')
    cases = [
        (tmp_path / "missing.json", "cannot read latency model"),
        (tmp_path / "bad.json", "is not JSON"),
        (tmp_path / "cfg.json", "is not a ghostnas profile"),
    ]
    for path, message in cases:
        assert message in one_line_exit_2(capsys, [*flags, "--latency-model", str(path)])
    wrong_size = [*flags, "--input-size", "32", "--latency-model", str(tiny_profile)]
    assert "profiled for preset cifar at 16 px, not cifar at 32 px" in one_line_exit_2(capsys, wrong_size)
    assert not (tmp_path / "run" / "study.db").exists()  # refused before any study was created


def test_a_study_refuses_another_devices_file_for_its_limit(tiny_space, tiny_profile, tmp_path, capsys):
    # The study's limit and front are in the first file's milliseconds; a file profiled on
    # another device (here: the same numbers, another CPU) is another device's milliseconds.
    flags = ["search", "--space", str(tiny_space), "--out", str(tmp_path / "run"), "--study", "m", "--subset", "300",
             "--input-size", "16", "--no-baselines", "--no-progress", "--objectives", "flops,params",
             "--max-latency-ms", "1000", "--trials", "2"]  # fmt: skip
    assert cli.main([*flags, "--latency-model", str(tiny_profile)]) == 0
    other = json.loads(tiny_profile.read_text())
    other["fingerprint"]["cpu"] = "ARM Cortex-A76"
    (tmp_path / "pi.json").write_text(json.dumps(other))
    db = _rows(tmp_path / "run" / "study.db")
    message = one_line_exit_2(capsys, [*flags, "--trials", "3", "--latency-model", str(tmp_path / "pi.json")])
    assert "predicts latency with another latency model" in message and "pi.json" in message
    assert "predicts latency with a latency model" in one_line_exit_2(capsys, [*flags, "--trials", "3"])  # timing instead
    assert _rows(tmp_path / "run" / "study.db") == db


def _rows(path: Path) -> list[str]:
    """The database's content, write-ahead log included. (Not its bytes: in WAL mode the main
    file changes whenever a connection checkpoints the log, and an in-process command's pooled
    connection closes when the garbage collector gets to it.)"""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return list(connection.iterdump())
