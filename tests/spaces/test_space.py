from __future__ import annotations

import json
import random

import pytest
import torch
import yaml

from spaces import Choice, ConfigError, GhostNetConfig, IntRange, build_model, default_space_path, load_space, random_suggest, reference, reference_names


def test_reference_family_are_points_of_the_default_space():
    space = load_space()
    for name in reference_names(family=False):
        config = reference(name)
        params = space.to_params(config)
        assert space.to_config(params) == config
        assert params["width"] == config.width and params["s6.depth"] == 5
        assert params["s6.b3.exp"] == 480


def test_every_named_dimension_is_declared():
    dims = load_space().dimensions()
    assert {"width", "ratio", "dw_size", "s0.depth", "s6.b5.exp", "s8.b4.se", "s3.b0.kernel", "s7.b1.out"} <= set(dims)
    assert dims["ratio"] == Choice((2, 3, 4))
    assert dims["s6.b0.exp"] == IntRange(160, 672, 8)


def test_random_samples_build_run_and_round_trip():
    space = load_space()
    for seed in range(6):
        params = space.sample(random_suggest(random.Random(seed)))
        config = space.to_config(params, preset="cifar", num_classes=10)
        assert space.to_params(config) == params
        assert GhostNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert GhostNetConfig.from_dict(json.loads(json.dumps(config.to_official(strict=False)))) == config
        depth = sum(len(stage) for stage in config.stages)
        assert depth == sum(params[f"s{i}.depth"] for i in range(9))
        with torch.no_grad():
            assert build_model(config).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_a_narrowed_copy_pins_dimensions(tmp_path):
    data = yaml.safe_load(default_space_path().read_text())
    data["ratio"] = 2
    data["dw_size"] = {"choices": [3]}
    data["stages"][6]["depth"] = 3
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump(data))
    space = load_space(path)
    params = space.sample(random_suggest(random.Random(1)))
    assert "ratio" not in params and "dw_size" not in params and "s6.depth" not in params
    config = space.to_config(params)
    assert (config.ratio, config.dw_size, len(config.stages[6])) == (2, 3, 3)
    with pytest.raises(ConfigError, match="s6.depth=5 is outside the space"):
        space.to_params(reference("ghostnet-1.0x"))


def test_pinned_head_keeps_the_head_when_the_last_block_changes(tmp_path):
    data = yaml.safe_load(default_space_path().read_text())
    data["head"] = 960
    path = tmp_path / "pinned.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_space(path).to_config(load_space(path).sample(random_suggest(random.Random(3))))
    assert config.head_channels == 960


def test_out_of_space_and_missing_params_are_rejected():
    space = load_space()
    params = space.to_params(reference())
    with pytest.raises(ConfigError, match="is missing"):
        space.to_config({k: v for k, v in params.items() if k != "width"})
    with pytest.raises(ConfigError, match="outside the space"):
        space.to_config(params | {"s0.b0.exp": 17})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour=1), "unknown key"),
        (lambda d: d.pop("stages"), "missing 'stages'"),
        (lambda d: d.update(ratio={"choices": []}), "non-empty list"),
        (lambda d: d.update(ratio={"choices": [1, 2]}), r"integers in \[2, 16\], got 1"),
        (lambda d: d["stages"][0].update(exp={"low": 16, "high": 10**9, "step": 8}), r"exp: values must be integers in \[1, 8192\]"),
        (lambda d: d["stages"][0].update(depth={"choices": [1, 65]}), r"depth: values must be integers in \[1, 64\]"),
        (lambda d: d["stages"][0].update(exp={"low": 64, "high": 16}), "impossible range"),
        (lambda d: d["stages"][0].update(kernel={"choices": [3, 4]}), "odd integers"),
        (lambda d: d["stages"][0].update(stride=3), "stride must be 1 or 2"),
        (lambda d: d["stages"][0].update(se={"choices": [0, 2]}), r"in \[0.0, 1.0\]"),
        (lambda d: d.update(head="auto"), "head must be"),
        (lambda d: d.update(stages=[]), "non-empty list"),
    ],
)
def test_bad_space_files_are_rejected(tmp_path, change, message):
    data = yaml.safe_load(default_space_path().read_text())
    change(data)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_space(path)


def test_unreadable_space_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read space file"):
        load_space(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(bad)
