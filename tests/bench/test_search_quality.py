"""The search-quality bench's claim bookkeeping (issue 18, section 4): which searched models are
sent to the ground-truth recipe, and how their claims are judged, on constructed studies."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import ground_truth as gt  # noqa: E402
import search_quality as sq  # noqa: E402

from spaces import reference  # noqa: E402


def _config(name: str):
    return reference(name, preset="cifar", num_classes=10, input_size=16)


def _frame(sampler: str, seed: int, trials: list[tuple[int, str, float]]) -> pd.DataFrame:
    rows = [{"number": n, "config_id": _config(c).id, "config": _config(c).to_dict(), "accuracy": a, "latency_ms": 1.0 + n,
             "flops": float(_config(c).input_size * n + 1)} for n, c, a in trials]
    return pd.DataFrame(rows).assign(sampler=sampler, seed=seed)


def test_each_baseline_sends_the_claimant_with_the_largest_margin_once(tmp_path: Path) -> None:
    # Two studies dominate 0.35x (margins 0.02 and 0.05) and 0.5x (0.01 and 0.04); random's
    # trial 9 has the larger margin on both; nobody dominates 1.0x: its closest miss is tpe's
    # trial 7 (-0.01, not random's -0.03); 1.3x has nothing no slower and no bigger.
    frames = [_frame("tpe", 0, [(6, "ghostnet-0.75x", 0.70), (7, "ghostnet-1.0x", 0.72)]),
              _frame("random", 1, [(9, "ghostnet-1.3x", 0.74)])]
    rows = [
        {"sampler": "tpe", "seed": 0, "baseline": "ghostnet-0.35x", "dominated_by": 2, "best_trial": 6, "d_accuracy": 0.02},
        {"sampler": "random", "seed": 1, "baseline": "ghostnet-0.35x", "dominated_by": 1, "best_trial": 9, "d_accuracy": 0.05},
        {"sampler": "tpe", "seed": 0, "baseline": "ghostnet-0.5x", "dominated_by": 1, "best_trial": 7, "d_accuracy": 0.01},
        {"sampler": "random", "seed": 1, "baseline": "ghostnet-0.5x", "dominated_by": 1, "best_trial": 9, "d_accuracy": 0.04},
        {"sampler": "tpe", "seed": 0, "baseline": "ghostnet-1.0x", "dominated_by": 0, "best_trial": 7, "d_accuracy": -0.01},
        {"sampler": "random", "seed": 1, "baseline": "ghostnet-1.0x", "dominated_by": 0, "best_trial": 9, "d_accuracy": -0.03},
        {"sampler": "random", "seed": 1, "baseline": "ghostnet-1.3x", "dominated_by": 0},
    ]
    out = {c["name"]: c for c in sq.claimants(frames, rows)}
    assert sorted(out) == [f"{sq.study_name('random', 1)}-t9", f"{sq.study_name('tpe', 0)}-t7"]  # tpe's trial 6 sends nothing
    won = out[f"{sq.study_name('random', 1)}-t9"]
    assert won["claims"] == ["ghostnet-0.35x", "ghostnet-0.5x"] and won["misses"] == []
    assert won["config"] == _config("ghostnet-1.3x").to_dict() and won["accuracy_predicted"] == 0.74
    assert won["margins"] == {"ghostnet-0.35x": 0.05, "ghostnet-0.5x": 0.04}
    missed = out[f"{sq.study_name('tpe', 0)}-t7"]
    assert (missed["claims"], missed["misses"], missed["margins"]) == ([], ["ghostnet-1.0x"], {"ghostnet-1.0x": -0.01})


def test_a_claim_holds_when_the_claimants_ground_truth_is_at_least_the_baselines(tmp_path: Path) -> None:
    truth, claimant_truth, claimants = tmp_path / "gt.jsonl", tmp_path / "claimants_gt.jsonl", tmp_path / "claimants.jsonl"
    for name, runs in (("ghostnet-0.35x", [0.60, 0.62]), ("ghostnet-0.5x", [0.65, 0.67])):
        for seed, accuracy in enumerate(runs):
            gt.append_run(truth, name=name, config=_config(name), run={"seed": seed, "accuracy": accuracy})
    # The claimants: one trained twice (mean 0.63), one never trained yet.
    gt.append_run(claimant_truth, name="c1", config=_config("ghostnet-0.75x"), run={"seed": 0, "accuracy": 0.62})
    gt.append_run(claimant_truth, name="c1", config=_config("ghostnet-0.75x"), run={"seed": 1, "accuracy": 0.64})
    lines = [{"name": "c1", "config": _config("ghostnet-0.75x").to_dict(), "accuracy_predicted": 0.7, "claims": ["ghostnet-0.35x", "ghostnet-0.5x"]},
             {"name": "c2", "config": _config("ghostnet-1.0x").to_dict(), "accuracy_predicted": 0.71, "claims": ["ghostnet-0.5x"]},
             {"name": "c3", "config": _config("ghostnet-1.3x").to_dict(), "accuracy_predicted": 0.6, "claims": [], "misses": ["ghostnet-0.35x", "ghostnet-0.5x"]}]
    gt.append_run(claimant_truth, name="c3", config=_config("ghostnet-1.3x"), run={"seed": 0, "accuracy": 0.615})
    claimants.write_text("".join(json.dumps(line) + "\n" for line in lines))
    got = {(r["claimant"], r["baseline"]): r for r in sq.check_claims(claimants, claimant_truth, truth)}
    assert got[("c1", "ghostnet-0.35x")]["holds"] is True and abs(got[("c1", "ghostnet-0.35x")]["difference"] - 0.02) < 1e-9
    assert got[("c1", "ghostnet-0.5x")]["holds"] is False and abs(got[("c1", "ghostnet-0.5x")]["difference"] + 0.03) < 1e-9
    assert got[("c1", "ghostnet-0.5x")]["truth_runs"] == 2
    assert got[("c2", "ghostnet-0.5x")]["holds"] is None and got[("c2", "ghostnet-0.5x")]["truth_runs"] == 0
    # A miss holds where the baseline is the more accurate in truth: 0.66 beats 0.615, 0.61 does not.
    assert got[("c3", "ghostnet-0.5x")]["predicted"] == "loses" and got[("c3", "ghostnet-0.5x")]["holds"] is True
    assert got[("c3", "ghostnet-0.35x")]["holds"] is False and got[("c1", "ghostnet-0.35x")]["predicted"] == "dominates"
