"""A study's latency calibration: stored once, reused by resumes and workers, refused elsewhere."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

import cli
from search import SearchError, SearchSettings, run_search
from search._latency import CALIBRATION_ATTR


def settings(tiny_space, tmp_path, **overrides) -> SearchSettings:
    values = dict(
        study="c", out=tmp_path / "run", space=tiny_space, subset=300, input_size=16, baselines=False,
        progress=False, trials=2, objectives=("latency_ms", "flops"),
    )  # fmt: skip
    return SearchSettings(**(values | overrides))


def load(s: SearchSettings) -> optuna.Study:
    return optuna.load_study(study_name=s.study, storage=s.storage_url)


def assert_calibrated(study: optuna.Study) -> float:
    """Every trial's latency_ms is its ratio times the one stored reference; returns it."""
    reference_ms = study.user_attrs[CALIBRATION_ATTR]["reference_ms"]
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        latency = t.user_attrs["latency"]
        assert latency["calibration_reference_ms"] == reference_ms
        assert t.user_attrs["scores"]["latency_ms"] == pytest.approx(latency["ratio_to_reference"] * reference_ms)
        assert t.values[0] == t.user_attrs["scores"]["latency_ms"] == latency["calibrated_ms"]
        assert latency["median_ms"] > 0  # the raw median stays recorded
    return reference_ms


def test_calibration_is_stored_once_and_reused_on_resume(tiny_space, tmp_path, monkeypatch):
    s = settings(tiny_space, tmp_path)
    run_search(s)
    stored = load(s).user_attrs[CALIBRATION_ATTR]
    fp = stored["fingerprint"]
    assert fp["input_size"] == 16 and fp["stem_stride"] == 1 and fp["threads"] == 1 and fp["backend"] == "torch"
    assert fp["num_classes"] == 10 and fp["reference"] == "ghostnet-1.0x" and fp["cpu"] and fp["torch"]
    assert stored["runs"] >= 30
    assert assert_calibrated(load(s)) == stored["reference_ms"]

    def no_timing(*args, **kwargs):
        raise AssertionError("a resume must reuse the stored calibration")

    monkeypatch.setattr("search._latency.calibrate", no_timing)
    assert run_search(settings(tiny_space, tmp_path, trials=3)).finished == 3
    study = load(s)
    assert study.user_attrs[CALIBRATION_ATTR] == stored
    assert assert_calibrated(study) == stored["reference_ms"]


def test_workers_share_the_calibration_of_the_study(tiny_space, tmp_path):
    s = settings(tiny_space, tmp_path, trials=4, workers=2)
    assert run_search(s).finished == 4
    study = load(s)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4
    assert_calibrated(study)  # the spawned workers scaled by the parent's stored reference


def test_a_worker_on_another_device_fingerprint_is_refused(tiny_space, tmp_path, capsys):
    s = settings(tiny_space, tmp_path, trials=1)
    run_search(s)
    study = load(s)
    stored = study.user_attrs[CALIBRATION_ATTR]
    other = {**stored, "fingerprint": {**stored["fingerprint"], "cpu": "Some Other CPU", "threads": 4}}
    study.set_user_attr(CALIBRATION_ATTR, other)
    with pytest.raises(SearchError, match=r"calibrated its latency on another device \(cpu .* 'Some Other CPU' stored; threads 1 here, 4 stored\)"):
        run_search(settings(tiny_space, tmp_path, trials=2))
    flags = [
        "search", "--space", str(tiny_space), "--out", str(tmp_path / "run"), "--study", "c", "--subset", "300",
        "--input-size", "16", "--no-baselines", "--no-progress", "--objectives", "latency_ms,flops", "--trials", "2",
    ]  # fmt: skip
    capsys.readouterr()
    assert cli.main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another device" in err[0], err
    assert len(load(s).get_trials()) == 1 and load(s).user_attrs[CALIBRATION_ATTR] == other  # nothing replaced


def test_the_latency_limit_applies_to_the_calibrated_figure(tiny_space, tmp_path, monkeypatch):
    # Construct it: a stored reference of 1e6 ms makes every calibrated latency >= 1e4 ms, while
    # the raw medians of these tiny networks are milliseconds, far under the 1000 ms limit.
    s = settings(tiny_space, tmp_path, trials=1)
    run_search(s)
    study = load(s)
    study.set_user_attr(CALIBRATION_ATTR, {**study.user_attrs[CALIBRATION_ATTR], "reference_ms": 1e6})
    study.set_user_attr("limits", {"max_flops": None, "max_params": None, "max_latency_ms": 1000.0})
    # Every sample is now rejected, so the search stops; 3 rejections (not 20) keep the probes few.
    monkeypatch.setattr("search._search.NOT_TRAINED_PER_TRIAL", 3)
    with pytest.raises(SearchError, match=r"latency_ms rejected most"):
        run_search(settings(tiny_space, tmp_path, trials=2, max_latency_ms=1000))
    assert len(load(s).get_trials()) == 1 + 3 * 2
    trial = load(s).get_trials()[1]
    assert trial.user_attrs["latency"]["median_ms"] < 1000
    assert trial.user_attrs["rejected"].startswith("latency_ms ") and trial.user_attrs["rejected"].endswith("> max 1000 ms")
    assert trial.user_attrs["scores"]["latency_ms"] == pytest.approx(trial.user_attrs["latency"]["ratio_to_reference"] * 1e6)


def test_a_study_of_raw_medians_is_not_resumed_calibrated(tiny_space, tmp_path):
    s = settings(tiny_space, tmp_path, trials=1)
    run_search(s)
    study = load(s)
    study.set_user_attr(CALIBRATION_ATTR, None)  # as a study made before calibration holds none
    with pytest.raises(SearchError, match="recorded raw latency medians"):
        run_search(settings(tiny_space, tmp_path, trials=2))
