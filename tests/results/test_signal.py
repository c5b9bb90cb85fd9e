"""The signal check: a study whose trained models all score chance (or all the same) says so, in
the log after search and confirm, in ``show``, the md export and the plots index; a healthy
study says nothing. The accuracies are constructed, so the outcome does not depend on the CPU."""

from __future__ import annotations

import logging

import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from cli import _write_outputs, main
from results import load_trials, pareto_front, render, signal_note

# Ten classes; 1,500 images with val_fraction 0.2: 300 validation images, so 3 sd of binomial
# noise around chance (0.1) is 3 * sqrt(0.1 * 0.9 / 300) = 5.2 points.
PROXY = {"images": 1797, "classes": [str(c) for c in range(10)], "subset": 1500, "val_fraction": 0.2, "epochs": 1,
         "preset": "cifar", "input_size": 16, "seed": 0}  # fmt: skip


@pytest.fixture
def study_with(make_study, sampled_config, tmp_path):
    """A journal study (``journal.log`` in ``tmp_path``) of models trained to these accuracies,
    plus one sample a limit rejected (never trained: it must not count)."""

    def make(accuracies, *, proxy=PROXY):
        items = [
            dict(config=sampled_config(i), state="COMPLETE", baseline=None, reasons={}, constraints={},
                 scores={"accuracy": a, "latency_ms": 5.0 + i, "flops": 20e6 - i * 1e6, "params": 1e6})
            for i, a in enumerate(accuracies)
        ]  # fmt: skip
        items.append(dict(config=sampled_config(99), state="COMPLETE", baseline=None, constraints={"flops": 0.5},
                          scores={"flops": 300e6, "params": 1e6}, reasons={"rejected": "flops 300M > max 200M"}))  # fmt: skip
        storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
        study = make_study(storage, "sig", ["accuracy", "latency_ms", "flops"], items)
        if proxy is not None:
            study.set_user_attr("proxy", proxy)
        return study

    return make


def test_all_equal_accuracies_at_chance_are_reported(study_with):
    note = load_trials(study_with([0.1] * 4)).attrs["signal"]
    assert note.startswith("accuracy carries no signal: all 4 trained models scored 10.00% (chance is 10.0% for 10 classes)")
    assert "--subset, --epochs, --input-size" in note


def test_accuracies_within_the_noise_of_chance_are_reported(study_with):
    # 5.2 points of noise either side of 10 %: 6 % to 15 % is chance-level on 300 images.
    note = signal_note(load_trials(study_with([0.06, 0.1, 0.133, 0.15])))
    assert note == (
        "accuracy is indistinguishable from chance: the 4 trained model(s) scored 6.00% to 15.00%, within 3 sd (5.2%) "
        "of chance, 10.0% for 10 classes on 300 validation images; raise the proxy budget (--subset, --epochs, --input-size)"
    )


def test_a_healthy_study_or_one_model_above_the_noise_is_not_reported(study_with, hand_study):
    assert signal_note(load_trials(study_with([0.1, 0.1, 0.11, 0.16]))) is None  # 16 % is 6 points above chance
    assert load_trials(hand_study).attrs["signal"] is None  # 60-90 %, no proxy record


def test_equal_accuracies_without_a_proxy_record_are_reported(study_with):
    note = signal_note(load_trials(study_with([0.42, 0.42], proxy=None)))
    assert note.startswith("accuracy carries no signal: all 2 trained models scored 42.00% (chance level unknown")


def test_show_export_plots_and_the_search_log_carry_the_note(study_with, tmp_path, capsys, caplog):
    frame = load_trials(study_with([0.1] * 3))
    assert "> **Warning**: accuracy carries no signal" in render(pareto_front(frame), fmt="md")

    assert main(["show", "--study", "sig", "--storage", str(tmp_path / "journal.log")]) == 0
    assert "chance is 10.0% for 10 classes" in capsys.readouterr().out

    with caplog.at_level(logging.WARNING):
        paths = _write_outputs(str(tmp_path / "journal.log"), "sig", tmp_path / "out")  # what search and confirm call
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "chance" in r.getMessage()]
    assert len(warnings) == 1 and "--subset, --epochs, --input-size" in warnings[0]
    assert "> **Warning**" in (tmp_path / "out" / "pareto.md").read_text()
    assert "Warning: accuracy carries no signal" in (tmp_path / "out" / "plots" / "index.html").read_text()
    assert len(paths) == 5


def test_a_healthy_study_logs_no_warning(study_with, tmp_path, caplog):
    study_with([0.35, 0.6, 0.8])
    with caplog.at_level(logging.WARNING):
        _write_outputs(str(tmp_path / "journal.log"), "sig", tmp_path / "out")
    assert not [r for r in caplog.records if "chance" in r.getMessage()]
    assert "Warning" not in (tmp_path / "out" / "pareto.md").read_text()



def test_predicted_accuracies_are_reported_as_predictions(study_with):
    """A study scored by the ridge (its proxy record names the fit) says its accuracies are
    predictions, healthy as they look (60-70 %, far from chance)."""
    proxy = {**PROXY, "accuracy_estimator": {"name": "ridge", "sha256": "0" * 64}}
    note = load_trials(study_with([0.61, 0.64, 0.68], proxy=proxy)).attrs["signal"]
    assert note.startswith("accuracy is predicted by the ridge accuracy model, not trained")
    assert "ghostnas train --member N" in note
