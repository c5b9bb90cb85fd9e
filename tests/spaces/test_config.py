from __future__ import annotations

import json

import pytest

from spaces import Block, ConfigError, GhostNetConfig, OFFICIAL_CFGS, apply_preset, make_divisible, reference, reference_names


def test_make_divisible_follows_the_official_rule():
    assert make_divisible(16 * 0.35, 4) == 8  # 5.6 -> 4 would lose more than 10%
    assert make_divisible(72 * 1.3, 4) == 92  # 93.6 rounds to the nearest multiple of 4
    assert make_divisible(1, 4) == 4  # never below the divisor: channels cannot collapse to zero


def test_reference_reads_the_official_table_exactly():
    config = reference("ghostnet-1.0x")
    assert [[b.row() for b in stage] for stage in config.stages] == OFFICIAL_CFGS
    assert config.head_channels == 960  # the official rule: the last block's exp
    assert config.follows_official_head
    assert (config.input_size, config.num_classes, config.total_stride) == (224, 1000, 32)
    assert reference_names(family=False) == ["ghostnet-0.35x", "ghostnet-0.5x", "ghostnet-0.75x", "ghostnet-1.0x", "ghostnet-1.3x"]


def test_cifar_preset_has_total_stride_8_and_moves_only_the_first_two_strides():
    imagenet, cifar = reference("ghostnet-1.0x"), reference("ghostnet-1.0x", preset="cifar")
    assert (cifar.input_size, cifar.num_classes, cifar.stem_stride, cifar.total_stride) == (32, 10, 1, 8)
    strides = [b.stride for b in cifar.blocks]
    assert strides == [1, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [b.stride for b in imagenet.blocks][1] == 2
    assert apply_preset(cifar, "cifar") == cifar  # idempotent


def test_json_and_official_round_trips(tmp_path):
    for name in reference_names():
        for preset in ("imagenet", "cifar"):
            config = reference(name, preset=preset)
            assert GhostNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
            assert GhostNetConfig.from_dict(json.loads(json.dumps(config.to_official(strict=False)))) == config
    config = reference("ghostnet-0.5x")
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"cfg{suffix}"
        config.save(path)
        assert GhostNetConfig.load(path) == config
    official = config.to_official()
    assert official["cfgs"] == OFFICIAL_CFGS and official["width"] == 0.5


def test_id_is_stable_and_distinguishes_configs():
    assert reference("ghostnet-1.0x").id == reference("ghostnet-1.0x").id
    assert reference("ghostnet-1.0x").id != reference("ghostnet-0.5x").id
    assert len(reference().id) == 12


def test_head_rule_is_explicit():
    config = reference("ghostnet-1.0x")
    last = config.stages[-1]
    changed = config.replace(stages=config.stages[:-1] + ((*last[:-1], Block(5, 800, 160, 0.25, 1)),))
    assert changed.head_channels == 800  # follows the rule, visibly
    pinned = config.replace(head_channels=960, stages=changed.stages)
    assert pinned.official_incompatibility() is not None
    with pytest.raises(ConfigError, match="head_channels 960 differs"):
        pinned.to_official()


def test_official_export_refuses_what_the_official_class_would_build_differently():
    with pytest.raises(ConfigError, match="ghost ratio s=3"):
        reference().replace(ratio=3).to_official()
    assert reference().replace(ratio=3).to_official(strict=False)["ratio"] == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must be a mapping"),
        ({"stages": [], "width": 1.0}, "non-empty list of stages"),
        ({"cfgs": [[[3, 16, 16, 0, 1]]], "width": 0}, "width must be a number"),
        ({"cfgs": [[[4, 16, 16, 0, 1]]], "width": 1.0}, "kernel must be a positive odd integer"),
        ({"cfgs": [[[3, 16, 16, 0, 3]]], "width": 1.0}, "stride must be one of 1, 2"),
        ({"cfgs": [[[3, 0, 16, 0, 1]]], "width": 1.0}, r"exp must be an integer in \[1, 8192\], got 0"),
        # every dimension bounded, the bound in the message (a 99999 kernel once asked for 1.9 TB)
        ({"cfgs": [[[99999, 16, 16, 0, 2]]], "width": 1.0}, "kernel must be a positive odd integer up to 15, got 99999"),
        ({"cfgs": [[[3, 16, 100000, 0, 1]]], "width": 1.0}, r"out must be an integer in \[1, 8192\], got 100000"),
        ({"cfgs": [[[3, 6000, 16, 0, 1]]], "width": 2.0}, "exp 6000 at width 2 builds 12000 channels; at most 8192"),
        ({"cfgs": [[[3, 16, 16, 0, 1]] * 65], "width": 1.0}, "at most 16 stages of 64 are allowed"),
        ({"cfgs": [[[3, 16, 16, 0, 1]]], "width": 1.0, "dw_size": 31}, "dw_size must be a positive odd integer up to 15"),
        ({"cfgs": [[[3, 16, 16, 0, 1]]], "width": 1.0, "num_classes": 10**7}, r"num_classes must be an integer in \[2, 100000\]"),
        ({"cfgs": [[[3, 16, 16, 0, 1]]], "width": 1.0, "stem_channels": 10**6}, "stem_channels must be an integer in"),
        ({"cfgs": [[[3, 16, 16, 0]]], "width": 1.0}, r"must be \[kernel, exp, out, se, stride\]"),
        ({"cfgs": [[[3, 16, 16, 0, 1]]], "width": 1.0, "ratio": 1}, "s=1 leaves no cheap features"),
        ({"cfgs": [[[3, 16, 16, 0, 1]]], "width": 1.0, "colour": "red"}, "unknown config key"),
        ({"cfgs": [[[3, 16, 16, 0, 2]]] * 6, "width": 1.0, "input_size": 32}, "smaller than the network's total stride"),
        ({"stages": [[{"kernel": 3, "exp": 16}]]}, "missing out"),
        ({"format": "other/9", "stages": []}, "unknown config format"),
        ({"cfgs": [[[3, "16", 16, 0, 1]]], "width": 1.0}, "exp must be an integer"),
        ({"cfgs": [[[3, 16, 16, True, 1]]], "width": 1.0}, "se must be a number"),
    ],
)
def test_bad_configs_are_rejected_with_a_reason(data, message):
    with pytest.raises(ConfigError, match=message):
        GhostNetConfig.from_dict(data)


def test_bad_files_are_rejected_with_a_reason(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        GhostNetConfig.load(broken)
    with pytest.raises(ConfigError, match="cannot read config file"):
        GhostNetConfig.load(tmp_path / "missing.yaml")
    yaml_list = tmp_path / "list.yaml"
    yaml_list.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        GhostNetConfig.load(yaml_list)
