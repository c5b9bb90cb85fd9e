"""Choosing the model to train from a study (``results.select_model``), on the hand-checked study.

Its front, most accurate first: trial 3 (0.90, 20 ms, 90 MFLOPs), 0 (0.80, 10 ms, 141 M),
1 (0.70, 5 ms, 20 M), 4 (0.70, 5 ms, 25 M). Trials 5 and 8 broke a limit, 6 failed, 7 was pruned.
"""

from __future__ import annotations

import pytest

from results import ACCURACY_RUNS_KEY, ResultsError, select_model


def test_by_trial_and_by_member(hand_study):
    chosen = select_model(hand_study, trial=2)  # dominated, but a trial is a trial
    assert chosen.number == 2 and chosen.how == "trial 2" and chosen.scores["accuracy"] == 0.60
    assert chosen.config == hand_study.trials[2].user_attrs["config"]
    assert chosen.settings == {"sampler": "tpe", "seed": 0}
    assert [select_model(hand_study, member=m).number for m in range(4)] == [3, 0, 1, 4]
    assert select_model(hand_study, trial=7).number == 7  # stopped early, still a trained model


@pytest.mark.parametrize(("budget", "number"), [(25.0, 3), (20.0, 3), (19.9, 0), (10.0, 0), (9.0, 1), (5.0, 1)])
def test_most_accurate_within_a_latency_budget(hand_study, budget, number):
    # 1 and 4 tie on accuracy and latency: the lower trial number wins.
    assert select_model(hand_study, max_latency_ms=budget).number == number


@pytest.mark.parametrize(("budget", "number"), [(200e6, 3), (90e6, 3), (89e6, 1), (24e6, 1)])
def test_most_accurate_within_a_flops_budget(hand_study, budget, number):
    assert select_model(hand_study, max_flops=budget).number == number


def test_confirmed_mean_accuracy_decides(hand_study):
    # Two more runs lift trial 0's mean to 0.91, above trial 3's single 0.90.
    hand_study.set_user_attr(f"{ACCURACY_RUNS_KEY}0", [{"seed": 1, "accuracy": 0.96}, {"seed": 2, "accuracy": 0.97}])
    chosen = select_model(hand_study, max_latency_ms=25.0)
    assert chosen.number == 0 and chosen.accuracy_runs == 3
    assert chosen.scores["accuracy"] == pytest.approx(0.91)
    assert select_model(hand_study, member=0).number == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trial": 42}, "trial 42 is not in study 'hand' (it has trials 0 to 8)"),
        ({"trial": 6}, "trial 6 of study 'hand' has no result to train (fail: RuntimeError: out of memory)"),
        ({"trial": 5}, "trial 5 of study 'hand' was rejected by a limit (flops 300M > max 250M); choose another"),
        ({"member": 4}, "member 4 is out of range: the front of study 'hand' has members 0 to 3"),
        ({"member": -1}, "member -1 is out of range"),
        ({"max_latency_ms": 4.5}, "no front member of study 'hand' fits --max-latency-ms 4.5; the smallest budget that fits one is --max-latency-ms 5"),
        ({"max_flops": 1e6}, "no front member of study 'hand' fits --max-flops 1e+06; the smallest budget that fits one is --max-flops 20000000"),
        ({"max_flops": 0}, "--max-flops must be a positive number"),
        ({}, "exactly one of trial, member, max_latency_ms, max_flops (got none)"),
        ({"trial": 1, "member": 0}, "(got trial, member)"),
    ],
)
def test_refusals_are_one_line(hand_study, one_line_refusal, kwargs, message):
    one_line_refusal(ResultsError, message, lambda: select_model(hand_study, **kwargs))
