"""Real processes on real storage: the harness the reliability tests share.

Every test here runs ``cli.py`` (through ``faulty_cli.py``, which injects faults only where a test
asks for them) as separate OS processes, reads the study back from storage with plain Optuna,
and checks the counts the issue asks for: finished trials, failures, duplicate trial numbers.

Trials are "cost-only" (``--objectives flops,params``) unless a test needs training: they build a
real network and count it with fvcore, about 1 s each, so a test can run many of them.

Helpers reach the tests as fixtures (pytest does not put this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from results import TrialAttr

optuna.logging.set_verbosity(optuna.logging.ERROR)

REPO = Path(__file__).resolve().parents[2]
FAULTY_CLI = Path(__file__).with_name("faulty_cli.py")
COST_ONLY = ["--objectives", "flops,params"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Lines that must never reach a user, whatever happened.
FORBIDDEN = ("Traceback", "database is locked", "OperationalError")


@dataclass
class Result:
    rc: int
    out: str
    err: str
    seconds: float

    def clean(self) -> bool:
        return not any(word in self.out + self.err for word in FORBIDDEN)


@dataclass
class Snapshot:
    """A study as storage holds it, with the counts the tests assert on."""

    trials: list[FrozenTrial]
    user_attrs: dict = field(default_factory=dict)

    def count(self, *states: TrialState) -> int:
        return sum(t.state in states for t in self.trials)

    @property
    def finished(self) -> int:
        return self.count(*FINISHED)

    @property
    def failed(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.FAIL]

    @property
    def crashed(self) -> list[FrozenTrial]:
        """Failed trials other than the sampler's repeats (recorded FAIL with ``duplicate_of``, never run)."""
        return [t for t in self.failed if t.user_attrs.get(TrialAttr.DUPLICATE_OF) is None]

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in Counter(t.number for t in self.trials).values())

    def numbers_ok(self) -> bool:
        """Trial numbers are 0..n-1, each once: nothing lost, nothing counted twice."""
        return sorted(t.number for t in self.trials) == list(range(len(self.trials)))

    def pids(self) -> set[int]:
        return {(t.user_attrs.get("worker") or {}).get("pid") for t in self.trials if t.state in FINISHED}

    def checksum(self) -> str:
        rows = [
            [t.number, t.state.name, t.values, t.params, t.user_attrs, t.system_attrs,
             str(t.datetime_start), str(t.datetime_complete)]
            for t in self.trials
        ]  # fmt: skip
        text = json.dumps([rows, self.user_attrs], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def summary(self) -> str:
        return ", ".join(f"{t.number}:{t.state.name}{'(' + str(t.user_attrs.get('failed')) + ')' if t.user_attrs.get('failed') else ''}" for t in self.trials)


def _storage(url: str):
    if url.startswith("journal:"):
        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return RDBStorage(url)


def storage_exists(url: str) -> bool:
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        return path.is_file() and path.stat().st_size > 0
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).is_file()
    return True


def snapshot(url: str, study: str) -> Snapshot:
    loaded = optuna.load_study(study_name=study, storage=_storage(url))
    return Snapshot(trials=loaded.get_trials(deepcopy=True), user_attrs=dict(loaded.user_attrs))


def try_snapshot(url: str, study: str) -> Snapshot | None:
    """The study, or None while it does not exist yet (a worker is still starting)."""
    if not storage_exists(url):
        return None
    try:
        return snapshot(url, study)
    except (KeyError, ValueError, optuna.exceptions.StorageInternalError):
        return None


def wait_for(what: str, predicate, *, timeout: float = 120.0, interval: float = 0.2, procs=()):
    """Poll ``predicate`` until it returns something truthy; fail (and show why) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"waiting for {what}: process {proc.args[2:]} exited early with {proc.returncode}:\n{proc.read_err()}")
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_hang(logs: Path, procs=(), timeout: float = 180.0) -> int:
    """The pid of the first process whose evaluation hangs (``hang`` fault), once it does."""
    def marker():
        found = sorted(logs.glob("hang-[0-9]*"))
        return int(found[0].read_text()) if found and found[0].read_text() else None

    return wait_for("a hanging trial", marker, timeout=timeout, procs=procs)


def running_trial(url: str, study: str, *, after: int = 0) -> FrozenTrial | None:
    """A RUNNING trial that is being evaluated (its worker recorded itself and its config)."""
    snap = try_snapshot(url, study)
    if snap is None or snap.finished < after:
        return None
    for trial in snap.trials:
        if trial.state == TrialState.RUNNING and "config" in trial.user_attrs:
            return trial
    return None


class Proc(subprocess.Popen):
    """A CLI process whose output goes to files (pipes could fill up and block it)."""

    def read_err(self) -> str:
        return Path(self.err_path).read_text()

    def read_out(self) -> str:
        return Path(self.out_path).read_text()

    def finish(self, timeout: float = 300) -> Result:
        start = time.monotonic()
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            pytest.fail(f"{self.args[2:]} did not end within {timeout} s:\n{self.read_err()}")
        return Result(self.returncode, self.read_out(), self.read_err(), time.monotonic() - start)


def _env(faults: str | None, fault_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GHOSTNAS_FAULT")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="120")
    if faults:
        env["GHOSTNAS_FAULTS"] = faults
    if fault_dir:
        env["GHOSTNAS_FAULT_DIR"] = str(fault_dir)
    return env


def cli(*args: str, faults: str | None = None, timeout: float = 300, cwd: Path | None = None, fault_dir: Path | None = None) -> Result:
    """Run the command line to the end (``fault_dir``: where faults leave their markers)."""
    start = time.monotonic()
    if fault_dir:
        fault_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, str(FAULTY_CLI), *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env=_env(faults, fault_dir), cwd=cwd or REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def spawn(*args: str, logs: Path, faults: str | None = None, new_session: bool = False, env: dict | None = None) -> Proc:
    """Start the command line; ``new_session`` gives it its own process group (for Ctrl-C).

    Its output goes to files in ``logs``, which is also where a ``hang`` fault leaves its marker.
    """
    logs.mkdir(parents=True, exist_ok=True)
    n = len(list(logs.glob("*.err")))
    out, err = logs / f"{n}.out", logs / f"{n}.err"
    with open(out, "w") as out_file, open(err, "w") as err_file:
        proc = Proc(
            [sys.executable, str(FAULTY_CLI), *map(str, args)], stdout=out_file, stderr=err_file,
            stdin=subprocess.DEVNULL, env={**_env(faults, logs), **(env or {})}, cwd=REPO, start_new_session=new_session,
        )  # fmt: skip
    proc.out_path, proc.err_path = out, err
    return proc


@pytest.fixture
def procs():
    """Processes a test starts; any still alive when it ends are killed (by their own pid)."""
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL) if _own_group(proc) else proc.kill()
            proc.wait()


def _own_group(proc: Proc) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


@pytest.fixture
def cost_flags(fast_flags) -> list[str]:
    """``fast_flags`` (tiny space, 300 digits, 16x16) with cost-only objectives: ~1 s a trial."""
    return [*fast_flags, *COST_ONLY]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def journal_url(path: Path) -> str:
    return f"journal:{path}"


def storage_url(kind: str, tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "shared.db") if kind == "sqlite" else journal_url(tmp_path / "shared.log")


# -- a real PostgreSQL server on loopback -------------------------------------------------------

PG_USER, PG_PASSWORD, PG_DB = "ghostnas", "pg-S3cret-7Qx", "ghostnas"


@dataclass(frozen=True)
class Postgres:
    port: int
    bindir: Path
    root: Path
    password: str = PG_PASSWORD

    def url(self, *, password: str | None = PG_PASSWORD, db: str = PG_DB) -> str:
        """The URL of database ``db``; ``password=None`` leaves it out (libpq then reads PGPASSWORD)."""
        credentials = PG_USER if password is None else f"{PG_USER}:{password}"
        return f"postgresql://{credentials}@127.0.0.1:{self.port}/{db}"

    def createdb(self, name: str) -> str:
        _pg_run(self.bindir / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, name, as_user=None)
        return self.url(db=name)


def pg_bindir() -> Path | None:
    """The newest Debian PostgreSQL server binaries, or any on PATH."""
    for bindir in sorted(glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(bindir) / "initdb").is_file() and (Path(bindir) / "pg_ctl").is_file():
            return Path(bindir)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return Path(initdb).parent if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent else None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI=true, so the PostgreSQL tests must run (.ci/run installs the server)")
    pytest.skip(reason)


def _server_user() -> pwd.struct_passwd | None:
    """initdb refuses to run as root: as root, run the server as 'postgres' (Debian's) or 'nobody'."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    _unavailable("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def _pg_run(*cmd, as_user: pwd.struct_passwd | None, timeout: float = 120) -> None:
    kwargs = {"user": as_user.pw_uid, "group": as_user.pw_gid, "extra_groups": []} if as_user else {}
    env = {**os.environ, "PGPASSWORD": PG_PASSWORD, "LC_ALL": "C"}
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env, cwd="/", timeout=timeout,
        stdin=subprocess.DEVNULL, **kwargs,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{Path(str(cmd[0])).name} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of our own: initdb in a temporary directory, pg_ctl start on a free
    loopback port with password (scram) authentication, then a database for the tests."""
    bindir = pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin; "
                     "install them with: apt-get install postgresql")  # fmt: skip
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's driver for postgresql:// URLs)
    except ImportError:
        _unavailable("the PostgreSQL driver psycopg is not installed: pip install -e '.[dev]'")
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="ghostnas-pg-"))  # not under pytest's 0700 tmp: 'postgres' must reach it
    data, pwfile = root / "data", root / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    if user:
        for path in (root, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    started = False
    try:
        _pg_run(
            bindir / "initdb", "-D", data, "-U", PG_USER, f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
            "--auth-local=trust", "-E", "UTF8", "--no-sync", as_user=user,
        )  # fmt: skip
        for attempt in range(3):
            port = _free_port()
            options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            try:
                _pg_run(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-o", options, "-w", "-t", "60", "start", as_user=user)
                started = True
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        server = Postgres(port=port, bindir=bindir, root=root)
        server.createdb(PG_DB)
        yield server
    except RuntimeError as exc:
        log = root / "server.log"
        pytest.fail(f"could not start PostgreSQL: {exc}\n{log.read_text() if log.is_file() else ''}")
    finally:
        if started:
            with contextlib.suppress(Exception):
                _pg_run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", as_user=user)
        shutil.rmtree(root, ignore_errors=True)


# -- what the tests saw, for docs/RELIABILITY.md ---------------------------------------------------
#
#   GHOSTNAS_RELIABILITY_REPORT=/tmp/reliability.md pytest tests/reliability
#
# writes the counts each test asserted and the one line each bad input got, as Markdown tables.

_SEEN: dict[str, list[dict]] = {"counts": [], "bad_input": []}


def _current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::", 1)[-1]


def assert_whole(snap: Snapshot, trials: int) -> None:
    """Exactly ``trials`` finished, numbers 0..n-1 once each (no duplicates), none left RUNNING."""
    _SEEN["counts"].append({
        "test": _current_test(), "expected": trials, "found": snap.finished, "duplicates": snap.duplicates,
        "failed": Counter(re.split(r":| \{", re.sub(r"\d+", "N", str(t.user_attrs.get("failed", "?"))))[0] for t in snap.failed),
    })  # fmt: skip
    assert snap.finished == trials, snap.summary()
    assert snap.duplicates == 0 and snap.numbers_ok(), snap.summary()
    assert snap.count(TrialState.RUNNING) == 0, snap.summary()


def record_bad_input(result: Result) -> None:
    _SEEN["bad_input"].append({"case": _current_test().split("[", 1)[-1].rstrip("]"), "rc": result.rc, "line": result.err.strip()})


def pytest_sessionfinish(session, exitstatus) -> None:
    path = os.environ.get("GHOSTNAS_RELIABILITY_REPORT")
    if not path or not any(_SEEN.values()):
        return
    lines = ["| test | trials expected | finished found | duplicates | failed (reason: count) |", "|---|---|---|---|---|"]
    for row in _SEEN["counts"]:
        failed = ", ".join(f"{reason}: {n}" for reason, n in sorted(row["failed"].items())) or "none"
        lines.append(f"| `{row['test']}` | {row['expected']} | {row['found']} | {row['duplicates']} | {failed} |")
    lines += ["", "| bad input | exit | the one line on stderr |", "|---|---|---|"]
    for row in _SEEN["bad_input"]:
        line = re.sub(re.escape(tempfile.gettempdir()) + r"/pytest-of-[^/]+/pytest-\d+/[^/]+/", "", row["line"]).replace("|", "\\|")
        lines.append(f"| `{row['case']}` | {row['rc']} | {line} |")
    Path(path).write_text("\n".join(lines) + "\n")


# -- the helpers, as fixtures ---------------------------------------------------------------------


@dataclass(frozen=True)
class Harness:
    cli = staticmethod(cli)
    spawn = staticmethod(spawn)
    snapshot = staticmethod(snapshot)
    try_snapshot = staticmethod(try_snapshot)
    wait_for = staticmethod(wait_for)
    wait_hang = staticmethod(wait_hang)
    open_at_once = staticmethod(lambda *a, **k: open_at_once(*a, **k))
    running_trial = staticmethod(running_trial)
    assert_whole = staticmethod(assert_whole)
    record_bad_input = staticmethod(record_bad_input)
    storage_url = staticmethod(storage_url)
    sqlite_url = staticmethod(sqlite_url)
    journal_url = staticmethod(journal_url)


@pytest.fixture(scope="session")
def h() -> Harness:
    return Harness()


# -- first opens of a fresh storage, all at once ---------------------------------------------------

_OPEN_AT_ONCE = """
import pathlib, sys, time
sys.path.insert(0, sys.argv[4])
from search import SearchSettings, create_or_load_study
from spaces import load_space
url, out, space = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
settings = SearchSettings(study="race", storage=url, out=out, space=space, objectives="flops,params")
space = load_space(settings.space)
(out / f"ready-{sys.argv[5]}").touch()
while not (out / "go").exists():
    time.sleep(0.002)
create_or_load_study(settings, space)
"""


def open_at_once(url: str, tmp_path: Path, space: Path, n: int = 3) -> list[Result]:
    """``n`` processes create-or-load one study on a fresh storage at the same instant."""
    out = tmp_path / "race"
    out.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT_ONCE, url, str(out), str(space), str(REPO), str(i)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(None), cwd=REPO,
        )  # fmt: skip
        for i in range(n)
    ]
    try:
        wait_for("the racers to be ready", lambda: len(list(out.glob("ready-*"))) == n, timeout=180)
        (out / "go").touch()
        return [Result(p.wait(120), *p.communicate(), 0.0) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# -- one small finished study, shared -------------------------------------------------------------


@dataclass(frozen=True)
class SmallStudy:
    root: Path
    url: str
    out: Path
    name: str = "kept"


@pytest.fixture(scope="session")
def small_study(tiny_space, tmp_path_factory) -> SmallStudy:
    """A real two-trial cost-only search (SQLite), made once; tests must only read it."""
    root = tmp_path_factory.mktemp("small-study")
    study = SmallStudy(root=root, url=sqlite_url(root / "study.db"), out=root / "run")
    result = cli(
        "search", "--space", tiny_space, "--storage", study.url, "--study", study.name, "--out", study.out,
        *COST_ONLY, "--subset", "300", "--input-size", "16", "--no-baselines", "--no-progress", "--trials", "2",
    )  # fmt: skip
    assert result.rc == 0, result.err
    assert snapshot(study.url, study.name).finished == 2
    return study
