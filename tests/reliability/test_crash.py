"""Crash recovery with real processes: SIGKILL, Ctrl-C, --timeout, and trials that fail.

A ``hang`` fault (faulty_cli.py) holds one evaluation open until the test acts, so "in the
middle of a trial" is certain rather than a matter of timing; everything else is the real CLI.
"""

from __future__ import annotations

import json
import os
import signal

import optuna
import pandas as pd
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from results import load_trials, read_exported

OUTPUTS = ("pareto.csv", "pareto.md", "best.json", "best.py", "plots/index.html")


def assert_outputs_valid(out_dir, snap) -> None:
    """Every output exists, parses, and describes finished trials of the study."""
    finished = {t.number for t in snap.trials if t.state == TrialState.COMPLETE}
    front = pd.read_csv(out_dir / "pareto.csv")
    assert set(front["number"]) <= finished
    members = json.loads((out_dir / "best.json").read_text())
    assert [m["trial"] for m in members] == list(front["number"])
    assert len(read_exported(out_dir / "best.py")) == len(members) if members else True
    assert (out_dir / "pareto.md").read_text().startswith("# Pareto front")
    assert (out_dir / "plots" / "index.html").read_text().rstrip().endswith("</html>")
    assert not list(out_dir.rglob(".*.tmp")), "a temporary file was left behind"


def test_sigkill_mid_trial_then_restart(h, cost_flags, tmp_path, procs):
    """Journal storage, one worker: kill -9 during trial 2; the restarted command fails it,
    runs its config again, keeps trials 0 and 1 as they were, and stops at exactly --trials."""
    url = h.journal_url(tmp_path / "study.log")
    args = ["search", *cost_flags, "--storage", url, "--study", "k", "--trials", 4]
    logs = tmp_path / "logs"
    proc = h.spawn(*args, logs=logs, faults="2=hang")
    procs.append(proc)
    pid = h.wait_hang(logs, procs=[proc])
    before = h.snapshot(url, "k")
    killed = [t for t in before.trials if t.state == TrialState.RUNNING]
    assert before.finished == 2 and len(killed) == 1, before.summary()
    os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    result = h.cli(*args)
    assert result.rc == 0 and result.clean(), result.err
    assert f"worker process {pid} died" in result.err
    after = h.snapshot(url, "k")
    h.assert_whole(after, 4)
    dead = after.trials[killed[0].number]
    assert dead.state == TrialState.FAIL and f"worker process {pid} died" in dead.user_attrs["failed"]
    retries = [t for t in after.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == dead.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == killed[0].params
    for old in before.trials[:2]:  # completed trials are kept as they were
        assert after.trials[old.number].values == old.values and after.trials[old.number].state == old.state
    assert len(after.failed) == 1
    assert_outputs_valid(tmp_path / "run", after)


def test_sigkill_one_worker_of_two_the_other_recovers(h, cost_flags, tmp_path, procs):
    """SQLite, --workers 2: kill -9 one worker process mid-trial; the other fails its trial,
    reruns the config, and the same command ends normally with exactly --trials."""
    url = h.sqlite_url(tmp_path / "study.db")
    logs = tmp_path / "logs"
    proc = h.spawn("search", *cost_flags, "--storage", url, "--study", "k2", "--trials", 5, "--workers", 2, logs=logs, faults="1=hang-once")
    procs.append(proc)
    pid = h.wait_hang(logs, procs=[proc])
    killed = h.wait_for("the hanging trial in storage", lambda: next(
        (t for t in h.snapshot(url, "k2").trials if t.state == TrialState.RUNNING and t.user_attrs.get("worker", {}).get("pid") == pid), None
    ))  # fmt: skip
    os.kill(pid, signal.SIGKILL)
    result = proc.finish()
    assert result.rc == 0 and result.clean(), result.err
    after = h.snapshot(url, "k2")
    h.assert_whole(after, 5)
    dead = after.trials[killed.number]
    assert dead.state == TrialState.FAIL and f"worker process {pid} died" in dead.user_attrs["failed"]
    retries = [t for t in after.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == dead.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == killed.params
    assert len(after.failed) == 1
    assert_outputs_valid(tmp_path / "run", after)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_cleanly_and_resume_continues(h, cost_flags, tmp_path, procs, workers):
    """SIGINT to the whole process group (what Ctrl-C in a terminal does) while a trial runs:
    exit 130, the running trial FAIL 'interrupted', valid outputs; the same command resumes."""
    url = h.sqlite_url(tmp_path / "study.db")
    args = ["search", *cost_flags, "--storage", url, "--study", "c", "--trials", 4, "--workers", workers]
    logs = tmp_path / "logs"
    proc = h.spawn(*args, logs=logs, faults="1=hang-once", new_session=True)  # the other worker goes on
    procs.append(proc)
    h.wait_hang(logs, procs=[proc])
    os.killpg(proc.pid, signal.SIGINT)
    result = proc.finish()
    assert result.rc == 130 and result.clean(), result.err
    assert "interrupted" in result.err
    assert result.out.split() == [str(tmp_path / "run" / name) for name in OUTPUTS]
    stopped = h.snapshot(url, "c")
    assert stopped.count(TrialState.RUNNING) == 0 and stopped.numbers_ok(), stopped.summary()
    assert stopped.finished < 4 and stopped.failed, stopped.summary()
    assert all(t.user_attrs.get("failed") == "interrupted" for t in stopped.failed), stopped.summary()
    assert_outputs_valid(tmp_path / "run", stopped)
    if workers == 2:
        return  # resuming is the same command either way; once is enough

    resumed = h.cli(*args)
    assert resumed.rc == 0 and resumed.clean(), resumed.err
    after = h.snapshot(url, "c")
    h.assert_whole(after, 4)
    assert [t.number for t in after.failed] == [t.number for t in stopped.failed]  # kept, not rerun
    for old in stopped.trials:
        if old.state == TrialState.COMPLETE:
            assert after.trials[old.number].values == old.values
    assert_outputs_valid(tmp_path / "run", after)


def test_timeout_stops_cleanly_and_resume_continues(h, cost_flags, tmp_path):
    url = h.journal_url(tmp_path / "study.log")
    args = ["search", *cost_flags, "--storage", url, "--study", "t"]
    # Setup (imports, data, probe) counts too: a loaded machine needs several seconds. The target
    # is out of reach in 20 s on any machine (a trial here takes at least ~0.1 s).
    result = h.cli(*args, "--trials", 5000, "--timeout", 20)
    assert result.rc == 0 and result.clean(), result.err
    stopped = h.snapshot(url, "t")
    # A fast machine exhausts part of the tiny space in 20 s: its repeats are FAIL (duplicate_of), not crashes.
    assert 0 < stopped.finished < 5000 and not stopped.crashed, stopped.summary()
    assert stopped.count(TrialState.RUNNING) == 0
    assert_outputs_valid(tmp_path / "run", stopped)

    target = stopped.finished + 2
    resumed = h.cli(*args, "--trials", target)
    assert resumed.rc == 0 and resumed.clean(), resumed.err
    after = h.snapshot(url, "t")
    h.assert_whole(after, target)
    assert not after.crashed
    assert_outputs_valid(tmp_path / "run", after)


def test_ctrl_c_stops_confirm_cleanly_and_the_same_command_goes_on(h, fast_flags, tmp_path, procs):
    """SIGINT once confirm has stored a run: exit 130, every stored run whole; the same command
    then trains only the runs still missing (no seed twice) and writes valid outputs.

    Its second run hangs by design (however fast the machine, the signal lands while it runs)."""
    url = h.sqlite_url(tmp_path / "study.db")
    search = h.cli("search", *fast_flags, "--storage", url, "--study", "c", "--trials", 3, "--objectives", "accuracy,flops")
    assert search.rc == 0, search.err
    study = optuna.load_study(study_name="c", storage=url)

    def stored() -> dict[str, list]:
        return {k: v for k, v in optuna.load_study(study_name="c", storage=url).user_attrs.items() if k.startswith("accuracy_runs.")}

    args = ["confirm", "--storage", url, "--study", "c", "--runs", 4, "--no-progress"]
    logs = tmp_path / "logs"
    proc = h.spawn(*args, logs=logs, new_session=True, env={"GHOSTNAS_CONFIRM_FAULTS": "1=hang"})
    procs.append(proc)
    h.wait_hang(logs, procs=[proc])
    os.killpg(proc.pid, signal.SIGINT)
    result = proc.finish()
    assert result.rc == 130 and result.clean(), result.err
    first = stored()
    assert first and all(all(0 <= r["accuracy"] <= 1 for r in runs) for runs in first.values())
    assert sum(map(len, first.values())) == 1 < 3 * len(study.best_trials)  # the first run only: really cut short

    resumed = h.cli(*args)
    assert resumed.rc == 0 and resumed.clean(), resumed.err
    after = stored()
    for key, runs in after.items():
        assert sorted(r["seed"] for r in runs) == [1, 2, 3], key
        assert runs[: len(first.get(key, []))] == first.get(key, [])  # kept, not retrained
    front = pd.read_csv(tmp_path / "run" / "pareto.csv")
    assert (front["accuracy_runs"] == 4).all()
    assert_outputs_valid(tmp_path / "run", h.snapshot(url, "c"))


def test_failing_trials_are_recorded_and_the_search_goes_on(h, cost_flags, tmp_path):
    """Evaluations that raise, score NaN and run out of memory: each trial FAIL with its reason,
    in storage, in the results trial table and in `show`; the search still reaches --trials."""
    url = h.sqlite_url(tmp_path / "study.db")
    result = h.cli("search", *cost_flags, "--storage", url, "--study", "f", "--trials", 3, faults="1=raise,2=nan,3=oom")
    assert result.rc == 0 and result.clean(), result.err
    snap = h.snapshot(url, "f")
    h.assert_whole(snap, 3)
    reasons = {t.number: t.user_attrs.get("failed") for t in snap.failed}
    assert sorted(reasons) == [1, 2, 3], snap.summary()
    assert reasons[1] == "RuntimeError: injected fault in evaluation 1"
    assert reasons[2].startswith("non-finite score")
    assert reasons[3] == "out of memory"
    for number, reason in reasons.items():
        assert f"trial {number} failed: {reason}" in result.err  # one warning line each

    import optuna

    table = load_trials(optuna.load_study(study_name="f", storage=url))
    failed = table[table["state"] == "FAIL"]
    assert dict(zip(failed["number"], failed["failed"])) == reasons

    shown = h.cli("show", "--study", "f", "--storage", url)
    assert shown.rc == 0, shown.err
    for number, reason in reasons.items():
        assert reason in shown.out, shown.out


def test_every_trial_failing_stops_the_search_with_one_line(h, cost_flags, tmp_path):
    """A fault in every evaluation (a broken device, say) is not retried forever."""
    url = h.sqlite_url(tmp_path / "study.db")
    faults = ",".join(f"{i}=raise" for i in range(10))
    result = h.cli("search", *cost_flags, "--storage", url, "--study", "all", "--trials", 3, faults=faults)
    assert result.rc == 2 and result.clean(), result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("ghostnas: error: 5 trials in a row failed") and "injected fault" in last
    snap = h.snapshot(url, "all")
    assert len(snap.failed) == 5
    h.assert_whole(snap, 0)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_worker_lost_on_another_machine_is_failed_by_its_heartbeat_and_retried(tmp_path):
    """The cross-machine path: no process check can see another host's worker, so its trial is
    failed once its heartbeat is older than the grace period (60 s; backdated here), with the
    reason recorded, and its config queued again. The local dead-process check leaves it alone."""
    import sqlalchemy
    from optuna.distributions import IntDistribution

    from search import open_storage
    from search._optuna import storage_of, trial_id
    from search._storage import fail_dead_local_trials, fail_stale_trials

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = __import__("optuna").create_study(storage=open_storage(url), study_name="hb")
    trial = study.ask({"x": IntDistribution(0, 9)})
    trial.set_user_attr("worker", {"host": "other-machine", "pid": os.getpid() + 10**6})
    storage_of(study).record_heartbeat(trial_id(study.trials[0]))
    assert fail_dead_local_trials(study) == []  # another host: not ours to judge by pid
    fail_stale_trials(study)
    assert study.trials[0].state == TrialState.RUNNING  # its heartbeat is fresh
    with sqlalchemy.create_engine(url).begin() as db:
        db.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour')"))
    fail_stale_trials(study)
    dead, retry = study.get_trials()
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["failed"] == f"worker process {os.getpid() + 10**6} on other-machine sent no heartbeat for 60 s"
    assert retry.state == TrialState.WAITING and RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0 and retry.params == dead.params
