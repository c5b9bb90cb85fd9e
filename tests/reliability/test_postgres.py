"""Several machines on one study: a real PostgreSQL server on loopback, three worker commands.

Each command has its own ``--out`` (on separate machines they share no lock file), so the study's
exact count rests on the storage alone. The server comes from the ``postgres`` fixture
(conftest.py): skipped with the reason when the server binaries are missing, failed under CI.
"""

from __future__ import annotations

TRIALS = 9


def test_three_workers_share_one_postgresql_study(h, postgres, cost_flags, tmp_path, procs):
    url = postgres.createdb("three")  # a fresh database: the three commands race to create the tables
    out = cost_flags.index("--out")
    runs = []
    for i in range(3):
        flags = list(cost_flags)
        flags[out + 1] = str(tmp_path / f"machine{i}")
        if i == 0:
            flags.append("--progress")  # the progress bar's lines are checked for the password too
        runs.append(tmp_path / f"machine{i}")
        # The third keeps the password out of its command line (ps, shell history): libpq reads PGPASSWORD.
        storage, env = (url, None) if i < 2 else (postgres.url(password=None, db="three"), {"PGPASSWORD": postgres.password})
        procs.append(h.spawn("search", *flags, "--storage", storage, "--study", "pg", "--trials", TRIALS, "--seed", i, logs=tmp_path / "logs", env=env))
    results = [p.finish() for p in procs]
    for result in results:
        assert result.rc == 0 and result.clean(), result.err

    snap = h.snapshot(url, "pg")
    h.assert_whole(snap, TRIALS)
    # The only failures allowed: a trial one worker asked for while another took the last one.
    assert all(t.user_attrs.get("surplus") for t in snap.failed), snap.summary()
    assert len(snap.pids()) == 3, f"all three commands should have run trials: {snap.pids()}"

    # The password is nowhere: not in output, progress lines, files written, or the study record.
    shown = h.cli("show", "--study", "pg", "--storage", url)
    exported = h.cli("export", "--study", "pg", "--storage", url, "--format", "json")
    assert shown.rc == 0 and exported.rc == 0 and "| trial |" in shown.out
    texts = [r.out + r.err for r in (*results, shown, exported)]
    assert "search" in results[0].err  # the progress bar was on
    texts += [path.read_text(errors="replace") for run in runs for path in run.rglob("*") if path.is_file()]
    texts += [repr(snap.user_attrs), *(repr(t.user_attrs) for t in snap.trials)]
    assert not [t for t in texts if postgres.password in t]
    assert "ghostnas:***@127.0.0.1" in (runs[0] / "search.yaml").read_text()


def test_postgresql_errors_are_one_line_without_the_password(h, postgres):
    wrong = h.cli("show", "--study", "pg", "--storage", postgres.url(password="Wr0ng-Pw-x9"))
    missing = h.cli("show", "--study", "nope", "--storage", postgres.url())
    for result in (wrong, missing):
        lines = result.err.strip().splitlines()
        assert result.rc == 2 and len(lines) == 1 and lines[0].startswith("ghostnas: error:"), result.err
        assert "Wr0ng-Pw-x9" not in result.err and postgres.password not in result.err
    assert "password authentication failed" in wrong.err and "***" in wrong.err
    assert "'nope' does not exist" in missing.err


def test_first_opens_of_a_fresh_postgresql_database_at_once(h, postgres, tiny_space, tmp_path):
    url = postgres.createdb("race")
    results = h.open_at_once(url, tmp_path, tiny_space)
    assert [r.rc for r in results] == [0, 0, 0], [r.err[-600:] for r in results]
    assert h.snapshot(url, "race").user_attrs["objectives"] == ["flops", "params"]
