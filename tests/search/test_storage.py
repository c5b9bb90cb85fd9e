from __future__ import annotations

import optuna
import pytest

from search import SearchError, open_storage


def test_reading_never_creates_a_database(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(SearchError, match="no SQLite storage at"):
        open_storage(f"sqlite:///{path}", must_exist=True)
    with pytest.raises(SearchError, match="no journal storage at"):
        open_storage(str(tmp_path / "missing.log"), must_exist=True)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_storage_hides_the_password():
    with pytest.raises(SearchError) as err:
        open_storage("postgresql://ghost:s3cr3t-pw@127.0.0.1:1/nas")
    message = str(err.value)
    assert message.startswith("cannot open storage postgresql://ghost:***@127.0.0.1:1/nas")
    assert "s3cr3t" not in message and "\n" not in message


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "nosuchdb://x/y"])
def test_unusable_urls(url):
    with pytest.raises(SearchError):
        open_storage(url)


def test_journal_paths_and_sqlite_files_open(tmp_path):
    for url in (str(tmp_path / "a.log"), f"journal:{tmp_path / 'b.log'}", f"sqlite:///{tmp_path / 'c.db'}"):
        storage = open_storage(url)
        optuna.create_study(storage=storage, study_name="s")
        assert optuna.get_all_study_names(open_storage(url, must_exist=True)) == ["s"]


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is an empty file, not an Optuna study database"),
        (b"trials: [1, 2\n", "is not an SQLite database, not an Optuna study database"),
        (None, "is an SQLite database without Optuna's tables"),
    ],
    ids=["empty", "text", "other-sqlite"],
)
def test_read_only_opening_refuses_what_is_not_an_optuna_database_and_changes_nothing(tmp_path, content, message):
    import sqlite3

    path = tmp_path / "study.db"
    if content is None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (x)")
    else:
        path.write_bytes(content)
    before = _files(tmp_path)
    with pytest.raises(SearchError, match=message):
        open_storage(f"sqlite:///{path}", read_only=True)
    assert _files(tmp_path) == before  # not turned into an Optuna database, no -wal/-shm left


def test_read_only_opening_reads_a_study_and_leaves_its_folder_as_it_was(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    writer = open_storage(url)
    optuna.create_study(storage=writer, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    writer.engine.dispose()  # the writer's last connection closes: SQLite checkpoints its WAL now, not later
    before = _files(tmp_path)
    reader = open_storage(url, read_only=True)
    assert len(optuna.load_study(study_name="s", storage=reader).trials) == 2
    reader.engine.dispose()  # (SQLite's -wal and -shm exist while a reader of a WAL database is open)
    assert _files(tmp_path) == before
