from __future__ import annotations

import pytest
import torch

from spaces import GhostModule, build_model, reference


@pytest.mark.parametrize(("name", "params"), [("ghostnet-0.5x", 2.59e6), ("ghostnet-1.0x", 5.18e6), ("ghostnet-1.3x", 7.36e6)])
def test_reference_params_match_the_published_figures(name, params):
    model = build_model(reference(name))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - params) / params < 0.005


def test_state_dict_uses_the_official_layout():
    state = build_model(reference("ghostnet-1.0x")).state_dict()
    # Keys and shapes the official implementation (and its published weights) use.
    assert state["conv_stem.weight"].shape == (16, 3, 3, 3)
    assert state["blocks.0.0.ghost1.primary_conv.0.weight"].shape == (8, 16, 1, 1)
    assert state["blocks.0.0.ghost1.cheap_operation.0.weight"].shape == (8, 1, 3, 3)
    assert state["blocks.1.0.conv_dw.weight"].shape == (48, 1, 3, 3)
    assert state["blocks.3.0.se.conv_reduce.weight"].shape == (20, 72, 1, 1)
    assert state["blocks.9.0.conv.weight"].shape == (960, 160, 1, 1)
    assert state["conv_head.weight"].shape == (1280, 960, 1, 1)
    assert state["classifier.weight"].shape == (1000, 1280)
    assert len([k for k in state if k.endswith("num_batches_tracked")]) > 0


def test_forward_shapes_and_feature_info():
    for preset, size, reductions in (("imagenet", 224, 32), ("cifar", 32, 8)):
        config = reference("ghostnet-0.5x", preset=preset, num_classes=7)
        model = build_model(config).eval()
        with torch.no_grad():
            features = model.forward_features(torch.randn(2, 3, size, size))
            logits = model.forward_head(features)
        assert logits.shape == (2, 7)
        assert features.shape[-1] == size // reductions
        assert model.feature_info[-1]["reduction"] == reductions
        assert model.feature_info[-1]["num_chs"] == features.shape[1] == config.channels(960)


@pytest.mark.parametrize(("ratio", "dw_size"), [(2, 3), (3, 5), (4, 1)])
def test_ghost_module_makes_ceil_out_over_s_intrinsic_maps(ratio, dw_size):
    module = GhostModule(24, 40, ratio=ratio, dw_size=dw_size)
    intrinsic = -(-40 // ratio)
    assert module.primary_conv[0].out_channels == intrinsic
    assert module.cheap_operation[0].out_channels == intrinsic * (ratio - 1)
    assert module.cheap_operation[0].kernel_size == (dw_size, dw_size)
    assert module(torch.randn(1, 24, 8, 8)).shape == (1, 40, 8, 8)
