"""One test per private Optuna name search/_optuna.py uses: each fails when an Optuna release
moves or changes the name, before a search relies on it. Where a public (slower) way to get the
same thing exists, the private one is checked against it."""

from __future__ import annotations

import time
import warnings

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from search import open_storage
from search._optuna import enqueued_params, generation_key, stale_trial_ids, storage_of, study_id, trial_id

X = {"x": IntDistribution(0, 9)}


def test_storage_of_is_the_storage_the_study_was_opened_on(tmp_path):
    journal = JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(storage=journal, study_name="j")
    assert storage_of(study) is journal
    rdb = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"), study_name="s")
    assert isinstance(storage_of(rdb), BaseStorage)  # Optuna's cache around the RDBStorage
    assert storage_of(rdb).get_study_id_from_name("s") == study_id(rdb)


def test_study_id_is_the_storages_id_of_the_study(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    studies = [optuna.create_study(storage=storage, study_name=name) for name in ("a", "b")]
    assert [study_id(s) for s in studies] == [storage.get_study_id_from_name(name) for name in ("a", "b")]
    assert study_id(studies[0]) != study_id(studies[1])


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_trial_id_is_the_storages_id_of_the_trial(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    optuna.create_study(storage=storage, study_name="first").ask(X)  # ids now differ from numbers
    study = optuna.create_study(storage=storage, study_name="s")
    for _ in range(3):
        study.ask(X)
    for t in study.get_trials(deepcopy=False):
        assert trial_id(t) == storage.get_trial_id_from_study_id_trial_number(study_id(study), t.number)
        assert storage.get_trial(trial_id(t)).number == t.number
    assert [trial_id(t) for t in study.get_trials(deepcopy=False)] != [0, 1, 2]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_stale_trial_ids_lists_the_running_trials_whose_heartbeat_stopped(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="s")
    for _ in range(3):
        study.ask(X)
    beating, silent, done = (trial_id(t) for t in study.get_trials(deepcopy=False))
    for ident in (beating, silent, done):
        storage.record_heartbeat(ident)
    study.tell(2, 1.0)
    assert stale_trial_ids(study) == []
    # Past the 1 s grace period on SQLite's clock, which keeps whole seconds: 2.2 s apart are
    # at least 2 whole seconds apart (1.5 s could read as 1, not stale).
    time.sleep(2.2)
    storage.record_heartbeat(beating)
    assert stale_trial_ids(study) == [silent]
    assert study.get_trials()[1].state == TrialState.RUNNING  # listing fails nothing


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_enqueued_params_are_those_a_queued_trial_was_given(tmp_path):
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    study.tell(study.ask(X), 0.0)
    study.enqueue_trial({"x": 3})
    asked, queued = study.get_trials(deepcopy=False)
    assert enqueued_params(queued) == {"x": 3} and queued.state == TrialState.WAITING
    assert enqueued_params(asked) is None


def test_generation_key_is_where_a_genetic_sampler_files_the_generation():
    sampler = optuna.samplers.NSGAIISampler(population_size=2, seed=0)
    study = optuna.create_study(sampler=sampler, directions=["minimize", "minimize"])
    study.optimize(lambda t: (t.suggest_int("x", 0, 9), 0.0), n_trials=3)
    assert generation_key(sampler).endswith(":generation")
    assert [t.system_attrs[generation_key(sampler)] for t in study.trials] == [0, 0, 1]
