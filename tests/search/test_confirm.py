"""``confirm_study`` on real searches on digits: every extra run is a real one-epoch training."""

from __future__ import annotations

import statistics

import optuna
import pytest
from optuna.distributions import FloatDistribution

from evaluators import TrainSettings, load_dataset, proxy_split, train_proxy
from results import load_trials, pareto_front
from search import ConfirmSettings, SearchError, SearchSettings, confirm_study, run_search
from spaces import GhostNetConfig


def search(tiny_space, tmp_path, **overrides) -> SearchSettings:
    values = dict(
        study="t", out=tmp_path / "run", space=tiny_space, subset=300, epochs=1, input_size=16, progress=False,
        trials=2, objectives=("accuracy", "flops"),
    )  # fmt: skip
    settings = SearchSettings(**(values | overrides))
    run_search(settings)
    return settings


def runs_of(study: optuna.Study) -> dict[int, list[dict]]:
    return {int(k.split(".")[1]): v for k, v in study.user_attrs.items() if k.startswith("accuracy_runs.")}


def add_fake(study: optuna.Study, config: dict, *, accuracy: float, flops: float) -> int:
    """A COMPLETE trial whose search accuracy is made up (a lucky draw to be found out)."""
    study.add_trial(optuna.trial.create_trial(
        values=[accuracy, flops], params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"config": config, "scores": {"accuracy": accuracy, "flops": flops, "params": 1.0}},
    ))  # fmt: skip
    return study.get_trials()[-1].number


def test_confirm_adds_real_runs_to_the_front_and_the_baselines(tiny_space, tmp_path):
    # The default space holds the width family: two trials are baselines 0.35x and 0.5x, and
    # both are confirmed (a baseline is the yardstick, on the front or not).
    s = search(tiny_space, tmp_path, space=None)
    study = optuna.load_study(study_name="t", storage=s.storage_url)
    values_before = [t.values for t in study.get_trials()]
    summary = confirm_study(ConfirmSettings(study="t", storage=s.storage_url, runs=3, progress=False))
    assert (summary.trained, summary.failed, summary.confirmed, summary.complete) == (4, 0, 2, True)
    runs = runs_of(study)
    assert [t.user_attrs.get("baseline") for t in study.trials if t.values] == ["ghostnet-0.35x", "ghostnet-0.5x"]
    assert sorted(runs) == [0, 1] and all([r["seed"] for r in v] == [1, 2] for v in runs.values())
    # The stored run is exactly the run the same proxy (split of seed 0, one epoch) trains with that seed.
    config = GhostNetConfig.from_dict(study.trials[0].user_attrs["config"])
    train, val = proxy_split(load_dataset("digits"), seed=0, subset=300)
    direct = train_proxy(config, train, val, TrainSettings(epochs=1, seed=2, progress=False))
    assert runs[0][1]["accuracy"] == pytest.approx(direct.accuracy)
    # The frame's accuracy is the mean of the three runs; the search's values are untouched.
    frame = load_trials(study).set_index("number")
    for number, extra in runs.items():
        everything = [study.trials[number].user_attrs["scores"]["accuracy"], *(r["accuracy"] for r in extra)]
        assert frame.loc[number, "accuracy"] == pytest.approx(statistics.fmean(everything))
        assert frame.loc[number, "accuracy_runs"] == 3
    assert [t.values for t in study.get_trials()] == values_before
    # Confirmed already: a second command trains nothing.
    again = confirm_study(ConfirmSettings(study="t", storage=s.storage_url, runs=3, progress=False))
    assert (again.trained, again.complete) == (0, True) and runs_of(study) == runs


def test_a_demoted_member_lets_in_what_it_dominated(tiny_space, tmp_path):
    s = search(tiny_space, tmp_path, trials=1)  # one sampled trial (no baseline fits the tiny space)
    study = optuna.load_study(study_name="t", storage=s.storage_url)
    assert "baseline" not in study.trials[0].user_attrs
    config = study.trials[0].user_attrs["config"]
    # Made-up search runs: ``lucky`` dominates everything, ``second`` is dominated only by it,
    # ``never`` (and the real trial 0) by both. One-epoch runs on 300 digits reach well under 0.9,
    # so lucky's mean of three runs falls below second's single 0.998: second joins the front
    # and is confirmed in turn; the others never are.
    lucky = add_fake(study, config, accuracy=0.999, flops=1.0)
    second = add_fake(study, config, accuracy=0.998, flops=2.0)
    never = add_fake(study, config, accuracy=0.0, flops=1e12)
    assert pareto_front(load_trials(study))["number"].tolist() == [lucky]

    first = confirm_study(ConfirmSettings(study="t", storage=s.storage_url, runs=3, max_models=1, progress=False))
    assert (first.trained, first.complete) == (2, False) and sorted(runs_of(study)) == [lucky]

    rest = confirm_study(ConfirmSettings(study="t", storage=s.storage_url, runs=3, progress=False))
    assert rest.complete and sorted(runs_of(study)) == [lucky, second] and rest.trained == 2
    frame = load_trials(study)
    front = pareto_front(frame)
    assert not {0, never} & set(front["number"])
    assert (front["accuracy_runs"] == 3).all()


def test_confirm_refuses_what_it_cannot_retrain(tiny_space, tmp_path):
    s = search(tiny_space, tmp_path, trials=1, objectives=("flops", "params"))
    with pytest.raises(SearchError, match="does not optimise accuracy"):
        confirm_study(ConfirmSettings(study="t", storage=s.storage_url, progress=False))
    with pytest.raises(SearchError, match=r"--runs must be an integer in \[2, 100\] \(the search's run included\), got 1$"):
        ConfirmSettings(study="t", runs=1)
    with pytest.raises(SearchError, match=r"--runs must be an integer in \[2, 100\] \(the search's run included\), got 101$"):
        ConfirmSettings(study="t", runs=101)
    with pytest.raises(SearchError, match="--max-models must be a positive integer"):
        ConfirmSettings(study="t", max_models=0)
