"""Property-based tests of the config schema and the official-table reader (hypothesis).

Whatever a config file holds, reading it either gives a config that builds a working network
whose params and FLOPs agree with a second, independent count, or raises ConfigError with a
message: never any other exception (a traceback for the user).

* ``junk``: any nesting of lists, dicts, strings, numbers (NaN, infinities, huge ints), bools, None.
* ``near_configs``: configs of our format and the official ``{"cfgs": ..., "width": ...}`` format
  whose every field is usually valid and sometimes wrong in type or range, with keys sometimes
  missing or extra, so that many examples build and the rest probe each check.
* text files: random text through ``GhostNetConfig.load`` as .json and .yaml.
* search spaces (the same kind of user file): junk, and the default or the Ghost-family space
  with a few of its values replaced by wrong ones; a space that is accepted yields configs or ConfigError.

The second count: params from a freshly built model; FLOPs from PyTorch's own FlopCounterMode,
which counts 2 FLOPs per multiply-add of the same conv and linear layers fvcore counts (the
paper's MACs). Channel counts stay small so every valid example builds in well under a second;
the schema sets no upper bound on channels, so what a config with 10^9 channels does is not
probed here (allocating it is the test).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from evaluators.flops import count_cost
import yaml

from spaces import BLOCK_TYPES, ConfigError, GhostNetConfig, SearchSpace, build_model, default_space_path, random_suggest

FIELDS = ("stages", "width", "ratio", "dw_size", "stem_channels", "stem_stride", "head_channels",
          "feature_channels", "input_size", "num_classes", "dropout", "format", "cfgs",
          "block_types", "module", "dw_dilation")  # fmt: skip
ROW_KEYS = ("kernel", "exp", "out", "se", "stride")

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _wrong() -> st.SearchStrategy:
    """Values of the wrong type or out of any sensible range."""
    return st.one_of(
        st.none(), st.booleans(), st.text(max_size=4), st.integers(-3, 0), st.integers(min_value=10**6),
        st.floats(allow_nan=True, allow_infinity=True), st.just(float("nan")), st.lists(st.integers(0, 3), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    )  # fmt: skip


def _rarely() -> st.SearchStrategy:
    """True about one time in 16 (hypothesis leans towards small integers, hence the top one)."""
    return st.integers(0, 15).map(lambda i: i == 15)


def _mostly(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Usually ``valid``; about one value in 16 wrong (so a whole config is valid fairly often)."""
    return _rarely().flatmap(lambda wrong: _wrong() if wrong else valid)


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.sampled_from(FIELDS + ROW_KEYS) | st.text(max_size=6) | st.integers(), inner, max_size=6),
    max_leaves=25,
)


@st.composite
def rows(draw) -> list | dict:
    values = [
        draw(_mostly(st.sampled_from([1, 3, 5, 7]))),
        draw(_mostly(st.integers(1, 48))),
        draw(_mostly(st.integers(1, 32))),
        draw(_mostly(st.sampled_from([0, 0.25, 0.5, 1]) | st.floats(0, 1))),
        draw(_mostly(st.sampled_from([1, 2]))),
    ]
    shape = draw(st.sampled_from(["list"] * 6 + ["dict"] * 2 + ["short", "long"]))
    if shape == "dict":
        row = dict(zip(ROW_KEYS, values))
        for key in draw(st.lists(st.sampled_from(ROW_KEYS), max_size=1)):
            row.pop(key)  # a missing field (se and stride have defaults)
        if draw(_rarely()):
            row[draw(st.sampled_from(["colour", 3, "Kernel"]))] = 1
        return row
    return values[:4] if shape == "short" else values + [1] if shape == "long" else values


@st.composite
def near_configs(draw) -> dict:
    stages = draw(st.lists(st.lists(rows(), min_size=1, max_size=2), min_size=1, max_size=3))
    if draw(_rarely()):
        stages = draw(st.sampled_from([[], [[]], "stages", None, [[None]]]))
    fields = {
        "width": _mostly(st.floats(0.05, 2.0)),
        "ratio": _mostly(st.integers(2, 4)),
        "dw_size": _mostly(st.sampled_from([1, 3, 5])),
        "stem_channels": _mostly(st.integers(1, 24)),
        "stem_stride": _mostly(st.sampled_from([1, 2])),
        "head_channels": _mostly(st.none() | st.integers(1, 64)),
        "feature_channels": _mostly(st.integers(1, 64)),
        "input_size": _mostly(st.integers(8, 48)),
        "num_classes": _mostly(st.integers(2, 12)),
        "dropout": _mostly(st.floats(0, 0.9)),
        "module": _mostly(st.sampled_from(["ghostnet", "ghostnet", "yolov5"])),
        "dw_dilation": _mostly(st.integers(1, 4)),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
    data = {name: draw(fields[name]) for name in chosen}
    if isinstance(stages, list) and draw(st.booleans()):  # one block type per stage, mostly
        data["block_types"] = draw(_mostly(st.lists(st.sampled_from(BLOCK_TYPES), min_size=len(stages), max_size=len(stages))))
    official = draw(st.booleans())
    data["cfgs" if official else "stages"] = stages
    if official:
        data.setdefault("width", draw(_mostly(st.floats(0.05, 2.0))))
    if draw(_rarely()):
        data[draw(st.sampled_from(["colour", "format", "stage", 7]))] = draw(st.sampled_from(["ghostnas/1", "x", 1]))
    return data


def read(data) -> GhostNetConfig | None:
    """The config ``data`` describes, or None if it is rejected with a message (ConfigError)."""
    try:
        config = GhostNetConfig.from_dict(data)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    assert isinstance(config, GhostNetConfig)
    return config


def check_builds_and_counts(config: GhostNetConfig) -> None:
    cost = count_cost(config)
    model = build_model(config, deploy=True)  # what count_cost counts: ghostv3 blocks fused
    assert cost.params == sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(torch.zeros(1, 3, config.input_size, config.input_size))
    assert out.shape == (1, config.num_classes) and torch.isfinite(out).all()
    assert cost.flops * 2 == counter.get_total_flops()
    # and it survives its own formats
    assert GhostNetConfig.from_dict(config.to_dict()) == config
    if config.official_incompatibility() is None:
        assert GhostNetConfig.from_official(config.to_official()) == config


@PROPERTY
@given(junk)
def test_any_junk_is_a_config_or_a_config_error(data):
    config = read(data)
    if config is not None and _small(config):
        check_builds_and_counts(config)


@PROPERTY
@given(near_configs())
def test_near_valid_configs_build_and_count_the_same_twice_or_are_rejected(data):
    config = read(data)
    if config is not None and _small(config):
        check_builds_and_counts(config)


def _small(config: GhostNetConfig) -> bool:
    """Whether building ``config`` takes well under a second. A "wrong" value of 10^6+ is a valid
    channel count or odd kernel (the schema has no upper bound): not built, see above."""
    widths = (config.stem_channels, config.head_channels, config.feature_channels, config.num_classes)
    return sum(b.exp + b.out for b in config.blocks) * config.width < 4096 and max(b.kernel for b in config.blocks) < 64 and max(widths) < 4096


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=80) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")), st.sampled_from([".json", ".yaml"]))
def test_any_file_text_is_a_config_or_a_config_error(text, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"config{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            GhostNetConfig.load(path)
        except ConfigError as exc:
            assert str(exc)


@pytest.mark.parametrize(
    "data",
    [
        {"stages": [[[3, 16, 16, 0, 1]]], 1: "int key", "x": "str key"},
        {"cfgs": [[{"kernel": 3, "exp": 16, "out": 16, 2: 0}]], "width": 1.0},
        {"cfgs": [[[3, 16, 16, 0, 1]]], "width": 10**400},
        {"cfgs": [[[3, 16, 16, 10**400, 1]]], "width": 1.0},
        {"cfgs": [[[3, 16, 16, 0, 1]]], "width": 1.0, "dropout": -10**400},
    ],
    ids=["mixed-key-types", "mixed-row-key-types", "huge-int-width", "huge-int-se", "huge-int-dropout"],
)
def test_found_by_hypothesis(data):
    """Inputs the properties above once turned into tracebacks, kept as plain examples."""
    assert read(data) is None


@PROPERTY
@given(junk)
def test_any_junk_is_a_search_space_or_a_config_error(data):
    try:
        SearchSpace.from_dict(data, source="junk")
    except ConfigError as exc:
        assert str(exc)


DEFAULT_SPACE = yaml.safe_load(default_space_path().read_text())
FAMILY_SPACE = yaml.safe_load(default_space_path().with_name("ghostnet_family.yaml").read_text())


def _paths(node, prefix=()):
    """Every place in a nested dict/list, as a key path."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


@st.composite
def near_spaces(draw) -> dict:
    base = draw(st.sampled_from([DEFAULT_SPACE, FAMILY_SPACE]))
    space = yaml.safe_load(yaml.safe_dump(base))
    for path in draw(st.lists(st.sampled_from(sorted(_paths(base), key=str)), min_size=1, max_size=3)):
        node = space
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = draw(_wrong())
        except (KeyError, IndexError, TypeError):
            pass  # an earlier change replaced a parent of this place
    return space


@PROPERTY
@given(near_spaces(), st.integers(0, 2**32 - 1))
def test_near_valid_spaces_give_configs_or_config_errors(data, seed):
    try:
        space = SearchSpace.from_dict(data, source="space")
    except ConfigError as exc:
        assert str(exc)
        return
    suggest = random_suggest(random.Random(seed))
    try:
        space.to_config(space.sample(suggest), preset="cifar", num_classes=10, input_size=32)
    except ConfigError as exc:
        assert str(exc)
