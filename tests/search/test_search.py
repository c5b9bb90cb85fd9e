"""Real searches on digits with tiny networks: each trial trains a real model for one epoch."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from evaluators.evaluate import Evaluator
from evaluators.flops import count_cost
import search._search
from search import SearchError, SearchSettings, create_or_load_study, open_storage, run_search
from search._optuna import enqueued_params
from search._search import _Worker, enqueue_baselines
from spaces import Choice, GhostNASError, load_space, reference


def settings(tiny_space, tmp_path, **overrides) -> SearchSettings:
    values = dict(
        study="t", out=tmp_path / "run", space=tiny_space, subset=300, epochs=1, input_size=16,
        baselines=False, progress=False, trials=3,
    )
    return SearchSettings(**(values | overrides))


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "nsga3", "gp", "random"])
def test_each_sampler_runs_a_real_search(tiny_space, tmp_path, sampler):
    s = settings(tiny_space, tmp_path, sampler=sampler, early_stopping=False)
    summary = run_search(s)
    assert (summary.finished, summary.failed, summary.interrupted) == (3, 0, False)
    study = optuna.load_study(study_name="t", storage=s.storage_url)
    assert study.user_attrs["objectives"] == ["accuracy", "latency_ms", "flops"]
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    space = load_space(tiny_space)
    for t in trials:
        assert t.state == TrialState.COMPLETE
        scores = t.user_attrs["scores"]
        assert t.values == [scores["accuracy"], scores["latency_ms"], scores["flops"]]
        assert 0.0 <= scores["accuracy"] <= 1.0 and scores["latency_ms"] > 0 and scores["flops"] > 1e5
        assert t.user_attrs["config"]["input_size"] == 16 and t.user_attrs["config"]["num_classes"] == 10
        assert space.to_params(space.to_config(t.params, preset="cifar", input_size=16, num_classes=10)) == t.params
        assert set(t.user_attrs["seconds"]) >= {"flops", "latency", "train", "total"}
        assert t.user_attrs["latency"]["runs"] >= 5 and t.user_attrs["env"]["optuna"] == optuna.__version__
        assert "epoch_accuracy" not in t.user_attrs  # no early-stopping rung within 1 epoch: not measured per epoch
    assert (tmp_path / "run" / "search.yaml").is_file()


def test_a_search_that_cannot_start_leaves_no_output_directory(tiny_space, tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(GhostNASError, match="subset"):
        run_search(settings(tiny_space, tmp_path, out=out, subset=10**12))
    assert list(tmp_path.iterdir()) == []  # neither "run" nor the "new" above it
    kept = tmp_path / "kept"
    (kept / "run").mkdir(parents=True)
    (kept / "note.txt").write_text("mine")
    with pytest.raises(GhostNASError, match="subset"):
        run_search(settings(tiny_space, tmp_path, out=kept / "run", subset=10**12))
    assert sorted(p.name for p in kept.iterdir()) == ["note.txt", "run"]  # what existed before stays


def test_resume_tops_up_to_the_target_instead_of_adding(tiny_space, tmp_path):
    run_search(settings(tiny_space, tmp_path, trials=2, objectives=("accuracy", "flops")))
    summary = run_search(settings(tiny_space, tmp_path, trials=3, objectives=("accuracy", "flops")))
    assert summary.finished == 3
    study = optuna.load_study(study_name="t", storage=settings(tiny_space, tmp_path).storage_url)
    assert [t.number for t in study.get_trials()] == [0, 1, 2]
    again = run_search(settings(tiny_space, tmp_path, trials=3, objectives=("accuracy", "flops")))
    assert again.finished == 3 and len(study.get_trials()) == 3


def test_resume_with_other_objectives_or_limits_is_refused(tiny_space, tmp_path):
    run_search(settings(tiny_space, tmp_path, trials=1, objectives=("accuracy", "flops")))
    with pytest.raises(SearchError, match="optimises accuracy,flops"):
        run_search(settings(tiny_space, tmp_path, trials=2, objectives=("accuracy", "params")))
    with pytest.raises(SearchError, match="created with limits"):
        run_search(settings(tiny_space, tmp_path, trials=2, objectives=("accuracy", "flops"), max_flops="1M"))
    with pytest.raises(SearchError, match="measured accuracy with epochs 1, input_size 16; resume it with the same data"):
        run_search(settings(tiny_space, tmp_path, trials=2, objectives=("accuracy", "flops"), epochs=2, input_size=24))
    study = optuna.load_study(study_name="t", storage=settings(tiny_space, tmp_path).storage_url)
    assert len(study.get_trials()) == 1


def test_a_command_joining_with_another_seed_measures_on_the_studys_split(tiny_space, tmp_path):
    """Another machine's --seed seeds its sampler only: every trial of a study is trained on one
    split with one training seed, or their accuracies could not be compared."""
    from search._search import _Worker

    first = _Worker(settings(tiny_space, tmp_path, seed=0, objectives=("accuracy", "flops")))
    joining = _Worker(settings(tiny_space, tmp_path, seed=7, objectives=("accuracy", "flops")))
    alone = _Worker(settings(tiny_space, tmp_path, seed=7, study="other", objectives=("accuracy", "flops")))
    assert joining.study.user_attrs["proxy"]["seed"] == 0 and joining.proxy.train_settings.seed == 0
    assert torch.equal(joining.proxy.data[0].images, first.proxy.data[0].images) and torch.equal(joining.proxy.data[1].labels, first.proxy.data[1].labels)
    assert alone.proxy.train_settings.seed == 7 and not torch.equal(alone.proxy.data[0].images, first.proxy.data[0].images)


def test_limits_reject_before_timing_or_training(tiny_space, tmp_path, monkeypatch):
    # Every sample breaks 0.5M FLOPs: none is trained, so --trials 2 is never met; the search stops
    # after NOT_TRAINED_PER_TRIAL (here 2) rejected samples per model asked for.
    monkeypatch.setattr(search._search, "NOT_TRAINED_PER_TRIAL", 2)
    s = settings(tiny_space, tmp_path, trials=2, max_flops="0.5M", max_params="10M")
    with pytest.raises(SearchError, match=r"^the limits reject nearly every sample \(4 rejected, 0 of 2 models trained\); "
                       r"flops rejected most \(4\): loosen --max-flops"):
        run_search(s)
    study = optuna.load_study(study_name="t", storage=s.storage_url)
    assert len(study.get_trials()) == 4
    for t in study.get_trials():
        assert t.state == TrialState.COMPLETE
        assert t.user_attrs["rejected"].startswith("flops ") and "> max 500.0K" in t.user_attrs["rejected"]
        assert "latency" not in t.user_attrs and "training" not in t.user_attrs
        assert t.constraints["flops"] == pytest.approx(t.user_attrs["scores"]["flops"] / 5e5 - 1)
        assert t.constraints["flops"] > 0 and t.constraints["params"] <= 0 and t.constraints["latency_ms"] == 0
        assert t.values[0] == 0.0 and t.values[1] == 1e12  # never measured: the worst values
    assert study.best_trials == []  # no feasible trial, so no front


def test_latency_limit_rejects_before_training(tiny_space, tmp_path, monkeypatch):
    monkeypatch.setattr(search._search, "NOT_TRAINED_PER_TRIAL", 1)
    s = settings(tiny_space, tmp_path, trials=1, max_latency_ms=1e-6)
    with pytest.raises(SearchError, match="latency_ms rejected most"):
        run_search(s)
    (t,) = optuna.load_study(study_name="t", storage=s.storage_url).get_trials()
    assert t.user_attrs["rejected"].startswith("latency_ms") and "latency" in t.user_attrs
    assert "training" not in t.user_attrs and t.constraints["latency_ms"] > 0


def test_baselines_are_enqueued_once_and_run_first(tmp_path):
    s = SearchSettings(study="b", out=tmp_path, trials=1, subset=300, epochs=1, input_size=16, progress=False, max_flops="4M")
    space = load_space()
    study = create_or_load_study(s, space)
    queued = enqueue_baselines(study, s, space, num_classes=10, input_size=16)
    assert queued and queued[0] == "ghostnet-0.35x" and "ghostnet-1.3x" not in queued  # 1.3x breaks 4M FLOPs
    assert enqueue_baselines(study, s, space, num_classes=10, input_size=16) == []
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["baseline"] for t in waiting] == queued
    assert enqueued_params(waiting[0]) == space.to_params(reference("ghostnet-0.35x"))
    run_search(s)
    (first,) = finished(study)
    assert first.user_attrs["baseline"] == "ghostnet-0.35x"
    assert first.user_attrs["config_id"] == reference("ghostnet-0.35x", preset="cifar", input_size=16).id


def test_timeout_stops_after_the_running_trial(tiny_space, tmp_path, monkeypatch):
    # Each evaluation is made to take longer than the timeout (a real one, after a sleep), so
    # however fast the machine, the deadline has passed when the first trial ends: it is never
    # followed by a second. (Setup may already use up the time: then no trial starts at all.)
    timeout = 0.5
    real = Evaluator.evaluate

    def slow(self, *args, **kwargs):
        time.sleep(timeout)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "evaluate", slow)
    s = settings(tiny_space, tmp_path, trials=50, timeout=timeout, objectives=("accuracy", "flops"))
    summary = run_search(s)
    assert summary.timed_out and not summary.interrupted and summary.seconds >= timeout
    trials = optuna.load_study(study_name="t", storage=s.storage_url).get_trials()
    assert summary.finished == len(trials) <= 1 and summary.failed == 0
    assert all(t.state == TrialState.COMPLETE for t in trials)  # the running trial ran to its end


def test_without_a_rung_in_the_budget_validation_runs_once_per_trial(tiny_space, tmp_path):
    # The default 2 epochs: early stopping on, but its first rung is epoch 2, the last epoch.
    s = settings(tiny_space, tmp_path, trials=2, epochs=2, objectives=("accuracy", "flops"))
    run_search(s)
    for t in finished(optuna.load_study(study_name="t", storage=s.storage_url)):
        assert t.user_attrs["training"]["epochs_run"] == 2 and len(t.user_attrs["training"]["history"]) == 1
        assert "epoch_accuracy" not in t.user_attrs


def test_training_threads_split_the_cores_and_keep_a_lower_limit(tiny_space, tmp_path):
    before = torch.get_num_threads()
    try:
        cores = os.cpu_count() or 1
        torch.set_num_threads(cores + 1)  # above the cores: the workers' share of them wins
        assert _Worker(settings(tiny_space, tmp_path)).proxy.train_settings.threads == cores
        assert _Worker(settings(tiny_space, tmp_path, workers=2)).proxy.train_settings.threads == max(1, cores // 2)
        torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 sets it, for searches sharing a machine
        assert _Worker(settings(tiny_space, tmp_path)).proxy.train_settings.threads == 1
    finally:
        torch.set_num_threads(before)


def _extreme_params(space, *, largest: bool) -> dict:
    """The space's point with every dimension at its cheapest (or costliest) end."""
    def suggest(name, dim):
        if isinstance(dim, Choice):
            values = sorted(dim.values)
            # A larger ghost ratio makes fewer channels by a conv: cheaper, unlike every other dimension.
            return values[-1 if largest == (name != "ratio") else 0]
        return dim.high if largest else dim.low

    return space.sample(suggest)


def _unlearnable_folder(root: Path, per_class: int = 30) -> Path:
    """Two classes of the same grey image: a model sees one input, so it predicts one class for
    every validation image and scores at most the share of that class, 0.5 here, by design."""
    from PIL import Image

    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (128, 128, 128)).save(root / cls / f"{i}.png")
    return root


def _add_peer(study, *, flops: float, accuracy: float, epochs: int) -> None:
    """A finished trial that reached every epoch at ``accuracy``: a peer the rule compares with."""
    study.add_trial(optuna.trial.create_trial(
        values=[accuracy, flops], user_attrs={"scores": {"accuracy": accuracy, "flops": flops}, "epoch_accuracy": [accuracy] * epochs},
    ))  # fmt: skip


def test_early_stopping_prunes_the_loser_by_design_and_records_why(tiny_space, tmp_path):
    """Constructed peers, real trials: two enqueued configs far apart in FLOPs train for real on
    data no model can learn (accuracy <= 0.5); the cheap one's FLOPs band holds peers at 1.0, so
    it must stop at the first rung, and the costly one's band holds peers at 0.0, so it must run
    all its epochs. Nothing here depends on the CPU's floating-point kernels or the sampler."""
    # Rungs at epochs 2 and 3 of 4 (ratio 1.5); 3 peers per band, each band's peers outside the other's.
    s = settings(
        tiny_space, tmp_path, trials=8, epochs=4, rung_ratio=1.5, objectives=("accuracy", "flops"),
        dataset=str(_unlearnable_folder(tmp_path / "grey")), subset=None,
    )  # fmt: skip
    space = load_space(tiny_space)
    study = create_or_load_study(s, space)
    cheap, costly = (_extreme_params(space, largest=big) for big in (False, True))
    flops = [count_cost(space.to_config(p, preset="cifar", num_classes=2, input_size=16)).flops for p in (cheap, costly)]
    assert flops[1] > 1.2 * flops[0]  # the design needs two disjoint bands: FLOPs/1.9 and FLOPs*1.9
    for _ in range(3):
        _add_peer(study, flops=flops[0] / 1.9, accuracy=1.0, epochs=4)
        _add_peer(study, flops=flops[1] * 1.9, accuracy=0.0, epochs=4)
    study.enqueue_trial(cheap)
    study.enqueue_trial(costly)

    run_search(s)
    trials = {t.number: t for t in optuna.load_study(study_name="t", storage=s.storage_url).get_trials()}
    loser, kept = trials[6], trials[7]
    assert loser.params == cheap and kept.params == costly
    assert loser.state == TrialState.PRUNED and len(loser.user_attrs["epoch_accuracy"]) == 2
    assert loser.user_attrs["stopped"].startswith("epoch 2: accuracy ")
    assert loser.user_attrs["stopped"].endswith("below the top 1/1.5 (1.000) of 3 trials with FLOPs within 2x")
    assert loser.user_attrs["training"]["epochs_run"] == 2 and loser.user_attrs["training"]["stopped_early"]
    assert kept.state == TrialState.COMPLETE and "stopped" not in kept.user_attrs
    assert len(kept.user_attrs["epoch_accuracy"]) == 4 and kept.user_attrs["training"]["epochs_run"] == 4
    assert all(0.0 <= a <= 0.5 for a in loser.user_attrs["epoch_accuracy"] + kept.user_attrs["epoch_accuracy"])
    assert kept.values == [kept.user_attrs["scores"]["accuracy"], flops[1]]



def median_flops(space_path, n=15) -> float:
    """The median FLOPs of ``n`` random configs of the space: a limit about half the samples break."""
    import random
    import statistics

    from evaluators.flops import count_cost
    from spaces import random_suggest

    space = load_space(space_path)
    draw = random_suggest(random.Random(0))
    configs = [space.to_config(space.sample(draw), preset="cifar", input_size=16, num_classes=10) for _ in range(n)]
    return statistics.median(count_cost(c).flops for c in configs)


def test_trials_counts_trained_models_not_rejected_samples(tiny_space, tmp_path, capsys):
    limit = median_flops(tiny_space)
    s = settings(tiny_space, tmp_path, trials=3, sampler="random", objectives=("accuracy", "flops"), max_flops=limit, progress=True)
    summary = run_search(s)
    study = optuna.load_study(study_name="t", storage=s.storage_url)
    trials = study.get_trials()
    rejected = [t for t in trials if t.user_attrs.get("rejected")]
    trained = [t for t in trials if t.state == TrialState.COMPLETE and not t.user_attrs.get("rejected")]
    assert len(trained) == summary.finished == 3 and len(rejected) == summary.rejected >= 1
    assert len(trials) == len(trained) + len(rejected)
    assert all(t.user_attrs["scores"]["flops"] > limit and t.constraints["flops"] > 0 and "training" not in t.user_attrs for t in rejected)
    assert all(t.user_attrs["scores"]["flops"] <= limit and "training" in t.user_attrs for t in trained)
    bar = capsys.readouterr().err
    assert "search (trained): 100%" in bar and "3/3" in bar and f"rejected={len(rejected)}" in bar
    # Resumed with a larger target, it trains exactly one more model, whatever it rejects on the way.
    again = run_search(dataclasses.replace(s, trials=4, progress=False))
    assert again.finished == 4 and sum(t.state == TrialState.COMPLETE and not t.user_attrs.get("rejected") for t in study.get_trials()) == 4


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_resumed_search_never_evaluates_a_config_twice(tiny_space, tmp_path, kind):
    storage = None if kind == "sqlite" else str(tmp_path / "run" / "journal.log")
    for target in (2, 3, 4):  # search, then resume twice with a larger --trials
        s = settings(tiny_space, tmp_path, trials=target, objectives=("accuracy", "flops"), storage=storage)
        assert run_search(s).finished == target
    trials = optuna.load_study(study_name="t", storage=open_storage(s.storage_url)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # no duplicate was even proposed
    ids = [t.user_attrs["config_id"] for t in trials]
    assert len(set(ids)) == 4, ids


def test_a_config_the_study_holds_is_recorded_as_a_duplicate_not_trained(tiny_space, tmp_path):
    s = settings(tiny_space, tmp_path, trials=2, objectives=("accuracy", "flops"))
    run_search(s)
    study = optuna.load_study(study_name="t", storage=s.storage_url)
    first = study.get_trials()[0]
    study.enqueue_trial(first.params)  # what a replaying sampler would propose
    summary = run_search(dataclasses.replace(s, trials=3))
    trials = study.get_trials()
    duplicate = trials[2]
    assert duplicate.state == TrialState.FAIL and duplicate.user_attrs["duplicate_of"] == 0
    assert duplicate.user_attrs["failed"] == f"not run: duplicate of trial 0 (config {first.user_attrs['config_id']})"
    assert "scores" not in duplicate.user_attrs and "training" not in duplicate.user_attrs  # never evaluated
    assert summary.finished == 3 and trials[3].state == TrialState.COMPLETE and len(trials) == 4
    assert len({t.user_attrs["config_id"] for t in trials if t.state == TrialState.COMPLETE}) == 3


def test_no_more_workers_start_than_trials_are_left(tiny_space, tmp_path, caplog):
    s = settings(tiny_space, tmp_path, trials=1, workers=3, objectives=("flops", "params"))
    with caplog.at_level("WARNING", logger="search._search"):
        summary = run_search(s)
    assert "--workers 3: only 1 trial(s) left to run; starting 1 worker(s)" in caplog.text
    trials = optuna.load_study(study_name="t", storage=s.storage_url).get_trials()
    assert summary.finished == len(trials) == 1 and trials[0].user_attrs["worker"]["pid"] == os.getpid()  # run here, none spawned
