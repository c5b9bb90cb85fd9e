"""The search loop: sample a config, score it cheapest-first, record everything in the study.

One worker runs trials one at a time through ``Study.optimize(n_trials=1)`` (so Optuna's
heartbeat and failure bookkeeping apply to each), re-checking before every trial how many
models are trained, so that ``--trials`` is a target for the whole study: a resumed or parallel
search tops up to it instead of adding to it. Workers on one machine take a file lock around that
check and the sampling of the next trial, so together they never overshoot the target.

``--trials`` counts trained models: finished trials that passed every limit. A sample a limit
rejects is recorded (with its reason and constraints, for the sampler) but does not count, nor
does a sample whose config the study already holds (recorded FAIL as ``duplicate_of`` the
earlier trial, never evaluated again); past ``NOT_TRAINED_PER_TRIAL`` of those per model asked
for, the search stops and says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import multiprocessing
import signal
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from filelock import FileLock
from optuna.trial import Trial, TrialState
from tqdm.contrib.logging import logging_redirect_tqdm

from evaluators.evaluate import Evaluator
from evaluators.flops import count_cost
from results import FORMAT_VERSION, OBJECTIVES, UNMEASURED, StudyAttr, TrialAttr
from search._early_stop import EarlyStopping, Peer
from search._latency import bind_latency, latency_source
from search._objectives import SearchError, human
from search._optuna import enqueued_params
from search._prefilter import prefilter
from search._progress import Progress, trained
from search._proxy import ProxyContext, check_record
from search._record import TrialFailed, fail, failure_reason, record_evaluation
from search._samplers import make_sampler
from search._settings import SearchSettings
from search._stop import StopRequest
from search._storage import fail_dead_local_trials, fail_stale_trials, open_storage, worker_identity
from spaces import ConfigError, Choice, Dimension, Fixed, GhostNetConfig, IntRange, SearchSpace, load_space, reference, reference_names

__all__ = ["SearchSummary", "create_or_load_study", "run_search"]

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Consecutive failed trials after which a worker gives up: something is wrong with every trial
# (the data, the device), not with one sampled architecture.
MAX_CONSECUTIVE_FAILURES = 5
# Samples not trained (rejected by a limit, or a config the study already holds) per model asked
# for, past which a search stops: the limits (or an exhausted space) leave nearly nothing to train.
NOT_TRAINED_PER_TRIAL = 20


@dataclass(frozen=True)
class SearchSummary:
    study_name: str
    storage: str
    finished: int  # trained models (what --trials counts)
    rejected: int  # samples a limit rejected, never trained
    failed: int
    prefiltered: int  # candidates --prefilter scored and did not train
    interrupted: bool
    timed_out: bool
    seconds: float


# -- the study ------------------------------------------------------------------------------------


def create_or_load_study(
    settings: SearchSettings, space: SearchSpace, *, seed_offset: int = 0, proxy: dict[str, Any] | None = None
) -> optuna.Study:
    """The study named in ``settings``, created on first use; refuses to resume it differently.

    ``proxy`` describes the accuracy measurement (data, split, training budget, input size); a
    study resumed with another one would rank accuracies that were measured differently.
    """
    storage = open_storage(settings.storage_url)
    sampler = make_sampler(settings.sampler, seed=settings.seed + seed_offset, trials=settings.trials)
    directions = [OBJECTIVES[o] for o in settings.objectives]
    study = optuna.create_study(
        storage=storage, study_name=settings.study, directions=directions, sampler=sampler, load_if_exists=True
    )
    resumed = len(study.get_trials(deepcopy=False))
    if resumed:  # a sampler seeded as before would replay the study's first suggestions
        study.sampler = make_sampler(settings.sampler, seed=resumed_seed(settings.seed + seed_offset, resumed), trials=settings.trials)
    attrs = study.user_attrs
    if StudyAttr.OBJECTIVES not in attrs:
        study.set_user_attr(StudyAttr.VERSION, FORMAT_VERSION)
        study.set_user_attr(StudyAttr.LIMITS, settings.limits.to_dict())
        study.set_user_attr(StudyAttr.SETTINGS, settings.to_dict())
        study.set_user_attr(StudyAttr.SPACE, _space_dict(space))
        if proxy is not None:
            study.set_user_attr(StudyAttr.PROXY, proxy)
        # Last: a worker starting at the same moment takes "objectives" to mean the record is whole.
        study.set_user_attr(StudyAttr.OBJECTIVES, list(settings.objectives))
        return study
    # The sampler's history and the front are only meaningful under one set of objectives and
    # limits: resuming with others would silently mix incomparable trials.
    if list(attrs[StudyAttr.OBJECTIVES]) != list(settings.objectives):
        raise SearchError(
            f"study {settings.study!r} optimises {','.join(attrs[StudyAttr.OBJECTIVES])}; "
            f"resume it with the same --objectives or choose a new --study"
        )
    if attrs.get(StudyAttr.LIMITS) != settings.limits.to_dict():
        raise SearchError(f"study {settings.study!r} was created with limits {attrs.get(StudyAttr.LIMITS)}; resume it with the same limits")
    if attrs.get(StudyAttr.SPACE) != _space_dict(space):
        raise SearchError(f"study {settings.study!r} was created with another search space; resume it with the same --space")
    if proxy is not None:
        check_record(settings.study, attrs.get(StudyAttr.PROXY), proxy)
    return study


def resolve_accuracy_estimator(settings: SearchSettings) -> SearchSettings:
    """``settings`` with --accuracy-estimator set: as given; if not, as the study recorded when it
    exists (a study scored one way is resumed that way: its front would mix two scales), else
    the settings' default for a new study (the ridge on CIFAR-10)."""
    if settings.accuracy_estimator is not None:
        return settings
    attrs: dict[str, Any] = {}
    try:  # only a storage that exists already can hold the study (a bad URL is reported when it is created)
        storage = open_storage(settings.storage_url, must_exist=True)
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(settings.study))
    except (SearchError, KeyError):
        pass
    if StudyAttr.OBJECTIVES in attrs:  # the study's record is whole
        estimator = "ridge" if (attrs.get(StudyAttr.PROXY) or {}).get("accuracy_estimator") else "train"
    else:
        estimator = settings.default_accuracy_estimator
        if estimator == "ridge":
            log.info("accuracy: predicted by the CIFAR-10 ridge, nothing trained (the default on cifar10; --accuracy-estimator train trains every trial)")
    return dataclasses.replace(settings, accuracy_estimator=estimator)


def resumed_seed(seed: int, trials: int) -> int:
    """The sampler seed of a command resuming a study that holds ``trials`` trials: fixed by the
    seed and the study's state, and different from the seed of every earlier command on it."""
    return int(np.random.SeedSequence([seed, trials]).generate_state(1)[0])


def _not_trained_stop(trials: list[optuna.trial.FrozenTrial], target: int) -> str | None:
    """Why the search must stop because nearly every sample goes untrained, or None."""
    # A reason names its limit first ("flops 3.2M > max 3M"); duplicates are FAIL, unrun.
    reasons = [str(t.user_attrs[TrialAttr.REJECTED]) for t in trials if t.state in FINISHED and t.user_attrs.get(TrialAttr.REJECTED)]
    rejected = Counter(reason.split(" ")[0] for reason in reasons)
    duplicates = sum(t.user_attrs.get(TrialAttr.DUPLICATE_OF) is not None for t in trials)
    if len(reasons) + duplicates < NOT_TRAINED_PER_TRIAL * target:
        return None
    done = f"{sum(trained(t) for t in trials)} of {target} models trained"
    if duplicates > len(reasons):
        return (
            f"the sampler keeps proposing configs the study already holds ({duplicates} duplicates, {done}): "
            "the search space is nearly exhausted; widen it (--space)"
        )
    name, count = rejected.most_common(1)[0]
    flag = {"flops": "--max-flops", "params": "--max-params", "latency_ms": "--max-latency-ms"}.get(name, name)
    return (
        f"the limits reject nearly every sample ({len(reasons)} rejected, {done}); {name} rejected most "
        f"({count}): loosen {flag} or narrow the search space"
    )


def _space_dict(space: SearchSpace) -> dict[str, Any]:
    """The space as plain data, for the study's record and the resume check."""
    def dim(d: Dimension) -> Any:
        if isinstance(d, Fixed):
            return d.value
        if isinstance(d, Choice):
            return {"choices": list(d.values)}
        return {"low": d.low, "high": d.high, "step": d.step}

    # The Ghost-family fields (issue 19) are recorded only where they differ from v1's, so the
    # record of a v1 space, and so the resume check of studies made before them, is unchanged.
    family = {k: dim(getattr(space, k)) for k, v1 in (("module", "ghostnet"), ("dw_dilation", 1)) if getattr(space, k) != Fixed(v1)}
    return {
        "width": dim(space.width), "ratio": dim(space.ratio), "dw_size": dim(space.dw_size), "head": space.head, **family,
        "stages": [
            {"stride": s.stride, **{k: dim(getattr(s, k)) for k in ("depth", "kernel", "exp", "out", "se")}, **({"block": dim(s.block)} if s.block != Fixed("ghost") else {})}
            for s in space.stages
        ],
    }


def enqueue_baselines(
    study: optuna.Study, settings: SearchSettings, space: SearchSpace, *, num_classes: int, input_size: int
) -> list[str]:
    """Queue the reference family that fits the FLOPs/params limits, once per study."""
    existing = {t.user_attrs.get(TrialAttr.BASELINE) for t in study.get_trials(deepcopy=False)}
    queued = []
    for name in reference_names():
        if name in existing:
            continue
        config = reference(name, preset=settings.preset, num_classes=num_classes, input_size=input_size)
        try:
            params = space.to_params(config)
        except ConfigError as exc:
            log.info("baseline %s is not in the search space (%s); skipped", name, exc)
            continue
        cost = count_cost(config)
        if settings.limits.violation("flops", cost.flops) > 0 or settings.limits.violation("params", cost.params) > 0:
            log.info("baseline %s breaks the limits (%s FLOPs, %s params); skipped", name, human(cost.flops), human(cost.params))
            continue
        study.enqueue_trial(params, user_attrs={TrialAttr.BASELINE: name}, skip_if_exists=True)
        queued.append(name)
    return queued


# -- one worker -----------------------------------------------------------------------------------


class _Worker:
    def __init__(self, settings: SearchSettings, *, index: int = 0, stop: StopRequest | None = None) -> None:
        self.settings = settings
        self.stop = stop or StopRequest()
        self.space = load_space(settings.space)
        proxy = ProxyContext.from_settings(settings)
        # Timed by a probe or predicted by a --latency-model file (checked before the study is touched).
        probe, latency_model = latency_source(settings, input_size=proxy.input_size)
        self.early_stopping = EarlyStopping(eta=settings.rung_ratio) if settings.early_stopping else None
        # Validation accuracy after each epoch is measured only where early stopping can act on it:
        # at the default 2 epochs there is no rung, and the epoch-1 pass cost 11-13% of a default trial.
        self._rungs = self.early_stopping.rungs(proxy.train_settings.epochs) if self.early_stopping and proxy.accuracy_model is None else []
        self.study = create_or_load_study(settings, self.space, seed_offset=index, proxy=proxy.record)
        self.proxy = proxy.on_study(self.study)
        data = self.proxy.data if "accuracy" in settings.objectives else None
        like = reference("ghostnet-1.0x", preset=settings.preset, num_classes=proxy.num_classes, input_size=proxy.input_size) if probe else None
        calibration = bind_latency(self.study, probe=probe, model=latency_model, like=like)
        self.evaluator = Evaluator(
            probe=probe, calibration=calibration, latency_model=latency_model, data=data,
            train_settings=self.proxy.train_settings, accuracy_model=self.proxy.accuracy_model,
        )  # fmt: skip

    # The objective Optuna calls; it releases the ask-lock as soon as the trial exists.
    def objective(self, trial: Trial, *, lock: FileLock, target: int) -> list[float]:
        lock.release()
        self._check_surplus(trial, target)
        return self.run_trial(trial)

    def _check_surplus(self, trial: Trial, target: int) -> None:
        """Fail ``trial`` unrun if ``target`` trials numbered before it are finished or under way.

        Workers that share no ask-lock (other machines, other ``--out``) can both see one trial
        missing and both ask. Trial numbers are handed out one at a time by the storage, so the
        later-numbered of the two finds the other one ahead of it here and steps back: the
        study never finishes more than ``target`` trials. (If the one ahead fails later, the
        workers' loop runs another trial.)
        """
        trials = self.study.get_trials(deepcopy=False)
        ahead = sum(t.number < trial.number and (trained(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)) for t in trials)
        if ahead < target:
            return
        trial.set_user_attr(TrialAttr.WORKER, worker_identity())
        trial.set_user_attr(TrialAttr.SURPLUS, True)
        trial.set_user_attr(TrialAttr.FAILED, f"not run: {ahead} trials were already finished or running (target {target})")
        log.info("trial %d not run: another worker took the last of the %d trials", trial.number, target)
        fixed = enqueued_params(next(t for t in trials if t.number == trial.number))
        if fixed:  # an enqueued config (a baseline, a retry): keep it queued for a later, larger target
            self.study.enqueue_trial(fixed, user_attrs={k: v for k, v in trial.user_attrs.items() if k in (TrialAttr.BASELINE, TrialAttr.PREFILTER)})
        raise TrialFailed("surplus")

    def run_trial(self, trial: Trial) -> list[float]:
        settings = self.settings
        trial.set_user_attr(TrialAttr.WORKER, worker_identity())
        for key in TrialAttr.REASONS:  # a retried trial inherits its parent's attrs
            if key in trial.user_attrs:
                trial.set_user_attr(key, None)
        config = self._propose(trial)
        if settings.prefilter > 1 and not (trial.user_attrs.get(TrialAttr.BASELINE) or trial.user_attrs.get(TrialAttr.PREFILTER)):
            return prefilter(
                trial, config, study=self.study, settings=settings, evaluator=self.evaluator, data=self.proxy.data[0],
                limit_reason=self._limit_reason, propose=self._propose,
            )

        epoch_accuracy: list[float] = []
        stopped: list[str] = []

        def on_epoch(epoch: int, accuracy: float) -> bool:
            epoch_accuracy.append(float(accuracy))
            trial.set_user_attr(TrialAttr.EPOCH_ACCURACY, list(epoch_accuracy))
            if epoch not in self._rungs:  # reading every finished trial's attrs costs; only rungs need them
                return True
            reason = self.early_stopping.check(
                epoch=epoch, epochs=self.proxy.train_settings.epochs, accuracy=accuracy,
                flops=flops_seen[0], peers=self._peers(),
            )
            if reason:
                stopped.append(reason)
            return reason is None

        flops_seen = [math.inf]

        def gate(scores: dict[str, float]) -> str | None:
            if "flops" in scores:
                flops_seen[0] = scores["flops"]
            return self._limit_reason(scores)

        try:
            evaluation = self.evaluator.evaluate(
                config, gate=gate, on_epoch=on_epoch if self._rungs else None, check_stop=self.stop.check
            )
        except Exception as exc:  # one trial fails (diverged, out of memory, a bug), the search goes on
            fail(trial, failure_reason(exc))
        except KeyboardInterrupt:  # Optuna marks the trial FAIL and re-raises; say why
            trial.set_user_attr(TrialAttr.FAILED, "interrupted")
            raise

        record_evaluation(trial, evaluation, limits=settings.limits)
        if stopped:
            trial.set_user_attr(TrialAttr.STOPPED, stopped[0])
            raise optuna.TrialPruned(stopped[0])
        values = [evaluation.scores.get(name, UNMEASURED[name]) for name in settings.objectives]
        if not all(math.isfinite(v) for v in values):
            fail(trial, f"non-finite score {dict(zip(settings.objectives, values))}")
        return values

    def _propose(self, trial: Trial) -> GhostNetConfig:
        """The config ``trial``'s params describe (sampled, or enqueued), recorded on it; fails
        the trial if it cannot be built or the study already holds it."""
        params = self.space.sample(partial(_suggest, trial))
        try:
            config = self.space.to_config(
                params, preset=self.settings.preset, num_classes=self.proxy.num_classes, input_size=self.proxy.input_size
            )
        except ConfigError as exc:
            fail(trial, f"cannot build: {exc}")
        trial.set_user_attr(TrialAttr.CONFIG, config.to_dict())
        trial.set_user_attr(TrialAttr.CONFIG_ID, config.id)
        self._check_duplicate(trial, config.id)
        return config

    def _check_duplicate(self, trial: Trial, config_id: str) -> None:
        """Fail ``trial`` unrun if the study already holds its config (finished, or running in
        another worker): a resumed or parallel sampler can propose a config again, and `search`
        never evaluates one twice (only `confirm` retrains)."""
        for earlier in self.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)):
            if earlier.number != trial.number and earlier.user_attrs.get(TrialAttr.CONFIG_ID) == config_id:
                trial.set_user_attr(TrialAttr.DUPLICATE_OF, earlier.number)
                trial.set_user_attr(TrialAttr.FAILED, f"not run: duplicate of trial {earlier.number} (config {config_id})")
                log.info("trial %d not run: its config is trial %d's", trial.number, earlier.number)
                raise TrialFailed("duplicate")

    def _limit_reason(self, scores: dict[str, float]) -> str | None:
        limits = self.settings.limits
        for name, limit in (("flops", limits.max_flops), ("params", limits.max_params), ("latency_ms", limits.max_latency_ms)):
            if limit is not None and name in scores and scores[name] > limit:
                unit = " ms" if name == "latency_ms" else ""
                value, bound = (f"{scores[name]:.2f}", f"{limit:g}") if name == "latency_ms" else (human(scores[name]), human(limit))
                return f"{name} {value}{unit} > max {bound}{unit}"
        return None

    def _peers(self) -> list[Peer]:
        return [
            Peer(flops=t.user_attrs.get(TrialAttr.SCORES, {}).get("flops", math.inf), epoch_accuracy=t.user_attrs[TrialAttr.EPOCH_ACCURACY])
            for t in self.study.get_trials(deepcopy=False, states=FINISHED)
            if t.user_attrs.get(TrialAttr.EPOCH_ACCURACY)
        ]

    def work(self, *, target: int, deadline: float | None, lock: FileLock, progress: Progress | None = None) -> bool:
        """Run trials until the study has ``target`` trained models; False if stopped by the deadline.

        Raises SearchError when nearly every sample goes untrained (``NOT_TRAINED_PER_TRIAL``)."""
        failures = 0
        while True:
            self.stop.check()
            lock.acquire()
            try:
                fail_dead_local_trials(self.study)
                fail_stale_trials(self.study)
                trials = self.study.get_trials(deepcopy=False)
                finished = sum(trained(t) for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                if progress:
                    progress.update(trials, self.study)
                if finished >= target:
                    return True
                reason = _not_trained_stop(trials, target)
                if reason:
                    raise SearchError(reason)
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                if finished + running >= target:  # the last ones run elsewhere: wait, they may fail
                    lock.release()
                    time.sleep(1.0)
                    continue
                before = len(trials)
                self.study.optimize(
                    partial(self.objective, lock=lock, target=target), n_trials=1, catch=(TrialFailed,), gc_after_trial=False
                )
            finally:
                lock.release()
            last = self.study.get_trials(deepcopy=False)[before:]
            mine = [t for t in last if (t.user_attrs.get(TrialAttr.WORKER) or {}).get("pid") == worker_identity()["pid"]]
            skipped = mine and (
                mine[-1].user_attrs.get(TrialAttr.SURPLUS)
                or mine[-1].user_attrs.get(TrialAttr.DUPLICATE_OF) is not None
                or mine[-1].user_attrs.get(TrialAttr.PREFILTERED)
            )
            if mine and mine[-1].state == TrialState.FAIL and not skipped:
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise SearchError(f"{failures} trials in a row failed; the last: {mine[-1].user_attrs.get(TrialAttr.FAILED)}")
            else:
                failures = 0
            self.stop.check()


def _ask_lock(out_dir: Path) -> FileLock:
    """The workers' exclusive lock (flock) on one machine, held from the count check until the
    next trial exists. Releasing it when it is not held does nothing, so the objective and the
    loop can both release it."""
    return FileLock(out_dir / ".ask.lock")


# -- the whole search -----------------------------------------------------------------------------


def _suggest(trial: Trial, name: str, dim: Dimension) -> Any:
    if isinstance(dim, Choice):
        return trial.suggest_categorical(name, list(dim.values))
    if isinstance(dim, IntRange):
        return trial.suggest_int(name, dim.low, dim.high, step=dim.step)
    raise TypeError(f"fixed dimension {name} is not sampled")


# Seconds a stopped worker gets to reach a safe point before it is killed.
STOP_GRACE_S = 30.0


def _worker_main(settings: SearchSettings, index: int, target: int, deadline_in: float | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops workers; Ctrl-C reaches it
    stop = StopRequest()
    _configure_worker_logging()
    deadline = time.monotonic() + deadline_in if deadline_in is not None else None
    with stop.catching(signal.SIGTERM), contextlib.suppress(KeyboardInterrupt):
        worker = _Worker(settings, index=index, stop=stop)
        try:
            worker.work(target=target, deadline=deadline, lock=_ask_lock(settings.out_dir))
        except SearchError as exc:  # the parent sees the same study and says why, once
            log.info("worker stopped: %s", exc)


def _configure_worker_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(processName)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def run_search(settings: SearchSettings) -> SearchSummary:
    """Run (or resume) the study in ``settings`` until it has ``settings.trials`` trained models."""
    start = time.monotonic()
    settings = resolve_accuracy_estimator(settings)
    # The folders this call creates, innermost first: removed again if the search cannot start, so
    # bad input (data, device, limits) leaves no empty output directory behind.
    created = [d for d in (settings.out_dir, *settings.out_dir.parents) if not d.exists()]
    try:
        settings.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SearchError(f"cannot create output directory {settings.out_dir}: {exc.strerror or exc}") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we log trial outcomes ourselves, one line each
    try:
        worker = _Worker(settings)
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty: a study file written before the error stays
        raise
    if settings.baselines:
        queued = enqueue_baselines(worker.study, settings, worker.space, num_classes=worker.proxy.num_classes, input_size=worker.proxy.input_size)
        if queued:
            log.info("queued baselines: %s", ", ".join(queued))
    settings.save(settings.out_dir / "search.yaml")
    deadline = start + settings.timeout if settings.timeout is not None else None
    progress = Progress(total=settings.trials, objectives=settings.objectives, limits=settings.limits, enabled=settings.progress)
    interrupted = False
    lock = _ask_lock(settings.out_dir)
    # Log lines go above the bar instead of through it.
    with logging_redirect_tqdm() if settings.progress else contextlib.nullcontext():
        try:
            with worker.stop.catching(signal.SIGINT, signal.SIGTERM):
                workers = _workers_to_start(settings, worker.study)
                if workers == 1:
                    completed = worker.work(target=settings.trials, deadline=deadline, lock=lock, progress=progress)
                else:
                    completed = _run_workers(dataclasses.replace(settings, workers=workers), worker, deadline, progress)
        except KeyboardInterrupt:
            interrupted, completed = True, False
            log.warning("interrupted: a trial cut off is marked failed; run the same command to resume")
        finally:
            lock.release()
            progress.update(worker.study.get_trials(deepcopy=False), worker.study)
            progress.close()
    trials = worker.study.get_trials(deepcopy=False)
    return SearchSummary(
        study_name=settings.study,
        storage=settings.storage_url,
        finished=sum(trained(t) for t in trials),
        rejected=sum(t.state in FINISHED and bool(t.user_attrs.get(TrialAttr.REJECTED)) for t in trials),
        failed=sum(t.state == TrialState.FAIL and not t.user_attrs.get(TrialAttr.PREFILTERED) for t in trials),
        prefiltered=sum(bool(t.user_attrs.get(TrialAttr.PREFILTERED)) for t in trials),
        interrupted=interrupted,
        timed_out=not completed and not interrupted,
        seconds=time.monotonic() - start,
    )


def _workers_to_start(settings: SearchSettings, study: optuna.Study) -> int:
    """``--workers``, but no more than the trials still to run (each process costs memory)."""
    left = settings.trials - sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
    if settings.workers > max(1, left):
        log.warning("--workers %d: only %d trial(s) left to run; starting %d worker(s)", settings.workers, max(0, left), max(1, left))
        return max(1, left)
    return settings.workers


def _run_workers(settings: SearchSettings, worker: _Worker, deadline: float | None, progress: Progress) -> bool:
    """Spawn ``settings.workers`` processes on the study; the parent only watches and reports."""
    context = multiprocessing.get_context("spawn")  # fork would share torch's thread pools
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    procs = [
        context.Process(target=_worker_main, args=(settings, i, settings.trials, remaining), name=f"worker-{i}")
        for i in range(settings.workers)
    ]
    for p in procs:
        p.start()
    try:
        while any([p.is_alive() for p in procs]):  # a list: every dead worker is reaped, not only the first
            worker.stop.check()
            progress.update(worker.study.get_trials(deepcopy=False), worker.study)
            time.sleep(1.0)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()  # SIGTERM: each worker marks its running trial failed at its next step and exits
        give_up = time.monotonic() + STOP_GRACE_S
        for p in procs:
            p.join(max(0.0, give_up - time.monotonic()))
        stuck = [p for p in procs if p.is_alive()]
        for p in stuck:  # an evaluation that never reached a check: its trial is failed as a dead worker's
            p.kill()
            p.join()
        if stuck:
            fail_dead_local_trials(worker.study)
        raise
    trials = worker.study.get_trials(deepcopy=False)
    reason = _not_trained_stop(trials, settings.trials)
    if reason and sum(trained(t) for t in trials) < settings.trials:
        raise SearchError(reason)
    return sum(trained(t) for t in trials) >= settings.trials
