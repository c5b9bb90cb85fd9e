"""Where studies live: SQLite under runs/ by default, an Optuna journal file, or any RDB URL.

Storage URLs:

* ``sqlite:///path/study.db`` (the default, one file under ``runs/<study>/``): several worker
  processes on one machine.
* ``journal:path/study.log`` or any plain path (not a URL): Optuna's journal file
  storage, the most robust choice for many processes on one machine (NFS-safe locks).
* ``postgresql://user:pass@host/db`` (any SQLAlchemy URL): several machines.

RDB storages run heartbeats, so a trial whose worker died is failed and retried by Optuna.
Journal storage has no heartbeats; for it, and to recover at once instead of after the grace
period, a restarted search also fails the RUNNING trials of dead worker processes on this host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from results import TrialAttr
from search._objectives import SearchError
from search._optuna import stale_trial_ids, storage_of, trial_id

__all__ = ["HEARTBEAT_SECONDS", "fail_dead_local_trials", "fail_stale_trials", "mask_url", "open_storage", "worker_identity"]

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
CONNECT_TIMEOUT_SECONDS = 10
# Opening a fresh RDB storage from several processes at once races on creating its tables.
OPEN_ATTEMPTS = 5
# How many times a trial whose worker died is run again before it stays failed.
MAX_RETRY = 3
with warnings.catch_warnings():  # "experimental since v2.8": stable in practice, and the only retry hook
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    RETRY = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def default_storage_url(out_dir: Path) -> str:
    return f"sqlite:///{out_dir / 'study.db'}"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs, errors and saved settings.

    Not SQLAlchemy's ``render_as_string(hide_password=True)``: it leaks the part of a password
    after an unescaped ``@`` and raises on a bad port or a journal path (tests/search/test_units.py).
    """
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, _, host = rest.rpartition("@")
    if ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}@{host}"


def _journal_path(url: str) -> Path | None:
    """``journal:PATH`` or any string that is not a URL: a journal file, as optuna-dashboard reads it."""
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:").removeprefix("//"))
    return Path(url) if "://" not in url else None


def open_storage(url: str, *, must_exist: bool = False, read_only: bool = False) -> BaseStorage:
    """An Optuna storage for ``url``; SearchError (one line, no password) if it cannot be opened.

    ``must_exist`` refuses to create a new SQLite or journal file (confirm). ``read_only`` (show,
    export, plot) also refuses a file that is not already an Optuna storage (a zero-byte
    ``study.db`` would otherwise become a new database) and changes nothing in it: no folder
    is made, no journal mode is set.
    """
    must_exist = must_exist or read_only
    journal = _journal_path(url)
    if journal is not None:
        if must_exist and not journal.is_file():
            raise SearchError(f"no journal storage at {journal}")
        if not read_only:
            _ensure_parent(journal)
        try:
            return JournalStorage(JournalFileBackend(str(journal)))
        except (OSError, ValueError) as exc:
            raise SearchError(f"cannot open journal storage {journal}: {exc}") from None
    engine_kwargs: dict[str, object] = {}
    if url.startswith("sqlite:"):
        name = url.removeprefix("sqlite:///").split("?", 1)[0] if url.startswith("sqlite:///") else ""
        path = Path(name) if name not in ("", ":memory:") else None  # in memory: gone, and not shared
        if path is None:
            raise SearchError(f"storage {url!r}: give SQLite a file, sqlite:///path/study.db")
        if must_exist and not path.is_file():
            raise SearchError(f"no SQLite storage at {path}")
        if read_only:
            _check_optuna_sqlite(path)
        else:
            _ensure_parent(path)
        # Workers writing at once wait for the file lock instead of failing with
        # "database is locked" (SQLite's default wait is 5 s; a trial's bookkeeping can take longer).
        engine_kwargs["connect_args"] = {"timeout": 120}
    else:
        try:  # SQLAlchemy's own message for a bad port is "invalid literal for int()"
            sqlalchemy.engine.make_url(url).port
        except (sqlalchemy.exc.ArgumentError, ValueError):
            raise SearchError(f"storage {mask_url(url)}: not a database URL; expected dialect://user:password@host[:port]/database") from None
        engine_kwargs["pool_pre_ping"] = True
        if url.startswith("postgresql"):  # an unreachable host fails in seconds, not minutes
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():  # heartbeat_interval is "experimental" since v2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=6 * HEARTBEAT_SECONDS,
                    heartbeat_stale_trial_callback=RETRY,
                )
            if url.startswith("sqlite:") and not read_only:
                _use_wal(storage)
            return storage
        except ImportError as exc:
            raise SearchError(f"storage {mask_url(url)}: missing database driver ({exc.name or exc}); for PostgreSQL: pip install 'ghostnas[postgres]'") from None
        except Exception as exc:  # SQLAlchemy raises many kinds: bad URL, refused connection, auth
            if attempt < OPEN_ATTEMPTS and _lost_schema_race(exc):
                time.sleep(0.1 + random.random())  # the winner is creating the tables: open them once it is done
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SearchError(f"cannot open storage {mask_url(url)}: {_scrub(first, url)}") from None
    raise AssertionError("unreachable")


def _check_optuna_sqlite(path: Path) -> None:
    """Refuse, without writing to it, a file that is not an SQLite database holding Optuna's tables."""
    try:
        with path.open("rb") as file:
            header = file.read(16)
    except OSError as exc:
        raise SearchError(f"cannot read storage {path}: {exc.strerror or exc}") from None
    if header != b"SQLite format 3\x00":
        what = "an empty file" if not header else "not an SQLite database"
        raise SearchError(f"storage {path} is {what}, not an Optuna study database; give the study.db a search wrote")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise SearchError(f"cannot open storage {path}: {exc}") from None
    if not {"studies", "trials", "version_info"} <= tables:
        raise SearchError(f"storage {path} is an SQLite database without Optuna's tables, not an Optuna study database")


def _lost_schema_race(exc: Exception) -> bool:
    """Workers opening a fresh database at once all try to create Optuna's tables; the losers
    see these errors (SQLite, PostgreSQL) and succeed when they open it again."""
    text = str(exc).lower()
    return any(s in text for s in ("already exists", "unique constraint", "duplicate key", "database is locked"))


def _use_wal(storage: RDBStorage) -> None:
    """Write-ahead logging with fsync at checkpoints only: a trial's bookkeeping drops from about
    1.1 s to 0.2 s here (docs/BENCHMARKS.md), readers never block the writer, and the file stays
    consistent through a crash or power loss (the last transactions may be lost, then redone)."""

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    storage.engine.dispose()  # connections opened while creating the tables predate the pragmas


def _scrub(message: str, url: str) -> str:
    """Driver messages can echo the URL; never let a password through."""
    if "://" in url and "@" in url:
        credentials = url.split("://", 1)[1].rpartition("@")[0]
        if ":" in credentials:
            message = message.replace(credentials.split(":", 1)[1], "***")
    return message


def _ensure_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SearchError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK):
        raise SearchError(f"{path.parent} is not writable")


def worker_identity() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    try:  # a zombie (dead, not yet reaped by its parent) still answers kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): trust kill
        return True


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's heartbeat check (RDB storages), without its "experimental" warning, and with
    the reason recorded on each stale trial first (a finished trial takes no more attributes)."""
    storage = storage_of(study)  # RDBStorage, or Optuna's cache around it: both have heartbeats
    if getattr(storage, "get_heartbeat_interval", lambda: None)():
        for stale in stale_trial_ids(study):
            worker = storage.get_trial(stale).user_attrs.get(TrialAttr.WORKER) or {}
            reason = f"worker process {worker.get('pid', '?')} on {worker.get('host', '?')} sent no heartbeat for {6 * HEARTBEAT_SECONDS} s"
            try:
                storage.set_trial_user_attr(stale, TrialAttr.FAILED, reason)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another process failed it first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose worker process on this host is gone, and queue their retries.

    Returns the failed trial numbers. Other hosts' trials are left to the RDB heartbeat.
    """
    host, failed = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(TrialAttr.WORKER) or {}
        if worker.get("host") != host or not isinstance(worker.get("pid"), int) or _pid_alive(worker["pid"]):
            continue
        storage, ident = storage_of(study), trial_id(trial)  # the public Study API cannot fail another process's trial
        try:
            storage.set_trial_user_attr(ident, TrialAttr.FAILED, f"worker process {worker['pid']} died")
            if not storage.set_trial_state_values(ident, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        RETRY(study, storage.get_trial(ident))
        failed.append(trial.number)
        log.warning("trial %d: worker process %d died; failed it and queued a retry", trial.number, worker["pid"])
    return failed
