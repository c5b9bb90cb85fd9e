from __future__ import annotations

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from evaluators.flops import count_cost, count_model
from spaces import build_model, load_space, random_suggest, reference


@pytest.mark.parametrize(
    ("name", "params", "macs"),
    [("ghostnet-0.5x", 2.59e6, 42.3e6), ("ghostnet-1.0x", 5.18e6, 141.2e6), ("ghostnet-1.3x", 7.36e6, 227.0e6)],
)
def test_reference_figures(name, params, macs):
    cost = count_cost(reference(name))
    assert abs(cost.params - params) / params < 0.005
    assert abs(cost.flops - macs) / macs < 0.005


def torch_macs(config):
    model = build_model(config).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, config.input_size, config.input_size))
    return counter.get_total_flops() // 2  # torch counts a multiply-add as two flops


def test_matches_torch_flop_counter_on_random_configs():
    space = load_space()
    suggest = random_suggest(random.Random(7))
    for _ in range(4):
        config = space.to_config(space.sample(suggest), preset="cifar")
        assert count_cost(config).flops == torch_macs(config)
    assert count_cost(reference("ghostnet-1.0x")).flops == torch_macs(reference("ghostnet-1.0x"))


def test_count_model_leaves_the_model_in_its_mode_and_is_quiet(capfd):
    model = build_model(reference("ghostnet-0.35x", preset="cifar")).train()
    cost = count_model(model, 32)
    assert model.training
    assert cost.params == sum(p.numel() for p in model.parameters())
    captured = capfd.readouterr()
    assert "Unsupported operator" not in captured.err + captured.out
    assert "TracerWarning" not in captured.err + captured.out
