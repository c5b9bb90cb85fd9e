"""The later Ghost family in the schema, the builder and the space: GhostNetV2 (DFC attention),
GhostNetV3 (re-parameterisable, fused for inference), YOLOv5's Ghost module, dilated cheap ops and
the detection backbone. timm (a dev dependency) is the parity reference for V2 and V3."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from evaluators.flops import count_model
from spaces import BLOCK_TYPES, ConfigError, GhostNetConfig, build_model, load_space, random_suggest, reference, reference_names
from spaces._family import GhostBottleneckV3, YoloGhostBottleneck

timm = pytest.importorskip("timm")

FAMILY_SPACE = Path(__file__).parents[2] / "spaces" / "ghostnet_family.yaml"
TIMM_NAMES = {
    "ghostnetv2-1.0x": "ghostnetv2_100",
    "ghostnetv2-1.3x": "ghostnetv2_130",
    "ghostnetv2-1.6x": "ghostnetv2_160",
    "ghostnetv3-1.0x": "ghostnetv3_100",
}


def tiny(**changes) -> GhostNetConfig:
    """GhostNet 0.35x at 32x32 (cifar preset), 10 classes, with ``changes``."""
    return reference("ghostnet-0.35x", preset="cifar").replace(**changes)


def without_se(config: GhostNetConfig) -> tuple:
    return tuple(tuple(dataclasses.replace(b, se=0.0) for b in stage) for stage in config.stages)


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters away from their initial 0/1, as after training,
    so that folding BN into convs is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t, low, high in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.5, 2.0), (m.weight.data, 0.5, 1.5), (m.bias.data, -0.5, 0.5)):
                t.copy_(torch.rand(t.shape, generator=gen) * (high - low) + low)


# -- schema ---------------------------------------------------------------------------------------


def test_v1_configs_keep_their_ids_and_files():
    # Pinned before the family fields existed: studies and exports written then stay valid.
    ids = {("ghostnet-1.0x", "imagenet"): "d8c95d3e76a0", ("ghostnet-1.0x", "cifar"): "164bc020110d", ("ghostnet-0.35x", "cifar"): "c21c94aebb43"}
    for (name, preset), config_id in ids.items():
        config = reference(name, preset=preset)
        assert config.id == config_id
        assert not {"block_types", "module", "dw_dilation"} & set(config.to_dict())
    explicit = reference().replace(block_types=("ghost",) * 9)
    assert explicit == reference() and explicit.id == reference().id  # stored as () either way


def test_family_references_are_the_v1_table_with_timm_block_types():
    v2, v3 = reference("ghostnetv2-1.3x"), reference("ghostnetv3-1.0x")
    assert v2.block_types == ("ghost", "ghost") + ("ghostv2",) * 7 and v2.width == 1.3
    assert v3.block_types == ("ghostv3-nodfc",) * 2 + ("ghostv3",) * 7 and v3.reparameterisable
    assert [b.row() for b in v2.blocks] == [b.row() for b in reference().blocks]
    assert {reference(n).timm_version() for n in TIMM_NAMES} == {"v2", "v3"}
    assert reference("ghostnetv2-1.6x").timm_version() == "v2" and reference("ghostnet-0.5x").timm_version() == "v1"
    assert len({reference(n).id for n in reference_names()}) == len(reference_names())
    for name in TIMM_NAMES:
        config = reference(name, preset="cifar")
        assert GhostNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert GhostNetConfig.from_dict(json.loads(json.dumps(config.to_official(strict=False)))) == config
        assert "block type" in config.official_incompatibility()


def test_timm_and_official_compatibility_name_the_reason():
    v2 = reference("ghostnetv2-1.0x")
    attention_early = v2.replace(block_types=("ghostv2",) * 9)
    assert attention_early.timm_version() is None
    assert "layer 0: ghostv2 where v2 has ghost" in attention_early.timm_incompatibility()
    assert "dw_dilation 2" in v2.replace(dw_dilation=2).timm_incompatibility()
    yolo = reference().replace(module="yolov5", dw_size=5, stages=without_se(reference()))
    assert yolo.timm_version() is None and "module yolov5" in yolo.official_incompatibility()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"block_types": ("ghostv4",) * 9}, "block type must be one of"),
        ({"block_types": ("ghost",) * 8 + ("ghostv2",) + ("ghost",)}, "block_types has 10 entries for 9 stages"),
        ({"block_types": "ghostv2"}, "one block type per stage"),
        ({"module": "yolov8"}, "module must be one of ghostnet, yolov5"),
        ({"module": "yolov5"}, "module yolov5 fixes ratio 2, dw_size 5, no SE and ghost blocks; this config has dw_size 3, SE"),
        ({"dw_dilation": 0}, "dw_dilation must be an integer in [1, 4]"),
        ({"dw_dilation": 2, "dw_size": 1}, "needs dw_size > 1"),
        ({"dw_dilation": True}, "dw_dilation must be an integer"),
        ({"input_size": 8, "block_types": ("ghost",) * 8 + ("ghostv2",)}, "stage 8 (ghostv2) sees a 1x1 input"),
    ],
)
def test_family_fields_are_validated(changes, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        tiny(**changes)


def test_family_fields_read_from_files(tmp_path):
    config = tiny(block_types=("ghost", "ghost") + ("ghostv3",) * 7, dw_dilation=2)
    path = tmp_path / "cfg.yaml"
    config.save(path)
    assert GhostNetConfig.load(path) == config and "dw_dilation: 2" in path.read_text()
    with pytest.raises(ConfigError, match="block type must be one of"):
        GhostNetConfig.from_dict({**config.to_dict(), "block_types": ["ghost"] * 8 + [7]})


# -- parity with timm -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TIMM_NAMES))
def test_references_match_timm_params_flops_and_weights(name):
    torch.manual_seed(0)
    ours, theirs = build_model(reference(name)), timm.create_model(TIMM_NAMES[name], pretrained=False)
    a, b = count_model(ours, 224), count_model(theirs, 224)
    assert a.params == b.params
    assert abs(a.flops - b.flops) <= 0.005 * b.flops
    # Stronger than counts: the same state dict keys and shapes, so timm's weights load and
    # give the same outputs.
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-5)
    if name.startswith("ghostnetv3"):  # and the inference forms agree too
        theirs.convert_to_deploy()
        fused = ours.fuse()
        a, b = count_model(fused, 224), count_model(theirs, 224)
        assert a.params == b.params < sum(p.numel() for p in build_model(reference(name)).parameters())
        assert abs(a.flops - b.flops) <= 0.005 * b.flops
        assert fused.state_dict().keys() == theirs.state_dict().keys()


def test_published_v2_figures():
    # timm's model card: 6.16 M params; the paper: 167 M FLOPs (MACs) at 224x224.
    cost = count_model(build_model(reference("ghostnetv2-1.0x")), 224)
    assert cost.params == 6_156_908 and round(cost.flops / 1e6) == 167


@pytest.mark.parametrize(
    "config",
    [
        reference("ghostnetv3-1.0x", preset="cifar", num_classes=10),
        tiny(block_types=("ghostv3-nodfc",) * 4 + ("ghostv3",) * 5, ratio=3, dw_size=5, dw_dilation=2),
    ],
    ids=["ghostnetv3-1.0x", "ratio3-dilated"],
)
def test_fused_v3_gives_the_unfused_outputs(config):
    torch.manual_seed(1)
    model = build_model(config)
    randomise_bn(model)
    model.eval()
    x = torch.randn(2, 3, config.input_size, config.input_size)
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
    assert not any(isinstance(m, nn.BatchNorm2d) and "rpr" in n for n, m in model.named_modules())
    assert all(m.fused for m in model.modules() if isinstance(m, GhostBottleneckV3))
    assert (before - after).abs().max().item() <= 1e-4
    assert before.abs().max().item() > 1e-2  # the outputs are not trivially zero


# -- blocks ---------------------------------------------------------------------------------------


def test_yolov5_module_is_yolov5s_ghost_conv():
    model = build_model(tiny(module="yolov5", dw_size=5, stages=without_se(tiny())))
    blocks = [m for m in model.modules() if isinstance(m, YoloGhostBottleneck)]
    assert len(blocks) == 16 and not any(type(m).__name__ == "SqueezeExcite" for m in model.modules())
    state = model.state_dict()
    # YOLOv5's names: conv.0 = GhostConv(cv1 1x1, cv2 5x5 depthwise of half the output).
    assert state["blocks.0.0.conv.0.cv1.conv.weight"].shape == (4, 8, 1, 1)  # 0.35x: 8 stem channels, exp 8
    assert state["blocks.0.0.conv.0.cv2.conv.weight"].shape == (4, 1, 5, 5)
    assert isinstance(blocks[0].conv[0].cv1.act, nn.SiLU) and isinstance(blocks[0].conv[2].cv1.act, nn.Identity)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("kind", ["ghost", "ghostv3"])
def test_dilation_widens_the_cheap_op_and_keeps_the_shape(kind):
    model = build_model(tiny(dw_size=3, dw_dilation=3, block_types=(kind,) * 9))
    cheap = [m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and "cheap" in n and m.kernel_size == (3, 3)]
    assert cheap and all(m.dilation == (3, 3) and m.padding == (3, 3) for m in cheap)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_v2_attention_starts_where_the_config_says():
    model = build_model(reference("ghostnetv2-1.0x"))
    with_attention = [i for i, stage in enumerate(model.blocks[:-1]) if stage[0].ghost1.short_conv is not None]
    assert with_attention == list(range(2, 9))
    assert all(stage[0].ghost2.short_conv is None for stage in model.blocks[:-1])


# -- detection backbone ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["imagenet", "cifar"])
@pytest.mark.parametrize("name", ["ghostnet-0.5x", "ghostnetv2-1.0x", "ghostnetv3-1.0x"])
def test_features_only_returns_the_three_deepest_strides(name, preset):
    config = reference(name, preset=preset, input_size=64 if preset == "imagenet" else 32)
    backbone = build_model(config, features_only=True).eval()
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, config.input_size, config.input_size))
    reductions = [8, 16, 32] if preset == "imagenet" else [2, 4, 8]
    assert [f["reduction"] for f in backbone.feature_info] == reductions
    assert [f["module"] for f in backbone.feature_info] == ["blocks.4", "blocks.6", "blocks.8"]
    assert [f.shape for f in features] == [
        (2, info["num_chs"], config.input_size // r, config.input_size // r) for info, r in zip(backbone.feature_info, reductions)
    ]
    assert [f["num_chs"] for f in backbone.feature_info] == [config.channels(c) for c in (40, 112, 160)]
    # The classifier's trained weights load into the backbone (no head, same names).
    classifier, keys = build_model(config).state_dict(), set(backbone.state_dict())
    assert keys < set(classifier) and "conv_head.weight" not in keys
    backbone.load_state_dict({k: v for k, v in classifier.items() if k in keys})


def test_features_only_matches_the_classifier_stages():
    config = reference("ghostnetv2-1.0x", preset="cifar")
    torch.manual_seed(0)
    full = build_model(config).eval()
    backbone = build_model(config, features_only=True).eval()
    keys = set(backbone.state_dict())
    backbone.load_state_dict({k: v for k, v in full.state_dict().items() if k in keys})
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        deepest = backbone(x)[-1]
        stem = full.act1(full.bn1(full.conv_stem(x)))
        expected = full.blocks[:9](stem)
    assert torch.equal(deepest, expected)


# -- the space ------------------------------------------------------------------------------------


def test_default_space_has_no_family_dimension():
    dims = load_space().dimensions()
    assert not {"module", "dw_dilation"} & set(dims) and not any(name.endswith(".block") for name in dims)


def test_family_space_holds_the_references_and_pins_yolov5_samples():
    space = load_space(FAMILY_SPACE)
    for name in ("ghostnet-1.0x", "ghostnetv2-1.0x", "ghostnetv3-1.0x"):
        config = reference(name)
        assert space.to_config(space.to_params(config)) == config
    kinds, yolo = set(), 0
    for seed in range(30):
        params = space.sample(random_suggest(random.Random(seed)))
        config = space.to_config(params, preset="cifar", num_classes=10)
        assert space.to_params(config) == params
        kinds |= set(config.block_types or ("ghost",))
        if config.module == "yolov5":
            yolo += 1
            assert (config.ratio, config.dw_size, config.block_types) == (2, 5, ())
            assert not {"ratio", "dw_size", "s3.block", "s3.b0.se"} & set(params)
    assert kinds == set(BLOCK_TYPES) and 0 < yolo < 30


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"module": {"choices": ["ghostnet", "yolov7"]}}, "module: values must be among ghostnet, yolov5, got 'yolov7'"),
        ({"dw_dilation": 5}, r"dw_dilation: values must be integers in \[1, 4\]"),
        ({"stages[2].block": "ghostv9"}, r"stages\[2\].block: values must be among"),
        ({"dw_size": {"choices": [1, 3]}}, "dw_dilation > 1 needs dw_size > 1; drop 1 from dw_size or pin dw_dilation to 1"),
    ],
)
def test_family_space_values_are_validated(tmp_path, edit, message):
    import yaml

    data = yaml.safe_load(FAMILY_SPACE.read_text())
    for key, value in edit.items():
        if key.startswith("stages"):
            data["stages"][2]["block"] = value
        else:
            data[key] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_space(path)
