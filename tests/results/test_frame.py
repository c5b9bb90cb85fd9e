from __future__ import annotations

import math

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from results import ResultsError, load_trials, open_study
from spaces import GhostNetConfig, reference


def test_open_study_reads_what_search_wrote(hand_study, storage_url):
    study = open_study(storage=optuna.storages.RDBStorage(storage_url), study_name="hand")
    assert len(study.trials) == 9 and study.user_attrs["objectives"] == ["accuracy", "latency_ms"]


def test_open_study_missing_study_names_the_ones_there(hand_study, storage_url):
    with pytest.raises(ResultsError, match=r"study 'nope' does not exist .*studies there: hand\)") as err:
        open_study(storage=optuna.storages.RDBStorage(storage_url), study_name="nope")
    assert "\n" not in str(err.value)


def test_open_study_reads_a_journal_file(tmp_path, make_study, hand_items):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    make_study(storage, "j", ["accuracy", "latency_ms"], hand_items[:2])
    assert len(open_study(storage=storage, study_name="j").trials) == 2


def test_load_trials_one_row_per_trial(hand_study):
    frame = load_trials(hand_study)
    assert frame["number"].tolist() == list(range(9))
    assert frame["state"].tolist() == ["COMPLETE"] * 6 + ["FAIL", "PRUNED", "COMPLETE"]
    # Feasible: COMPLETE and every constraint <= 0; a PRUNED trial never is.
    assert frame["feasible"].tolist() == [True] * 5 + [False] * 4
    assert frame.loc[0, "baseline"] == "ghostnet-1.0x" and frame["baseline"].isna().sum() == 8
    assert frame.loc[1, "accuracy"] == 0.70 and frame.loc[1, "latency_ms"] == 5.0
    # Scores never measured are NaN, not the sentinel the sampler saw.
    assert math.isnan(frame.loc[5, "accuracy"]) and math.isnan(frame.loc[5, "latency_ms"])
    assert frame.loc[5, "flops"] == 300e6 and frame.loc[5, "rejected"] == "flops 300M > max 250M"
    assert frame.loc[6, "failed"].startswith("RuntimeError") and frame.loc[7, "stopped"].startswith("epoch 2")
    assert frame.loc[8, "constraints"] == {"flops": -0.8, "latency_ms": 0.5}
    assert frame.loc[0, "seconds_train"] == 3.0 and frame.loc[0, "seconds_total"] == 3.61
    assert frame.attrs["objectives"] == ["accuracy", "latency_ms"] and frame.attrs["limits"]["max_latency_ms"] == 25.0


def test_load_trials_flattens_the_config(hand_study):
    frame = load_trials(hand_study)
    ref = reference("ghostnet-1.0x")
    row = frame.loc[0]
    assert GhostNetConfig.from_dict(row["config"]) == ref and row["config_id"] == ref.id
    assert (row["width"], row["ratio"], row["dw_size"], row["depth"]) == (1.0, 2, 3, 16)
    assert [row[f"s{i}.depth"] for i in range(9)] == [1, 1, 1, 1, 1, 1, 5, 1, 4]
    assert row["trial_params"]["s6.depth"] == 5
    assert str(frame["ratio"].dtype) == "Int64"


def test_load_trials_refuses_a_foreign_study(storage_url):
    study = optuna.create_study(storage=storage_url, study_name="plain")
    with pytest.raises(ResultsError, match="not a GhostNAS study"):
        load_trials(study)


def test_load_trials_of_an_empty_study(storage_url, make_study):
    frame = load_trials(make_study(storage_url, "empty", ["accuracy", "flops"], []))
    assert len(frame) == 0 and {"number", "feasible", "accuracy", "config"} <= set(frame.columns)
