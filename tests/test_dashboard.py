"""optuna-dashboard (the ``dashboard`` extra) opens the studies a real search writes: the server
is started on 127.0.0.1 as a user starts it, and the study and its trials are read back through
its HTTP API, for the SQLite default and for a journal file."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from search import SearchSettings, open_storage, run_search


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def dashboard():
    """Start ``optuna-dashboard STORAGE`` (the venv's script) and return its base URL when it answers.
    Skipped without the ``dashboard`` extra, failed under ``CI=true`` (``dev`` includes it)."""
    if importlib.util.find_spec("optuna_dashboard") is None:
        reason = "optuna-dashboard is not installed: pip install -e '.[dashboard]'"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}; CI=true and the dev extra includes it")
        pytest.skip(reason)
    procs = []

    def start(storage: str, log: Path) -> str:
        port = free_port()
        script = Path(sys.executable).with_name("optuna-dashboard")
        proc = subprocess.Popen(
            [str(script), storage, "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=log.open("w"),
        )  # fmt: skip
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                get(f"{base}/api/studies")
                return base
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard did not start (exit {proc.poll()}):\n{log.read_text()}")
                time.sleep(0.2)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_optuna_dashboard_reads_a_search_study(dashboard, tiny_space, tmp_path, kind):
    storage = None if kind == "sqlite" else str(tmp_path / "run" / "journal.log")
    settings = SearchSettings(
        study="dash", out=tmp_path / "run", storage=storage, space=tiny_space, subset=300, epochs=1, input_size=16,
        baselines=False, progress=False, trials=2, objectives=("accuracy", "flops"),
    )  # fmt: skip
    run_search(settings)
    study = optuna.load_study(study_name="dash", storage=open_storage(settings.storage_url))
    # The URL a user passes: the SQLite URL, or the journal file's path.
    base = dashboard(settings.storage_url if kind == "sqlite" else storage, tmp_path / "dashboard.log")

    (summary,) = get(f"{base}/api/studies")["study_summaries"]
    assert summary["study_name"] == "dash" and summary["directions"] == ["maximize", "minimize"]
    assert summary["user_attrs"]  # the GhostNAS record (objectives, limits, settings) is there
    detail = get(f"{base}/api/studies/{summary['study_id']}")
    trials = detail["trials"]
    assert [t["number"] for t in trials] == [t.number for t in study.get_trials()] == [0, 1]
    assert [t["state"] for t in trials] == ["Complete", "Complete"]
    for served, stored in zip(trials, study.get_trials()):
        assert served["values"] == pytest.approx(stored.values)
        assert {p["name"] for p in served["params"]} == set(stored.params)
        attrs = {a["key"]: a["value"] for a in served["user_attrs"]}
        assert attrs["config_id"] == stored.user_attrs["config_id"]
    assert len(detail["best_trials"]) == len(study.best_trials)
