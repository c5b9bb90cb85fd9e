"""Storage cost of one trial's bookkeeping (40 parameters, 10 user attrs, tell), per storage.

    .venv/bin/python bench/storage_bookkeeping.py [--trials 5]

Compares SQLite as Optuna opens it by default (rollback journal, fsync on every commit) with
SQLite as search.open_storage opens it (WAL, synchronous=NORMAL) and the journal file storage.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from search import open_storage


def seconds_per_trial(storage: optuna.storages.BaseStorage, trials: int) -> float:
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        trial = study.ask()
        for j in range(40):
            trial.suggest_int(f"p{j}", 0, 10)
        for j in range(10):
            trial.set_user_attr(f"a{j}", {"x": j})
        study.tell(trial, [0.5, 1.0])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            "SQLite, Optuna's defaults": optuna.storages.RDBStorage(f"sqlite:///{Path(tmp) / 'plain.db'}"),
            "SQLite, WAL (open_storage)": open_storage(f"sqlite:///{Path(tmp) / 'wal.db'}"),
            "journal file (open_storage)": open_storage(str(Path(tmp) / "journal.log")),
        }
        print("| storage | median s per trial |\n|---|---:|")
        for name, storage in rows.items():
            print(f"| {name} | {seconds_per_trial(storage, args.trials):.3f} |")


if __name__ == "__main__":
    main()
