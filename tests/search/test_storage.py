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
