"""Confirm a study's front: retrain its members with more training seeds before trusting it.

One short proxy run's accuracy carries training-seed noise as large as the differences between
the models it ranks (0.5-3.7 points sd at the CPU benchmark scale, against a 2.3-point spread
between models; docs/BENCHMARKS.md). A front picked on single runs is full of lucky draws: in the
search-quality recheck, none of the eight dominations of a baseline that the searches recorded
held over four seeds. ``confirm_study`` retrains the front members and the baselines with training seeds
``seed + 1 ... seed + runs - 1`` on the study's own split and budget (its ``proxy`` record),
stores every run in the study (``accuracy_runs.<trial>``, docs/STUDY_FORMAT.md), where
``results.load_trials`` turns a trial's accuracy into the mean over its runs, and recomputes the
front. A member whose mean demotes it lets in trials it used to dominate, which still have one
run: the loop repeats until every model on the front has all its runs.

Each run is stored as soon as it ends, so an interrupted command resumes where it stopped. Run
one ``confirm`` per study at a time: two would train the same runs and the later write wins.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from evaluators import check_device
from evaluators.training import TrainingFailed
from results import ACCURACY_RUNS_KEY, StudyAttr, load_trials, open_study, pareto_front
from search._objectives import SearchError
from search._proxy import ProxyContext
from search._stop import StopRequest
from search._storage import default_storage_url, open_storage
from spaces import GhostNASError, GhostNetConfig, check_int

__all__ = ["ConfirmSettings", "ConfirmSummary", "confirm_study"]

log = logging.getLogger(__name__)

MAX_RUNS = 100  # seeds per model; the spread of a mean is settled long before


@dataclass(frozen=True)
class ConfirmSettings:
    study: str
    storage: str | None = None  # None: runs/<study>/study.db, the search's default
    runs: int = 3  # training runs per confirmed model, the search's own included
    max_models: int | None = None  # stop after confirming this many models (None: until the front is)
    device: str | None = None  # None: the search's
    dataset: str | None = None  # None: the search's; data moved since must still match its proxy record
    data_root: Path | None = None
    out: Path | None = None  # where the front's files are rewritten; None: the search's output directory
    progress: bool = True

    def __post_init__(self) -> None:
        check_int("--runs", self.runs, low=2, high=MAX_RUNS, why="(the search's run included)", error=SearchError)
        if self.max_models is not None:  # no upper bound needed: confirming stops with the front
            check_int("--max-models", self.max_models, low=1, error=SearchError)
        if self.device is not None:
            try:
                check_device(self.device)
            except GhostNASError as exc:
                raise SearchError(str(exc)) from None
        for name in ("data_root", "out"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage_url(Path("runs") / self.study)


@dataclass(frozen=True)
class ConfirmSummary:
    confirmed: int  # models that have all their runs
    trained: int  # runs this command trained (failed ones included)
    failed: int  # of those, runs that failed
    complete: bool  # every model on the front has all its runs
    interrupted: bool
    out_dir: Path  # where the front's files belong: --out, else the search's output directory
    seconds: float


def confirm_study(settings: ConfirmSettings) -> ConfirmSummary:
    """Retrain the front of ``settings.study`` until every member's accuracy is a mean of
    ``settings.runs`` runs (see the module notes)."""
    start = time.monotonic()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one log line per run is ours
    study, out_dir, proxy = _open(settings)
    stop = StopRequest()
    seeds = [proxy.seed + k for k in range(1, settings.runs)]
    started: set[int] = set()
    trained = failed = 0
    complete = interrupted = False
    bar = tqdm(total=0, desc="confirm", unit="run", file=sys.stderr, disable=not settings.progress, dynamic_ncols=True)
    try:
        # Log lines go above the bar instead of through it.
        with stop.catching(signal.SIGINT, signal.SIGTERM), logging_redirect_tqdm() if settings.progress else contextlib.nullcontext():
            while True:
                todo = _unconfirmed(study, seeds)
                if not todo:
                    complete = True
                    break
                if settings.max_models is not None:
                    room = max(0, settings.max_models - len(started))
                    todo = [item for item in todo if item[0] in started] + [item for item in todo if item[0] not in started][:room]
                    if not todo:
                        break
                bar.total += sum(len(missing) for _, _, missing in todo)
                bar.refresh()
                for number, config, missing in todo:
                    started.add(number)
                    for run_seed in missing:
                        stop.check()
                        bar.set_postfix_str(f"trial {number} seed {run_seed}")
                        ok = _train_run(proxy, study, number, config, run_seed, stop=stop)
                        trained += 1
                        failed += not ok
                        bar.update()
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: the runs finished so far are stored; run the same command to go on")
    finally:
        bar.close()
    return ConfirmSummary(
        confirmed=_confirmed_count(study, seeds), trained=trained, failed=failed, complete=complete,
        interrupted=interrupted, out_dir=out_dir, seconds=time.monotonic() - start,
    )  # fmt: skip


def _open(settings: ConfirmSettings) -> tuple[optuna.Study, Path, ProxyContext]:
    """The study, its output directory and how it measured accuracy: rebuilt from its recorded
    settings (the same data, split, training seed and budget), checked against its proxy record."""
    study = open_study(storage=open_storage(settings.storage_url, must_exist=True), study_name=settings.study)
    if "accuracy" not in (study.user_attrs.get(StudyAttr.OBJECTIVES) or []):
        raise SearchError(f"study {settings.study!r} does not optimise accuracy: there is nothing to confirm")
    if (study.user_attrs.get(StudyAttr.PROXY) or {}).get("accuracy_estimator"):
        # A prediction has no training-seed noise to average away, and a mean of it with trained
        # runs would mix two scales (the ridge predicts the ground truth's, not the proxy's).
        raise SearchError(
            f"study {settings.study!r} predicted its accuracies (--accuracy-estimator ridge): there are no training runs to confirm; "
            "train the members you consider with `ghostnas train --study ... --member N`"
        )
    search_settings, proxy = ProxyContext.for_study(
        study, study=settings.study, storage=settings.storage_url, workers=1, progress=False, download=False,
        device=settings.device, dataset=settings.dataset, data_root=settings.data_root, out=settings.out,
    )  # fmt: skip
    return study, search_settings.out_dir, proxy


def _unconfirmed(study: Any, seeds: list[int]) -> list[tuple[int, GhostNetConfig, list[int]]]:
    """The front members and baselines still missing runs, front first (best accuracy first):
    ``(trial number, config, seeds to train)``."""
    frame = load_trials(study)
    front = pareto_front(frame)
    baselines = frame[frame["baseline"].notna() & frame["feasible"] & frame["accuracy"].notna()]
    attrs = study.user_attrs
    todo, seen = [], set()
    for row in pd.concat([front, baselines]).itertuples(index=False):
        if row.number in seen or not row.config:
            continue
        seen.add(row.number)
        done = {run.get("seed") for run in _runs(attrs, row.number)}
        missing = [s for s in seeds if s not in done]
        if missing:
            todo.append((int(row.number), GhostNetConfig.from_dict(row.config), missing))
    return todo


def _confirmed_count(study: Any, seeds: list[int]) -> int:
    attrs = study.user_attrs
    return sum(
        key.startswith(ACCURACY_RUNS_KEY) and set(seeds) <= {run.get("seed") for run in _runs(attrs, key[len(ACCURACY_RUNS_KEY):])}
        for key in attrs
    )


def _runs(attrs: dict[str, Any], number: Any) -> list[dict[str, Any]]:
    runs = attrs.get(f"{ACCURACY_RUNS_KEY}{number}")
    return [run for run in runs if isinstance(run, dict)] if isinstance(runs, list) else []


def _train_run(proxy: ProxyContext, study: Any, number: int, config: GhostNetConfig, seed: int, *, stop: StopRequest) -> bool:
    """Train one more run of trial ``number`` and store it; False if the run failed (stored too,
    so it is not retried: a config that diverges with one seed is not confirmed by retrying)."""
    run: dict[str, Any] = {"seed": seed}
    try:
        run["accuracy"] = float(proxy.train(config, seed=seed, check_stop=stop.check).accuracy)
    except TrainingFailed as exc:
        run["failed"] = exc.reason
    except (torch.OutOfMemoryError, MemoryError):
        run["failed"] = "out of memory"
    if "failed" in run:
        log.warning("trial %d, seed %d: run failed: %s", number, seed, run["failed"])
    key = f"{ACCURACY_RUNS_KEY}{number}"
    runs = [r for r in _runs(study.user_attrs, number) if r.get("seed") != seed]
    study.set_user_attr(key, [*runs, run])
    return "accuracy" in run
