from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from results import REFERENCE_POINT, ResultsError, hypervolume, hypervolume_history, load_trials, normalisation_bounds, pareto_front

SIGN = {"accuracy": -1.0, "latency_ms": 1.0, "flops": 1.0, "params": 1.0}


def random_frame(seed, n, objectives):
    """Points on a coarse grid (so ties and duplicates happen), some infeasible or unmeasured."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "number": np.arange(n),
        "feasible": rng.random(n) < 0.8,
        "baseline": [None] * n,
        "accuracy": rng.integers(0, 6, n) / 5,
        "latency_ms": rng.integers(1, 7, n) * 2.0,
        "flops": rng.integers(1, 7, n) * 1e7,
        "params": rng.integers(1, 7, n) * 1e6,
    })  # fmt: skip
    frame.loc[rng.random(n) < 0.1, "latency_ms"] = np.nan
    frame.attrs["objectives"] = objectives
    return frame


def brute_force_front(frame, objectives):
    rows = [r for _, r in frame.iterrows() if r["feasible"] and all(pd.notna(r[o]) for o in objectives)]
    loss = [[SIGN[o] * r[o] for o in objectives] for r in rows]
    keep = []
    for i, a in enumerate(loss):
        dominated = any(all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a)) for b in loss)
        if not dominated:
            keep.append(int(rows[i]["number"]))
    return sorted(keep)


@pytest.mark.parametrize("objectives", [["accuracy", "latency_ms"], ["accuracy", "latency_ms", "flops"], ["accuracy", "latency_ms", "flops", "params"], ["flops", "params"]])
@pytest.mark.parametrize("seed", range(5))
def test_front_matches_brute_force(seed, objectives):
    frame = random_frame(seed, 60, objectives)
    assert sorted(pareto_front(frame)["number"]) == brute_force_front(frame, objectives)


def test_identical_points_are_all_kept():
    frame = random_frame(0, 4, ["accuracy", "latency_ms"])
    frame[["feasible", "accuracy", "latency_ms"]] = [[True, 0.9, 2.0]] * 3 + [[True, 0.5, 4.0]]
    assert pareto_front(frame)["number"].tolist() == [0, 1, 2]


def test_hand_checked_front(hand_study):
    front = pareto_front(load_trials(hand_study))
    # Best accuracy first; 1 and 4 tie exactly, then trial number decides their order.
    assert front["number"].tolist() == [3, 0, 1, 4]
    assert front.attrs["objectives"] == ["accuracy", "latency_ms"]
    # Over accuracy and flops instead, 4 (25M FLOPs) is dominated by 1 (20M, same accuracy)
    # and the baseline 0 (0.80, 141M) by 3 (0.90, 90M).
    assert pareto_front(load_trials(hand_study), objectives=["accuracy", "flops"])["number"].tolist() == [3, 1]


def test_hand_checked_hypervolume(hand_study):
    frame = load_trials(hand_study)
    # Bounds: accuracy 1, latency the study's 25 ms limit. Losses of the front:
    # 3 (0.1, 0.8), 0 (0.2, 0.4), 1 and 4 (0.3, 0.2). Area under the staircase up to (1.1, 1.1):
    # 0.1 * 0.3 + 0.1 * 0.7 + 0.8 * 0.9 = 0.82.
    assert normalisation_bounds(frame) == {"accuracy": 1.0, "latency_ms": 25.0}
    assert hypervolume(frame) == pytest.approx(0.82)
    assert hypervolume(pareto_front(frame)) == pytest.approx(0.82)
    # After 0: 0.9 * 0.7; after 1: + 0.72 - 0.63 + 0.07; 2 is dominated; 3 adds 0.03; the rest add nothing.
    history = hypervolume_history(frame)
    assert history["number"].tolist() == list(range(9))
    assert history["hypervolume"].tolist() == pytest.approx([0.63, 0.79, 0.79, 0.82, 0.82, 0.82, 0.82, 0.82, 0.82])


def test_fixed_bounds_compare_studies_on_one_scale(hand_study):
    frame = load_trials(hand_study)
    # latency / 50: losses (0.1, 0.4), (0.2, 0.2), (0.3, 0.1): 0.1*0.7 + 0.1*0.9 + 0.8*1.0 = 0.96.
    assert hypervolume(frame, bounds={"accuracy": 1.0, "latency_ms": 50.0}) == pytest.approx(0.96)
    with pytest.raises(ResultsError, match="miss latency_ms"):
        hypervolume(frame, bounds={"accuracy": 1.0})
    with pytest.raises(ResultsError, match="positive"):
        hypervolume(frame, bounds={"accuracy": 1.0, "latency_ms": 0})


def frame_of(rows, objectives):
    frame = pd.DataFrame(rows, columns=objectives)
    frame.insert(0, "number", range(len(frame)))
    frame["feasible"] = True
    frame.attrs["objectives"] = objectives
    return frame


def test_hand_checked_hypervolume_in_three_and_four_dimensions():
    three = ["accuracy", "latency_ms", "flops"]
    bounds = {"accuracy": 1.0, "latency_ms": 10.0, "flops": 100.0, "params": 1e4}
    # Losses A (0.1, 0.1, 0.1) and B (0.5, 0.05, 0.05): 1.0^3 + 0.6 * 1.05^2 - 0.6 (their overlap).
    points = frame_of([[0.9, 1.0, 10.0], [0.5, 0.5, 5.0]], three)
    assert hypervolume(points, bounds=bounds) == pytest.approx(1.0 + 0.6 * 1.05**2 - 0.6)
    four = [*three, "params"]
    points = frame_of([[0.9, 1.0, 10.0, 1e3], [0.5, 0.5, 5.0, 5e2]], four)
    assert hypervolume(points, bounds=bounds) == pytest.approx(1.0 + 0.6 * 1.05**3 - 0.6)
    # A point beyond the reference point adds nothing; the best possible point gives 1.1^d.
    assert hypervolume(frame_of([[0.0, 12.0, 10.0]], three), bounds=bounds) == 0.0
    assert hypervolume(frame_of([[1.0, 0.0, 0.0]], three), bounds=bounds) == pytest.approx(REFERENCE_POINT**3)


def inclusion_exclusion(losses, ref):
    """Hypervolume as the signed sum of every intersection of boxes: exact, exponential."""
    total = 0.0
    for k in range(1, len(losses) + 1):
        for subset in itertools.combinations(losses, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * np.prod(np.clip(ref - corner, 0, None))
    return total


@pytest.mark.parametrize("objectives", [["accuracy", "latency_ms"], ["accuracy", "latency_ms", "flops"], ["accuracy", "latency_ms", "flops", "params"]])
@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_matches_inclusion_exclusion(seed, objectives):
    rng = np.random.default_rng(seed)
    bounds = {"accuracy": 1.0, "latency_ms": 10.0, "flops": 1e8, "params": 1e7}
    raw = rng.random((8, len(objectives))) * [1.2 * bounds[o] for o in objectives]  # some beyond the bounds
    frame = frame_of(raw.tolist(), objectives)
    losses = np.array([[r[o] / bounds[o] if SIGN[o] > 0 else 1 - r[o] / bounds[o] for o in objectives] for _, r in frame.iterrows()])
    expected = inclusion_exclusion(losses, np.full(len(objectives), REFERENCE_POINT))
    assert hypervolume(frame, bounds=bounds) == pytest.approx(expected)


def test_unknown_objective_is_a_one_line_error(hand_study):
    with pytest.raises(ResultsError, match="unknown objective.*'speed'"):
        pareto_front(load_trials(hand_study), objectives=["accuracy", "speed"])


def test_empty_front_has_zero_hypervolume(make_study, storage_url):
    frame = load_trials(make_study(storage_url, "empty", ["accuracy", "flops"], []))
    assert pareto_front(frame).empty and hypervolume(frame) == 0.0
    assert hypervolume_history(frame).empty


def test_confirmed_runs_move_the_front(hand_study):
    # ghostnas confirm's extra training runs replace a trial's accuracy by the mean of all its
    # runs. Trial 0 (0.80 in the search) averages 0.60 over two runs and falls behind 1 and 4
    # (0.70, faster); trial 2 (0.60) averages 0.75 at 6 ms and joins the front. Failed or
    # malformed runs count for nothing.
    hand_study.set_user_attr("accuracy_runs.0", [{"seed": 1, "accuracy": 0.40}, {"seed": 2, "failed": "diverged"}])
    hand_study.set_user_attr("accuracy_runs.2", [{"seed": 1, "accuracy": 0.90}, {"seed": 2, "accuracy": "high"}])
    frame = load_trials(hand_study)
    assert pareto_front(frame)["number"].tolist() == [3, 2, 1, 4]
    row = frame.set_index("number").loc[0]
    assert row["accuracy"] == pytest.approx(0.60) and row["accuracy_search"] == pytest.approx(0.80)
    assert row["accuracy_runs"] == 2 and row["accuracy_sd"] == pytest.approx(np.std([0.8, 0.4], ddof=1))
    # Unconfirmed trials keep their one run; trials without an accuracy have no run count.
    assert frame.set_index("number").loc[3, "accuracy_runs"] == 1 and np.isnan(frame.set_index("number").loc[3, "accuracy_sd"])
    assert pd.isna(frame.set_index("number").loc[6, "accuracy_runs"])
