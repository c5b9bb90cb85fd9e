"""``profile`` on a tiny space: real timing of real blocks, a file that predicts what it reports.

Nothing here depends on how fast this machine is: the checks are the file's structure, and that
the file, read back, predicts the held-out models it was measured on within the error it states.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import yaml

from evaluators.latency import LatencyProbe, LatencySettings
from evaluators.latency_model import (
    ALIGN, FEATURES, GRID_GROUPS, SHAPE_FEATURES, ConvFamily, KernelGrid, LatencyModel, LatencyModelError, _unit_modules, config_units,
)  # fmt: skip
from evaluators.profile import ProfileSettings, _families, _Repeated, _sample, profile
from spaces import GhostNetConfig, build_model, load_space, reference

QUICK = dict(input_size=16, models=4, holdout=4)  # as tests/conftest.py's tiny_profile


@pytest.fixture(scope="module")
def profiled(tiny_profile):
    """The shared profile of the tiny space (tests/conftest.py), with these settings."""
    return tiny_profile, json.loads(tiny_profile.read_text()), tiny_profile.parent


def test_the_file_predicts_its_held_out_models_within_its_reported_error(profiled):
    path, data, _ = profiled
    model = LatencyModel.load(path)
    error = data["error"]
    assert error["models"] == len(data["holdout"]) == QUICK["holdout"]
    rel = []
    for row in data["holdout"]:
        config = GhostNetConfig.from_dict(row["config"])
        predicted = model.predict(config)
        assert predicted == pytest.approx(row["predicted_ms"], rel=1e-9)  # read back, the same predictor
        rel.append(predicted / row["measured_ms"] - 1)
    rel = np.abs(rel)
    assert rel.max() <= error["max_abs_rel"] + 1e-9
    assert np.mean(rel <= 0.10) == pytest.approx(error["within_10pct"])
    assert np.median(rel) == pytest.approx(error["median_abs_rel"])


def test_the_file_records_device_settings_and_the_blocks_it_timed(profiled, tiny_space):
    _, data, root = profiled
    probe = LatencyProbe(settings=LatencySettings(input_size=16, memory_format="nchw"), cache_dir=root)
    like = reference("ghostnet-1.0x", preset="cifar", num_classes=10, input_size=16)
    assert data["fingerprint"] == probe.fingerprint(like)
    s = data["settings"]
    assert (s["preset"], s["input_size"], s["num_classes"], s["backend"], s["threads"], s["batch_size"]) == ("cifar", 16, 10, "torch", 1, 1)
    assert data["reference_ms"] > 0 and data["profile_seconds"] > 0
    assert data["fit"]["features"] == list(FEATURES) and all(c >= 0 for c in data["fit"]["coef"])
    # every distinct unit of the training models was timed once, each a positive ratio
    space = load_space(tiny_space)
    train_ids = set(data["train_models"])
    assert len(train_ids) <= QUICK["models"] and not train_ids & {row["config_id"] for row in data["holdout"]}
    assert all(r > 0 for r in data["units"].values())
    kinds = {key.split("|")[0] for key in data["units"]}
    assert kinds == {"stem", "block", "head"}
    blocks_per_model = sum(len(stage.depth.values) if hasattr(stage.depth, "values") else 1 for stage in space.stages)
    assert len(data["units"]) >= blocks_per_model + 2  # at least one whole model's units


@pytest.mark.parametrize("dw_size", [3, 1])  # 1: the cheap op is a 1x1 grouped conv, counted by its groups
def test_units_are_the_models_forward_pass(tiny_space, dw_size):
    # The units, run in sequence, compute exactly what the whole model computes.
    config = reference("ghostnet-0.5x", preset="cifar", num_classes=10, input_size=16).replace(dw_size=dw_size)
    units = config_units(config)
    assert [u.kind for u, _ in units] == ["stem", *["block"] * len(config.blocks), "head"]
    torch.manual_seed(0)
    model = build_model(config).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        y = x
        for _, module in _unit_modules(model):
            y = module(y)
        assert torch.allclose(y, model(x))
    stem = units[0][0]
    assert len(stem.features) == len(SHAPE_FEATURES) and stem.grouped == ()  # the stem is one dense conv
    f = dict(zip(SHAPE_FEATURES, stem.features))
    assert stem.input_shape == (1, 3, 16, 16) and f["layers_hw256"] == 1 and f["is_stem"] == 1
    maps = config.channels(16)  # 8 at 0.5x; stride 1, so 16x16 = 256 outputs of 3x3x3 MACs each
    assert f["dense_mmacs_hw256"] == pytest.approx(maps * 16 * 16 * 27 / 1e6)
    assert sum(stem.features) == pytest.approx(1 + 1 + maps * 16 * 16 * 27 / 1e6 + maps * 256 / 1e5)  # nothing else
    # A block's convs, counted by hand at the resolution of their outputs.
    unit, block = units[-2]
    convs, grouped, depthwise, mult = [], 0.0, 0.0, 0.0
    handles = [m.register_forward_hook(lambda m, i, o: convs.append((m, o.shape, i[0].shape))) for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        block(torch.zeros(unit.input_shape))
    for h in handles:
        h.remove()
    expected = dict.fromkeys(SHAPE_FEATURES, 0.0)
    expected["is_block"] = 1.0
    for conv, shape, _ in convs:
        hw = shape[2] * shape[3]
        resolution = min(4**7, 4 ** round(np.log2(hw) / 2))
        macs = shape[1] * hw * conv.in_channels / conv.groups * conv.kernel_size[0] * conv.kernel_size[1] / 1e6
        expected[f"{'grouped' if conv.groups > 1 else 'dense'}_mmacs_hw{resolution}"] += macs
        expected[f"layers_hw{resolution}"] += 1
        expected["activations_100k"] += shape[1] * hw / 1e5
        if conv.groups > 1 and conv.kernel_size == (1, 1):  # the cheap op at dw_size 1: a cost per group
            expected["grouped1x1_kgroups"] += conv.groups / 1e3
        elif conv.groups > 1:
            expected["depthwise_kchannels" if conv.out_channels == conv.groups else "grouped_kchannels"] += conv.out_channels / 1e3
    assert any(conv.groups > 1 for conv, _, _ in convs) and dict(zip(SHAPE_FEATURES, unit.features)) == pytest.approx(expected)
    assert (expected["grouped1x1_kgroups"] > 0) == (dw_size == 1)
    # Its grouped convs, each as a family (all but the groups) and its groups: the family's conv
    # at those groups is the layer's conv, on the layer's input.
    grouped = [(conv, shape, inp) for conv, shape, inp in convs if conv.groups > 1]
    assert len(unit.grouped) == len(grouped)
    for (family, groups), (conv, shape, inp) in zip(unit.grouped, grouped):
        rebuilt = family.conv(groups)
        assert groups == conv.groups and family.input_shape(groups, batch_size=1) == tuple(inp)
        assert rebuilt(torch.zeros(tuple(inp))).shape == shape and rebuilt.weight.shape == conv.weight.shape
        assert ConvFamily.from_key(family.key) == family


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read latency model"),
        ("{not json", "is not JSON"),
        ('{"cfgs": []}', "is not a ghostnas profile: no \"format\""),
        ('{"format": "ghostnas-latency-model", "version": 99}', "version 99"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "device.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LatencyModelError, match=message) as info:
        LatencyModel.load(path)
    assert "\n" not in str(info.value)


def _family(out_per_group: int = 2, hw: int = 8, kernel: int = 3) -> ConvFamily:
    return ConvFamily(1, out_per_group, (kernel, kernel), (1, 1), (kernel // 2, kernel // 2), (1, 1), False, (hw, hw))


def test_the_kernel_grid_interpolates_in_groups_and_falls_back_to_the_nearest_family():
    family = _family()
    grid = KernelGrid({family.key: {"groups": [4, 8, 16], "ratios": [0.010, 0.014, 0.030]}})
    assert [grid.cost(family, g) for g in (4, 8, 16)] == pytest.approx([0.010, 0.014, 0.030])  # exact at the grid
    assert grid.cost(family, 6) == pytest.approx(0.012) and grid.cost(family, 12) == pytest.approx(0.022)  # linear between
    assert grid.cost(family, 32) == pytest.approx(0.030 + 0.016 * 2)  # beyond: the last segment's slope
    assert grid.cost(family, 2) == pytest.approx(0.008)  # below: the first segment's
    assert KernelGrid({family.key: {"groups": [4, 8], "ratios": [0.010, 0.040]}}).cost(family, 2) == 0.0  # never negative
    # A family never timed: the nearest one timed (same kernel and strides, closest outputs a
    # group and input size), scaled by its MACs (here 8x: twice the outputs a group, 4x the pixels)
    assert grid.cost(_family(out_per_group=4, hw=16), 8) == pytest.approx(0.014 * 2 * 4)
    other_kernel = _family(kernel=5)
    assert grid.cost(other_kernel, 8) == pytest.approx(0.014 * 25 / 9)
    two = KernelGrid({family.key: {"groups": [4, 8], "ratios": [1.0, 2.0]}, other_kernel.key: {"groups": [4, 8], "ratios": [5.0, 6.0]}})
    assert two.cost(_family(out_per_group=3, kernel=5), 4) == pytest.approx(5.0 * 1.5)  # the same kernel wins over the same width
    assert KernelGrid({}).cost(family, 8) == 0.0
    # Counts that are not a multiple of 4 run another kernel in ONNX Runtime: each class is
    # interpolated on its own counts (a step the aligned counts never see).
    stepped = KernelGrid({family.key: {"groups": [2, 4, 6, 8, 10, 16, 18], "ratios": [0.02, 0.01, 0.06, 0.02, 0.10, 0.04, 0.18]}})
    assert stepped.cost(family, 12) == pytest.approx(0.03) and stepped.cost(family, 14) == pytest.approx(0.14)
    assert stepped.cost(family, 9) == pytest.approx(0.09) and stepped.cost(family, 20) == pytest.approx(0.05)


def test_a_units_grid_feature_is_its_grouped_convs_costed_by_the_files_grid(profiled):
    path, data, _ = profiled
    model = LatencyModel.load(path)
    assert data["fit"]["features"][-1] == "grouped_grid" and len(data["fit"]["coef"]) == len(FEATURES)
    config = GhostNetConfig.from_dict(data["holdout"][0]["config"])
    for unit, _ in config_units(config):
        features = model.features(unit)
        assert features[:-1] == list(unit.features)
        assert features[-1] == pytest.approx(sum(model.kernels.cost(f, g) for f, g in unit.grouped))
        assert (features[-1] > 0) == bool(unit.grouped)


def test_the_grid_covers_every_grouped_conv_of_the_training_models(profiled, tiny_space):
    _, data, _ = profiled
    settings = ProfileSettings(**QUICK)
    train, holdout = _sample(load_space(tiny_space), settings)
    most = _families(load_space(tiny_space), settings, train)
    assert {f.key for f in most} == set(data["kernels"])
    for family, seen in most.items():
        row = data["kernels"][family.key]
        assert row["groups"] == sorted(row["groups"]) and len(row["ratios"]) == len(row["groups"]) and all(r > 0 for r in row["ratios"])
        for aligned in (True, False):  # in each class (4, 8, 16, ... and 2, 6, 10, 18, ...) a prefix of the grid
            counts = [g for g in GRID_GROUPS if (g % ALIGN == 0) == aligned]
            timed = [g for g in row["groups"] if (g % ALIGN == 0) == aligned]
            assert timed == counts[: len(timed)] and len(timed) >= 2
            assert timed[-1] >= 2 * seen and (len(timed) == 2 or timed[-2] < 2 * seen)  # up to twice the most seen
    for config in train:
        assert all(f in most and g <= most[f] for u, _ in config_units(config) for f, g in u.grouped)


def test_a_grid_conv_is_repeated_in_one_run_and_for_onnx_runtime_copied(tmp_path):
    family = _family(hw=4)
    conv, x = family.conv(8).eval(), torch.randn(family.input_shape(8, batch_size=1))
    calls = []
    conv.register_forward_hook(lambda m, i, o: calls.append(o))
    with torch.inference_mode():
        out = _Repeated(conv, 5, copies=False)(x)
    assert len(calls) == 5 and torch.equal(out, conv(x))
    # For ONNX Runtime: 5 convs with their own weights, all 5 outputs kept, so the graph
    # optimiser can neither merge them nor drop any; the probe times them in one session.
    copied = _Repeated(conv, 5, copies=True)
    with torch.inference_mode():
        outs = copied(x)
    assert len(outs) == 5 and all(o.shape == out.shape for o in outs)
    assert len({c.weight.sum().item() for c in copied.convs}) == 5 and all(c.weight.shape == conv.weight.shape for c in copied.convs)
    probe = LatencyProbe(settings=LatencySettings(backend="onnxruntime", input_size=16, memory_format="nchw", max_seconds=0.05), cache_dir=tmp_path)
    like = reference("ghostnet-1.0x", preset="cifar", num_classes=10, input_size=16)
    assert probe.measure_module(copied, x.shape, like=like).ratio_to_reference > 0


@pytest.mark.parametrize(
    ("kernels", "message"),
    [
        (None, "no kernels table"),
        ({"3,2": {"groups": [2, 4], "ratios": [1, 2]}}, "is not a conv family"),
        ({_family().key: {"groups": [4], "ratios": [1]}}, "groups is not at least 2 increasing integers"),
        ({_family().key: {"groups": [8, 4], "ratios": [1, 2]}}, "groups is not at least 2 increasing integers"),
        ({_family().key: {"groups": [2, 4], "ratios": [1]}}, "ratios is not one non-negative number a group count"),
        ({_family().key: {"groups": [2, 4], "ratios": [1, -1]}}, "ratios is not one non-negative number a group count"),
        ({_family().key: [1, 2]}, "groups is not at least 2"),
    ],
)
def test_a_malformed_kernel_grid_is_refused(profiled, tmp_path, kernels, message):
    data = dict(profiled[1])
    data["kernels"] = kernels
    path = tmp_path / "device.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyModelError, match=message) as info:
        LatencyModel.load(path)
    assert "\n" not in str(info.value)


def test_a_file_for_another_input_size_is_refused(profiled):
    model = LatencyModel.load(profiled[0])
    model.check(preset="cifar", input_size=16)
    with pytest.raises(LatencyModelError, match=r"profiled for preset cifar at 16 px, not imagenet at 224 px"):
        model.check(preset="imagenet", input_size=224)


def test_bad_profile_settings_are_value_errors():
    for bad in ({"preset": "mobile"}, {"backend": "tvm"}, {"unit_seconds": 0}):
        with pytest.raises(ValueError):
            ProfileSettings(**bad)
    cores = os.cpu_count() or 1
    bounded = {  # every count has an upper bound too: none can run for days or fill the memory
        "models": (1, 1001, "--models must be an integer in [3, 1000]"),
        "holdout": (0, 1001, "--holdout must be an integer in [1, 1000]"),
        "threads": (0, cores + 1, f"--threads must be an integer in [1, {cores}] (the cores of this machine)"),
        "seed": (-1, 2**31, "--seed must be an integer in [0, 2147483647]"),
        "input_size": (0, 1025, "--input-size must be an integer in [8, 1024]"),  # 0 is not "the preset's"
        "num_classes": (1, 100_001, "--num-classes must be an integer in [2, 100000]"),
    }
    for name, (low, high, message) in bounded.items():
        for value in (low, high):
            with pytest.raises(ValueError) as info:
                ProfileSettings(**{name: value})
            assert str(info.value) == f"{message}, got {value}"
        ProfileSettings(**{name: high - 1})  # the bound itself is allowed


def _family_tables() -> dict[str, GhostNetConfig]:
    """One table (GhostNet 0.35x, 16 px, no SE: yolov5 allows none) in every block type."""
    base = reference("ghostnet-0.35x", preset="cifar", num_classes=10, input_size=16)
    base = base.replace(stages=tuple(tuple(dataclasses.replace(b, se=0.0) for b in stage) for stage in base.stages))
    kinds = {kind: base.replace(block_types=(kind,) * len(base.stages)) for kind in ("ghost", "ghostv2", "ghostv3", "ghostv3-nodfc")}
    return {**kinds, "yolov5": base.replace(module="yolov5", dw_size=5), "dilated": base.replace(dw_dilation=2)}


def test_every_block_type_is_its_own_unit():
    # A fused v3 block has v1's conv shapes and a v2 block's DFC convs are v3's: the lookup key
    # names the block's class and each conv's dilation and bias, so no type is predicted from
    # another's measurement.
    classes = {"ghost": "GhostBottleneck", "ghostv2": "GhostBottleneck", "ghostv3": "GhostBottleneckV3",
               "ghostv3-nodfc": "GhostBottleneckV3", "yolov5": "YoloGhostBottleneck", "dilated": "GhostBottleneck"}  # fmt: skip
    blocks = {}
    for kind, config in _family_tables().items():
        keys = [u.key for u, _ in config_units(config) if u.kind == "block"]
        assert len(keys) == len(config.blocks) and all(k.split("|")[1] == classes[kind] for k in keys)
        blocks[kind] = set(keys)
    kinds = list(blocks)
    assert all(not blocks[a] & blocks[b] for i, a in enumerate(kinds) for b in kinds[i + 1 :])


def test_a_profile_of_a_family_space_times_each_block_type_it_predicts(tmp_path):
    space = {
        "width": 0.35, "ratio": 2, "dw_size": 5, "module": {"choices": ["ghostnet", "yolov5"]}, "head": "last_exp",
        "stages": [
            {"stride": s, "depth": 1, "block": {"choices": ["ghost", "ghostv2", "ghostv3"]}, "kernel": 3, "exp": 48, "out": 24, "se": 0}
            for s in (1, 2, 1)
        ],
    }  # fmt: skip
    path = tmp_path / "family.yaml"
    path.write_text(yaml.safe_dump(space))
    settings = ProfileSettings(input_size=16, models=6, holdout=1, unit_seconds=0.05, model_seconds=0.1, progress=False)
    data = profile(settings, load_space(path), cache_dir=tmp_path)
    path.with_suffix(".json").write_text(json.dumps(data))
    timed = {key.split("|")[1] for key in data["units"] if key.startswith("block|")}
    assert timed == {"GhostBottleneck", "GhostBottleneckV3", "YoloGhostBottleneck"}
    assert all(ratio > 0 for ratio in data["units"].values())
    # Read back, the file predicts every unit of every training model from its own timing.
    model = LatencyModel.load(path.with_suffix(".json"))
    train, _ = _sample(load_space(path), settings)
    assert [c.id for c in train] == data["train_models"]
    for config in train:
        units = config_units(config)
        assert all(u.key in data["units"] for u, _ in units)
        summed = sum(data["units"][u.key] for u, _ in units)
        correction = data["correction"]
        expected = correction["slope"] * summed + correction["per_unit"] * len(units)
        assert model.predict_ratio(config, mode="blocks") == pytest.approx(expected, rel=1e-12)
