"""``search --prefilter N``: of N configs the sampler proposes, train only the one ranked best
by a cheap accuracy estimate (issue 18, docs/BENCHMARKS.md "Ground truth and proxy ranking"): by
default the fitted accuracy model (``evaluators.accuracy_model``: FLOPs, params and all six
zero-cost scores, a few seconds a candidate), or one zero-cost score (``evaluators.zero_cost``,
one model build and a few batches: about a second).

Cost order: each candidate first goes through the hard limits (FLOPs and params; latency too
when ``--max-latency-ms`` is set, so the chosen one cannot break it), and only the candidates
within them are scored. Every candidate stays in the study as its own trial: one a limit rejects is
recorded as any rejected sample is (COMPLETE, with its constraints, so the sampler learns the
limits); one that is scored is recorded FAIL with :attr:`TrialAttr.PREFILTERED` (its score and
rank), so no sampler mistakes an untrained config for a bad one, and ``--trials`` does not count
it. The best one's params are enqueued, with :attr:`TrialAttr.PREFILTER` naming its candidates,
and the search trains it as its next trial through the usual path (heartbeat, limits, records).

Either estimate predicts accuracy only: the prefilter picks the largest score within the
limits, so on a multi-objective search it leans to the accurate (and costly) end of the front.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import Trial, TrialState

from evaluators.accuracy_model import AccuracyModel
from evaluators.data import ImageSet
from evaluators.evaluate import Evaluator
from evaluators.zero_cost import zero_cost_scores
from results import UNMEASURED, TrialAttr
from search._record import TrialFailed, record_evaluation
from search._settings import SearchSettings
from search._storage import worker_identity
from spaces import GhostNetConfig

__all__ = ["prefilter"]

log = logging.getLogger(__name__)

# The score's batches: two of up to 64 training images (the setting bench/proxy_ranking.py measured).
BATCHES, BATCH_SIZE = 2, 64


def prefilter(
    trial: Trial,
    config: GhostNetConfig,
    *,
    study: optuna.Study,
    settings: SearchSettings,
    evaluator: Evaluator,
    data: ImageSet,
    limit_reason: Callable[[dict[str, float]], str | None],
    propose: Callable[[Trial], GhostNetConfig],
) -> list[float]:
    """Score ``trial`` (the sampler's proposal ``config``) and ``settings.prefilter - 1`` more
    proposals; enqueue the best. Returns ``trial``'s objective values if a limit rejected it,
    else raises TrialFailed (it was a candidate, not a trained model). ``propose`` samples a
    fresh trial's config, raising TrialFailed for one that cannot be built or is a duplicate."""
    candidates: list[tuple[Trial, GhostNetConfig]] = [(trial, config)]
    untold: list[Trial] = []  # asked here, not yet told: failed if anything below raises
    try:
        for _ in range(settings.prefilter - 1):
            extra = study.ask()
            untold.append(extra)
            extra.set_user_attr(TrialAttr.WORKER, worker_identity())
            try:
                candidates.append((extra, propose(extra)))
            except TrialFailed:
                _tell(study, untold, extra, state=TrialState.FAIL)
        scored: list[tuple[float, Trial, float]] = []  # (score, trial, seconds)
        rejected_values = None
        # Latency is timed here only when a limit needs it; the chosen one is timed in its trial.
        until = "latency" if settings.max_latency_ms is not None else "flops"
        for candidate, candidate_config in candidates:
            evaluation = evaluator.evaluate(candidate_config, gate=limit_reason, until=until)
            record_evaluation(candidate, evaluation, limits=settings.limits)  # its FLOPs, params (, latency)
            if evaluation.rejected:
                values = [evaluation.scores.get(name, UNMEASURED[name]) for name in settings.objectives]
                if candidate is trial:
                    rejected_values = values
                else:
                    _tell(study, untold, candidate, values=values)
                continue
            value, seconds = score(candidate_config, data, name=settings.prefilter_score, seed=settings.seed)
            scored.append((value if math.isfinite(value) else -math.inf, candidate, seconds))
        if scored:
            _enqueue_best(study, settings, scored, untold)
    finally:
        for extra in list(untold):  # interrupted, or an evaluation raised: nothing is left RUNNING
            extra.set_user_attr(TrialAttr.FAILED, "not run: the prefilter stopped before it")
            _tell(study, untold, extra, state=TrialState.FAIL)
    if rejected_values is not None:
        return rejected_values
    raise TrialFailed("prefiltered")


@functools.cache
def _shipped_model() -> AccuracyModel:
    return AccuracyModel.load()  # read once per process, not once per candidate


def score(config: GhostNetConfig, data: ImageSet, *, name: str, seed: int) -> tuple[float, float]:
    """(score, seconds) of ``config`` by ``name``: "ridge" (the shipped accuracy model) or a zero-cost score."""
    t = time.perf_counter()
    if name == "ridge":
        return _shipped_model().predict_config(config, data, seed=seed)
    scores, _ = zero_cost_scores(config, data, names=[name], batches=BATCHES, batch_size=min(BATCH_SIZE, len(data) // BATCHES), seed=seed)
    return scores[name], time.perf_counter() - t


def _enqueue_best(study: optuna.Study, settings: SearchSettings, scored: list[tuple[float, Trial, float]], untold: list[Trial]) -> None:
    # The sampler's own proposal (first) wins ties.
    ranked = sorted(scored, key=lambda item: -item[0])
    best_value, best, _ = ranked[0]
    numbers = [candidate.number for _, candidate, _ in scored]
    for rank, (value, candidate, seconds) in enumerate(ranked, start=1):
        candidate.set_user_attr(
            TrialAttr.PREFILTERED,
            {"score": settings.prefilter_score, "value": value, "rank": rank, "of": len(ranked), "seconds": seconds, "chosen": best.number},
        )
        candidate.set_user_attr(
            TrialAttr.FAILED,
            f"not trained: prefilter, {settings.prefilter_score} ranked {rank} of {len(ranked)} (trial {best.number}'s config is trained)",
        )
    study.enqueue_trial(
        best.params,
        user_attrs={TrialAttr.PREFILTER: {"score": settings.prefilter_score, "value": best_value, "chosen": best.number, "candidates": numbers}},
    )
    log.info("prefilter: trial %d's config ranked best of %d by %s (%.3g); it is trained next", best.number, len(ranked), settings.prefilter_score, best_value)
    for _, candidate, _ in scored:
        if candidate in untold:
            _tell(study, untold, candidate, state=TrialState.FAIL)


def _tell(study: optuna.Study, untold: list[Trial], trial: Trial, **result: Any) -> None:
    with contextlib.suppress(ValueError):  # never told twice, even on the way out of an error
        untold.remove(trial)
        study.tell(trial, **result)
