"""The ground-truth and proxy-ranking benches' own logic, on the embedded digits (the benches'
CIFAR-10 archive is never needed by a test): the held-out split, the model set, the results file
and its resume rule, and the statistics of the report."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import ground_truth as gt  # noqa: E402
import proxy_ranking as pr  # noqa: E402

from evaluators.data import ImageSet  # noqa: E402
from evaluators.flops import count_cost  # noqa: E402
from spaces import reference  # noqa: E402


def test_the_held_out_split_is_fixed_disjoint_stratified_and_of_the_asked_size() -> None:
    # Each image carries its own index in its pixels, so the two parts can be told apart exactly.
    n = 600
    index = torch.arange(n)
    images = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = (index % 256).to(torch.uint8), (index // 256).to(torch.uint8)
    data = ImageSet(images, index % 3, ("a", "b", "c"), "indexed")

    def ids(part: ImageSet) -> set[int]:
        return set((part.images[:, 0, 0, 0].long() + 256 * part.images[:, 0, 0, 1].long()).tolist())

    pool, held = gt.holdout_split(data, holdout=150)
    assert (len(pool), len(held)) == (450, 150) and held.class_counts() == [50, 50, 50]
    assert ids(pool).isdisjoint(ids(held)) and ids(pool) | ids(held) == set(range(n))
    assert ids(gt.holdout_split(data, holdout=150)[1]) == ids(held)
    assert ids(gt.draw(pool, 100, seed=0)) < ids(pool) and len(gt.draw(pool, 100, seed=0)) == 100
    train, val = pr.proxy_data(pool, val=50, largest=300)
    assert ids(train).isdisjoint(ids(val)) and (ids(train) | ids(val)) < ids(pool)
    assert (len(train), len(val)) == (300, 50)


def test_spread_order_is_a_permutation_whose_prefixes_span_the_range() -> None:
    assert gt.spread_order(5) == [0, 4, 2, 1, 3]
    for n in (1, 2, 7, 15, 16):
        assert sorted(gt.spread_order(n)) == list(range(n))


def test_the_model_set_is_stratified_by_flops_and_deterministic() -> None:
    first = gt.model_set(models=4, pool=8, seed=3, input_size=16)
    second = gt.model_set(models=4, pool=8, seed=3, input_size=16)
    assert [c.id for _, c in first] == [c.id for _, c in second]
    names = [n for n, _ in first]
    assert names[:5] == ["ghostnet-0.35x", "ghostnet-1.3x", "ghostnet-0.75x", "ghostnet-0.5x", "ghostnet-1.0x"]
    assert sorted(names[5:]) == [f"sample-{i:02d}" for i in range(4)]
    sampled = sorted((n, count_cost(c).flops) for n, c in first[5:])
    flops = [f for _, f in sampled]
    assert flops == sorted(flops) and len(set(flops)) == 4


def test_runs_are_appended_to_their_model_line_and_concatenated_files_merge(tmp_path: Path) -> None:
    path = tmp_path / "gt.jsonl"
    config = reference("ghostnet-0.35x", preset="cifar", num_classes=10, input_size=16)
    run = {"seed": 0, "accuracy": 0.5, "epochs": 5, "images": 40000, "seconds": 1.0}
    gt.append_run(path, name="ghostnet-0.35x", config=config, run=run)
    gt.append_run(path, name="ghostnet-0.35x", config=config, run={**run, "seed": 1, "accuracy": 0.6})
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    cost = count_cost(config)
    assert (row["params"], row["flops"], [r["seed"] for r in row["runs"]]) == (cost.params, cost.flops, [0, 1])
    assert gt.mean_accuracy(row) == pytest.approx(0.55)
    doubled = tmp_path / "both.jsonl"
    doubled.write_text(path.read_text() + json.dumps({**row, "runs": [{**run, "seed": 2}]}) + "\n")
    assert [r["seed"] for r in gt.read_results(doubled)[config.id]["runs"]] == [0, 1, 2]


def test_an_existing_results_file_needs_resume(tmp_path: Path, capsys) -> None:
    path = tmp_path / "gt.jsonl"
    config = reference("ghostnet-0.35x", preset="cifar", num_classes=10, input_size=16)
    gt.append_run(path, name="x", config=config, run={"seed": 0, "accuracy": 0.5, "epochs": 1, "images": 1, "seconds": 1.0})
    before = path.read_text()
    with pytest.raises(SystemExit) as exit_info:
        gt.main(["--results", str(path), "--data", str(tmp_path / "absent.tar.gz")])
    assert exit_info.value.code == 2 and "pass --resume" in capsys.readouterr().err
    assert path.read_text() == before
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(SystemExit, match="bad.jsonl:1 is not a ground-truth row"):
        gt.read_results(bad)


def test_a_models_file_gives_its_configs_for_cifar_at_the_recipe_size(tmp_path: Path, capsys) -> None:
    a = reference("ghostnet-0.35x", preset="cifar", num_classes=100, input_size=32)
    b = reference("ghostnet-0.5x", preset="cifar", num_classes=10, input_size=16)
    path = tmp_path / "claimants.jsonl"
    path.write_text("".join(json.dumps({"name": n, "config": c.to_dict(), "claims": ["x"]}) + "\n" for n, c in (("a", a), ("b", b))))
    models = gt.models_from_file(path, input_size=16)
    assert [n for n, _ in models] == ["a", "b"]
    assert models[0][1] == a.replace(num_classes=10, input_size=16) and models[1][1] == b
    path.write_text(path.read_text() + '{"name": "c"}\n')
    with pytest.raises(ValueError, match="line 3: not a {name, config} object"):
        gt.models_from_file(path, input_size=16)
    results = tmp_path / "gt.jsonl"
    with pytest.raises(SystemExit) as exit_info:  # refused before any data is read or anything written
        gt.main(["--models-file", str(path), "--results", str(results), "--data", str(tmp_path / "absent.tar.gz")])
    assert exit_info.value.code == 2 and "--models-file" in capsys.readouterr().err and not results.exists()


def test_a_run_is_claimed_once_by_a_live_process_and_taken_over_from_an_ended_one(tmp_path: Path) -> None:
    path = tmp_path / "gt.jsonl"
    claims = tmp_path / "gt.jsonl.claims"
    never_done = lambda rows: False  # noqa: E731
    assert gt.claim_run(path, "a", done=never_done)
    assert json.loads(claims.read_text())["a"]["pid"] == os.getpid()
    assert gt.claim_run(path, "a", done=never_done)  # its own claim, again (a restarted loop)
    here = {"host": socket.gethostname(), "boot": gt._boot_id(), "since": "2026-12-02T00:00:00Z"}
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    claims.write_text(json.dumps({
        "live": {**here, "pid": os.getppid()},  # pytest's parent: alive, not this process
        "ended": {**here, "pid": int(ended.stdout)},
        "rebooted": {**here, "boot": "another boot", "pid": os.getppid()},
        "elsewhere": {**here, "host": "another-machine", "pid": 1},
    }))  # fmt: skip
    assert not gt.claim_run(path, "live", done=never_done)
    assert gt.claim_run(path, "ended", done=never_done) and gt.claim_run(path, "rebooted", done=never_done)
    assert not gt.claim_run(path, "elsewhere", done=never_done)
    assert {k: v["pid"] for k, v in json.loads(claims.read_text()).items()} == {
        "live": os.getppid(), "ended": os.getpid(), "rebooted": os.getpid(), "elsewhere": 1}  # fmt: skip
    assert not gt.claim_run(path, "new", done=lambda rows: True)  # finished: never claimed
    gt.release_run(path, "ended")
    assert set(json.loads(claims.read_text())) == {"live", "rebooted", "elsewhere"}


def test_bootstrap_and_leave_one_out_ridge_give_known_answers() -> None:
    x = np.arange(8.0)
    perfect = pr.bootstrap(x, 2 * x + 1, resamples=200)
    assert perfect["kendall"] == pytest.approx((1.0, 1.0, 1.0)) and perfect["spearman"] == pytest.approx((1.0, 1.0, 1.0))
    reversed_ = pr.bootstrap(x, -x, resamples=200)
    assert reversed_["kendall"][0] == pytest.approx(-1.0)
    # an exactly linear target: a nearly unpenalised fit predicts each left-out model exactly
    features = np.c_[x, x**2]
    target = 3 * x - 0.5 * x**2 + 2
    assert np.allclose(pr.loo_ridge(features, target, alpha=1e-9), target, atol=1e-5)
    # and the left-out model's own value never enters its prediction
    shifted = target.copy()
    shifted[3] += 100.0
    assert pr.loo_ridge(features, shifted, alpha=1e-9)[3] == pytest.approx(target[3], abs=1e-4)
    # predicted from other features (other batches), a left-out model gets the fit's value there
    other = features.copy()
    other[3] = features[5]
    moved = pr.loo_ridge(features, target, alpha=1e-9, predict_from=other)
    assert moved[3] == pytest.approx(target[5], abs=1e-4) and np.allclose(np.delete(moved, 3), np.delete(target, 3), atol=1e-5)


def test_budgets_parse_and_bad_ones_are_refused() -> None:
    assert pr.parse_budget("10000x3") == (10000, 3, 16)
    assert pr.parse_budget("2400x2@8") == (2400, 2, 8)
    for bad in ("10000", "x3", "0x1", "10x1@0", "ax2"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected IMAGESxEPOCHS"):
            pr.parse_budget(bad)


def test_a_budget_measured_on_some_models_is_ranked_on_those_beside_flops(tmp_path: Path, capsys) -> None:
    # Five widths: a ground truth that rises with width, every zero-cost score measured, budget
    # 100x1 on all five and ordering them backwards, budget 200x1 on four only and ordering them right.
    widths = ["ghostnet-0.35x", "ghostnet-0.5x", "ghostnet-0.75x", "ghostnet-1.0x", "ghostnet-1.3x"]
    truth_path, proxy_path = tmp_path / "gt.jsonl", tmp_path / "proxy.jsonl"
    zero_cost = {"kind": "zero_cost", "scores": {n: 1.0 + i for i, n in enumerate(pr.ZERO_COST_SCORES)},
                 "seconds": {**{n: 1.0 for n in pr.ZERO_COST_SCORES}, "flops": 0.5}}
    lines = []
    for i, name in enumerate(widths):
        config = reference(name, preset="cifar", num_classes=10, input_size=16)
        gt.append_run(truth_path, name=name, config=config,
                      run={"seed": 0, "accuracy": 0.5 + i / 100, "epochs": 5, "images": 40000, "seconds": 1.0})
        runs = [{**zero_cost, "scores": {**zero_cost["scores"], "synflow": 10.0 ** (i + 1)}},
                {"kind": "train", "budget": "100x1@16", "accuracy": 0.3 - i / 100, "seconds": 2.0}]
        if i > 0:
            runs.append({"kind": "train", "budget": "200x1@16", "accuracy": 0.2 + i / 100, "seconds": 4.0})
        lines.append(json.dumps({**json.loads(truth_path.read_text().splitlines()[i]), "runs": runs}))
    proxy_path.write_text("\n".join(lines) + "\n")
    args = argparse.Namespace(results=proxy_path, fidelity=None, budgets=[(100, 1, 16), (200, 1, 16)])
    pr.report(args, gt.read_results(truth_path))
    table = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[1].isdigit():
            table.setdefault(cells[0], []).append((int(cells[1]), cells[2].split()[0], cells[4]))
    assert table["proxy 100x1@16"] == [(5, "-1.00", "2.0")]
    assert table["proxy 200x1@16"] == [(4, "1.00", "4.0")]
    assert table["FLOPs only"] == [(5, "1.00", "0.5"), (4, "1.00", "0.5")]
