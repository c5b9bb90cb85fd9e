"""``search --accuracy-estimator ridge``: real searches on digits scored by the shipped accuracy
model, each trial's accuracy recomputed; no training runs."""

from __future__ import annotations

import dataclasses

import optuna
import yaml
import pytest
from optuna.trial import TrialState

import evaluators.evaluate
from evaluators.accuracy_model import AccuracyModel
from search import ConfirmSettings, SearchError, confirm_study, run_search
from search._search import _Worker, resolve_accuracy_estimator
from spaces import GhostNetConfig

from tests.search.test_prefilter import _recomputed
from tests.search.test_search import settings


def _no_training(*args, **kwargs):
    raise AssertionError("a --accuracy-estimator ridge search trained a model")


def test_a_ridge_search_predicts_every_accuracy_and_trains_nothing(tiny_space, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluators.evaluate, "train_proxy", _no_training)
    s = settings(tiny_space, tmp_path, trials=4, sampler="random", objectives=("accuracy", "flops"), accuracy_estimator="ridge")
    summary = run_search(s)
    assert (summary.finished, summary.failed) == (4, 0)
    study = optuna.load_study(study_name=s.study, storage=s.storage_url)
    record = study.user_attrs["proxy"]["accuracy_estimator"]
    assert record == {"name": "ridge", "sha256": AccuracyModel.load().sha256}
    data = _Worker(s).proxy.data[0]  # the study's proxy-train images: what the features were computed on
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    for t in trials:
        assert "training" not in t.user_attrs and t.user_attrs["seconds"]["predict"] > 0
        value = _recomputed("ridge", GhostNetConfig.from_dict(t.user_attrs["config"]), data, s.seed)
        assert t.values[0] == t.user_attrs["scores"]["accuracy"] == pytest.approx(value, rel=1e-9)
    assert len({t.values[0] for t in trials}) == 4  # four configs, four different predictions


def test_a_study_is_resumed_only_with_the_estimator_it_was_scored_by(tiny_space, tmp_path, monkeypatch):
    trained = settings(tiny_space, tmp_path / "a", trials=1, sampler="random", objectives=("accuracy", "flops"), early_stopping=False)
    run_search(trained)
    with pytest.raises(SearchError, match=r"scored accuracy by training \(--accuracy-estimator train\), not by the ridge accuracy model"):
        run_search(settings(tiny_space, tmp_path / "a", trials=2, sampler="random", objectives=("accuracy", "flops"), accuracy_estimator="ridge"))
    predicted = settings(tiny_space, tmp_path / "b", trials=1, sampler="random", objectives=("accuracy", "flops"), accuracy_estimator="ridge")
    run_search(predicted)
    with pytest.raises(SearchError, match=r"scored accuracy by the ridge accuracy model \(sha256 [0-9a-f]{12}\), not by training"):
        run_search(settings(tiny_space, tmp_path / "b", trials=2, sampler="random", objectives=("accuracy", "flops"), accuracy_estimator="train"))
    # The same estimator resumes (one more trial each), given or not, and the study still holds only predictions.
    monkeypatch.setattr(evaluators.evaluate, "train_proxy", _no_training)
    assert run_search(settings(tiny_space, tmp_path / "b", trials=2, sampler="random", objectives=("accuracy", "flops"), accuracy_estimator="ridge")).finished == 2
    assert run_search(settings(tiny_space, tmp_path / "b", trials=3, sampler="random", objectives=("accuracy", "flops"))).finished == 3
    # No training runs to confirm: refused in one line, nothing written.
    study = optuna.load_study(study_name=predicted.study, storage=predicted.storage_url)
    attrs = dict(study.user_attrs)
    with pytest.raises(SearchError, match="predicted its accuracies .* there are no training runs to confirm"):
        confirm_study(ConfirmSettings(study=predicted.study, storage=predicted.storage_url, progress=False))
    assert optuna.load_study(study_name=predicted.study, storage=predicted.storage_url).user_attrs == attrs


def test_ridge_and_prefilter_are_refused_together(tiny_space, tmp_path):
    with pytest.raises(SearchError, match="with --accuracy-estimator ridge nothing is trained"):
        settings(tiny_space, tmp_path, accuracy_estimator="ridge", prefilter=4)
    with pytest.raises(SearchError, match="--accuracy-estimator must be one of train, ridge, got 'synflow'"):
        settings(tiny_space, tmp_path, accuracy_estimator="synflow")


def test_the_ridge_is_the_default_for_new_cifar10_studies_only(tiny_space, tmp_path):
    def resolved(**kwargs):
        return resolve_accuracy_estimator(settings(tiny_space, tmp_path / "new", **kwargs)).accuracy_estimator

    # A new study (no storage yet, and none is created by asking).
    assert resolved(dataset="cifar10") == "ridge"
    assert not (tmp_path / "new").exists()
    assert resolved(dataset="cifar10", accuracy_estimator="train") == "train"
    assert resolved(dataset="cifar10", prefilter=4) == "train"  # a prefilter picks what to train
    assert resolved(dataset="cifar10", objectives=("latency_ms", "flops")) == "train"  # (nothing to score)
    assert resolved() == resolved(dataset="cifar100") == "train"  # the fit was measured on CIFAR-10 only


def test_an_unset_estimator_resumes_a_study_the_way_it_was_scored(tiny_space, tmp_path):
    """A cifar10 study trained before the ridge became the default keeps training when resumed
    without the flag (the study's record is read from real storage; digits stands in for the data)."""
    trained = settings(tiny_space, tmp_path, trials=1, sampler="random", objectives=("accuracy", "flops"), early_stopping=False, accuracy_estimator="train")
    run_search(trained)
    unset = dataclasses.replace(trained, dataset="cifar10", accuracy_estimator=None)
    assert resolve_accuracy_estimator(unset).accuracy_estimator == "train"
    other = dataclasses.replace(unset, study="another")  # another study in the same storage is new
    assert resolve_accuracy_estimator(other).accuracy_estimator == "ridge"
    assert yaml.safe_load((tmp_path / "run" / "search.yaml").read_text())["accuracy_estimator"] == "train"
