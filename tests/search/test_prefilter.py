"""``search --prefilter N``: real searches on digits; each candidate's zero-cost score recomputed."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from evaluators.accuracy_model import AccuracyModel, features_of
from evaluators.flops import count_cost
from evaluators.zero_cost import zero_cost_scores
from search import SearchError, SearchSettings, run_search
from search._prefilter import BATCH_SIZE, BATCHES
from search._search import _Worker
from spaces import GhostNetConfig

from tests.search.test_search import median_flops, settings


def _study(s: SearchSettings) -> optuna.Study:
    return optuna.load_study(study_name=s.study, storage=s.storage_url)


def _recomputed(score: str, config: GhostNetConfig, data, seed: int) -> float:
    if score == "ridge":  # the shipped model's prediction, from its own features recomputed
        model = AccuracyModel.load()
        at = config.replace(num_classes=data.num_classes, input_size=model.input_size)
        cost = count_cost(at)
        scores = zero_cost_scores(at, data, batches=model.batches, batch_size=model.batch_size, seed=seed)[0]
        return model.predict(features_of(flops=cost.flops, params=cost.params, scores=scores))
    return zero_cost_scores(config, data, names=[score], batches=BATCHES, batch_size=BATCH_SIZE, seed=seed)[0][score]


@pytest.mark.parametrize("score", ["ridge", "synflow"])
def test_prefilter_trains_the_best_scored_of_its_candidates_and_records_all(tiny_space, tmp_path, score):
    s = settings(tiny_space, tmp_path, trials=2, sampler="random", objectives=("accuracy", "flops"), prefilter=3, early_stopping=False,
                 prefilter_score=score)
    summary = run_search(s)
    trials = _study(s).get_trials()
    trained = [t for t in trials if t.state == TrialState.COMPLETE]
    candidates = [t for t in trials if t.user_attrs.get("prefiltered")]
    assert summary.finished == len(trained) == 2 and summary.failed == 0
    assert summary.prefiltered == len(candidates) == 6  # 3 scored per trained model, none trained
    assert all(t.state == TrialState.FAIL and "training" not in t.user_attrs for t in candidates)
    assert len(trials) == 8
    data = _Worker(s).proxy.data[0]  # the study's split: what the prefilter scored on
    by_number = {t.number: t for t in trials}
    for t in trained:
        record = t.user_attrs["prefilter"]
        group = [by_number[n] for n in record["candidates"]]
        assert len(group) == 3 and {c.user_attrs["prefiltered"]["chosen"] for c in group} == {record["chosen"]}
        chosen = by_number[record["chosen"]]
        # The trained trial is the chosen candidate's config, and that one scored highest.
        assert t.user_attrs["config_id"] == chosen.user_attrs["config_id"] and t.params == chosen.params
        values = [c.user_attrs["prefiltered"]["value"] for c in group]
        assert record["value"] == max(values) == chosen.user_attrs["prefiltered"]["value"]
        assert sorted(c.user_attrs["prefiltered"]["rank"] for c in group) == [1, 2, 3] and chosen.user_attrs["prefiltered"]["rank"] == 1
        for c in group:  # each recorded score is that config's, recomputed here
            value = _recomputed(score, GhostNetConfig.from_dict(c.user_attrs["config"]), data, s.seed)
            assert c.user_attrs["prefiltered"]["value"] == pytest.approx(value, rel=1e-9)
            assert c.user_attrs["prefiltered"]["score"] == score
            assert c.user_attrs["failed"].startswith(f"not trained: prefilter, {score} ranked ")
    assert len({c.user_attrs["config_id"] for c in candidates}) == 6


def test_prefilter_scores_only_candidates_within_the_limits(tiny_space, tmp_path):
    limit = median_flops(tiny_space)
    s = settings(tiny_space, tmp_path, trials=2, sampler="random", objectives=("accuracy", "flops"), prefilter=4, max_flops=limit, early_stopping=False)
    summary = run_search(s)
    trials = _study(s).get_trials()
    rejected = [t for t in trials if t.user_attrs.get("rejected")]
    scored = [t for t in trials if t.user_attrs.get("prefiltered")]
    trained = [t for t in trials if t.state == TrialState.COMPLETE and not t.user_attrs.get("rejected")]
    assert summary.finished == len(trained) == 2 and summary.rejected == len(rejected) >= 1
    # A candidate over the limit is recorded as any rejected sample (COMPLETE, its constraint), never scored.
    assert all(t.state == TrialState.COMPLETE and t.constraints["flops"] > 0 and "prefiltered" not in t.user_attrs for t in rejected)
    assert all(t.user_attrs["scores"]["flops"] <= limit for t in scored + trained)
    duplicates = [t for t in trials if t.user_attrs.get("duplicate_of") is not None]
    assert len(trials) == len(trained) + len(rejected) + len(scored) + len(duplicates)
    assert (len(rejected) + len(scored) + len(duplicates)) % 4 == 0  # whole rounds of 4 candidates
    assert {n for t in trained for n in t.user_attrs["prefilter"]["candidates"]} == {t.number for t in scored}


def test_prefilter_needs_accuracy_and_a_known_score():
    with pytest.raises(SearchError, match="needs accuracy among the --objectives"):
        SearchSettings(prefilter=2, objectives=("latency_ms", "flops"))
    with pytest.raises(SearchError, match=r"--prefilter must be an integer in \[1, 64\], got 65"):
        SearchSettings(prefilter=65)
    with pytest.raises(SearchError, match="--prefilter-score must be one of ridge, synflow, naswot"):
        SearchSettings(prefilter=2, prefilter_score="flops")
    assert SearchSettings().prefilter == 1  # off by default
    assert SearchSettings().prefilter_score == "ridge"  # it ranked 20 CIFAR-10 models best (BENCHMARKS)
