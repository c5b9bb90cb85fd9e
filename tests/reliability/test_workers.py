"""Several workers on one machine share one study: ``--workers N``, or N separate commands.

For SQLite (the default) and Optuna's journal file: the study ends with exactly ``--trials``
finished trials, numbered 0..n-1 once each, no failures (separate commands: none but a surplus
trial, asked for while the other command took the last one), and no "database is locked" (or
any traceback) reaching the user.
"""

from __future__ import annotations

from functools import partial

import pytest
from optuna.trial import TrialState

TRIALS = 6


def assert_exact(h, snap, trials: int) -> None:
    h.assert_whole(snap, trials)
    assert not snap.failed, snap.summary()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_workers_flag_shares_one_study(h, cost_flags, tmp_path, kind):
    url = h.storage_url(kind, tmp_path)
    # Each worker's first evaluation waits for the other's: both run trials on any machine.
    result = h.cli("search", *cost_flags, "--storage", url, "--study", "w", "--trials", TRIALS, "--workers", 2,
                   faults="0=barrier:2", fault_dir=tmp_path / "barrier")  # fmt: skip
    assert result.rc == 0 and result.clean(), result.err
    snap = h.snapshot(url, "w")
    assert_exact(h, snap, TRIALS)
    assert len(snap.pids()) == 2, f"both worker processes should have run trials: {snap.pids()}"


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_separate_commands_share_one_study(h, cost_flags, tmp_path, procs, kind):
    """Two commands started together on one fresh storage, each with its own --out (so they
    share no lock file, as on two machines): the study is created once and topped up exactly."""
    url = h.storage_url(kind, tmp_path)
    flags = [f for f in cost_flags]
    out = flags.index("--out")
    for i in range(2):
        flags[out + 1] = str(tmp_path / f"run{i}")
        # Each command's first evaluation waits for the other's: both run trials on any machine.
        procs.append(h.spawn("search", *flags, "--storage", url, "--study", "s", "--trials", TRIALS, "--seed", i, logs=tmp_path / "logs", faults="0=barrier:2"))
    results = [p.finish() for p in procs]
    for result in results:
        assert result.rc == 0 and result.clean(), result.err
    snap = h.snapshot(url, "s")
    h.assert_whole(snap, TRIALS)
    # With no shared ask-lock (as on two machines) both commands can ask for the last trial; the
    # later one records its trial as a surplus, unrun. That is the only failure allowed.
    assert all(t.user_attrs.get("surplus") for t in snap.failed), snap.summary()
    assert len(snap.pids()) == 2, f"both commands should have run trials: {snap.pids()}"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_two_workers_asking_for_the_last_trial_never_overshoot(tiny_space, tmp_path):
    """The race the storage-level check exists for, made certain: with one trial missing, two
    workers that share no lock both ask. The later-numbered trial steps back unrun (FAIL,
    'surplus', its enqueued config queued again); if the earlier one then fails, the loop runs
    another and the study still ends at exactly the target."""
    from search import SearchSettings
    from search._record import TrialFailed
    from filelock import FileLock

    from search._search import _Worker

    settings = SearchSettings(
        study="race", out=tmp_path / "run", space=tiny_space, subset=300, input_size=16, baselines=False,
        progress=False, objectives=("flops", "params"), trials=2,
    )  # fmt: skip
    worker = _Worker(settings)
    lock = FileLock(tmp_path / "lock")
    assert worker.work(target=1, deadline=None, lock=lock)  # trial 0: COMPLETE
    other = worker.study.ask()  # trial 1: another machine took the last trial, still running
    queued = dict(worker.study.trials[0].params)
    queued["width"] = 0.5 if queued["width"] == 0.35 else 0.35  # another config: trial 0's would be a duplicate, never run
    worker.study.enqueue_trial(queued, user_attrs={"baseline": "ghostnet-x"})

    def ask_and_run() -> None:  # what a worker does once it has seen 1 finished + 0 running
        worker.study.optimize(partial(worker.objective, lock=lock, target=2), n_trials=1, catch=(TrialFailed,))

    ask_and_run()  # trial 2 pops the enqueued config, finds 0 and 1 ahead: not run
    trials = worker.study.get_trials()
    assert trials[2].state == TrialState.FAIL and trials[2].user_attrs["surplus"], trials[2].user_attrs
    assert trials[2].user_attrs["failed"].startswith("not run: 2 trials were already finished or running")
    assert trials[3].state == TrialState.WAITING and trials[3].user_attrs == {"baseline": "ghostnet-x"}
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 1

    worker.study.tell(other, state=TrialState.FAIL)  # the other machine's trial died after all
    assert worker.work(target=2, deadline=None, lock=lock)
    trials = worker.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[3].user_attrs["baseline"] == "ghostnet-x"  # the queued config ran, nothing was lost


def test_first_opens_of_a_fresh_sqlite_storage_at_once(h, tiny_space, tmp_path):
    """Three processes open a SQLite file that does not exist yet and create-or-load one study
    at the same instant (a barrier releases them): all succeed and the study record is whole.
    (Before the fix one or two of four failed on "table studies already exists" or "UNIQUE
    constraint failed: alembic_version.version_num"; Optuna's journal file never did.)"""
    url = h.sqlite_url(tmp_path / "shared.db")
    results = h.open_at_once(url, tmp_path, tiny_space)
    assert [r.rc for r in results] == [0, 0, 0], [r.err[-600:] for r in results]
    attrs = h.snapshot(url, "race").user_attrs
    assert attrs["objectives"] == ["flops", "params"] and {"limits", "space", "settings", "ghostnas_version"} <= set(attrs)
