"""The GhostNet configuration schema: a frozen, validated description of one network.

A config is pure data. It reads and writes two formats:

* our own JSON/YAML (``to_dict``/``from_dict``), which holds every field, and
* the official table format of huawei-noah/Efficient-AI-Backbones (``cfgs`` as nested
  ``[k, exp, c, se, stride]`` lists plus ``width``), so that an exported table builds the same
  network with the official ``GhostNet(cfgs, width=...)`` class.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spaces._checks import GhostNASError, check_choice, check_int, check_number, check_odd
from spaces._files import write_atomic

__all__ = ["BLOCK_TYPES", "MAX_BLOCKS", "MAX_CHANNELS", "MAX_CLASSES", "MAX_INPUT_SIZE", "MAX_KERNEL", "MAX_STAGES", "MODULES", "Block", "ConfigError", "GhostNetConfig", "make_divisible", "read_data_file"]

FORMAT = "ghostnas/1"

# Per-stage bottleneck types. "ghost" is GhostNet v1. "ghostv2" adds GhostNetV2's DFC attention
# to the first Ghost module. "ghostv3" is GhostNetV3's re-parameterisable bottleneck with that
# attention, "ghostv3-nodfc" the same without it (GhostNetV3's first two layers); both fuse into
# plain convs for inference (``build_model(config, deploy=True)``).
BLOCK_TYPES = ("ghost", "ghostv2", "ghostv3", "ghostv3-nodfc")
DFC_TYPES = ("ghostv2", "ghostv3")
REPARAM_TYPES = ("ghostv3", "ghostv3-nodfc")
# Ghost module variants: GhostNet's, or YOLOv5's GhostConv/GhostBottleneck (5x5 cheap op, SiLU,
# ratio 2, no SE).
MODULES = ("ghostnet", "yolov5")
YOLOV5_FIXED = {"ratio": 2, "dw_size": 5, "se": 0.0, "block": "ghost"}
MAX_DILATION = 4
# The block types timm's GhostNet(cfgs, version=...) builds: (layers 0-1, the rest).
_TIMM_LAYERS = {"v1": ("ghost", "ghost"), "v2": ("ghost", "ghostv2"), "v3": ("ghostv3-nodfc", "ghostv3")}
# Fields added after format ghostnas/1 was first written: to_dict leaves them out at these
# values, so every config that existed before them keeps its id.
_LATER_DEFAULTS = {"block_types": (), "module": "ghostnet", "dw_dilation": 1}


# What a GhostNet can sensibly have: every dimension is bounded, so that no config (a typo, a
# hostile file) can ask for a network that fills the memory. Channel counts are bounded both as
# written and as built (after the width multiplier).
MAX_KERNEL = 15
MAX_CHANNELS = 8192
MAX_STAGES = 16
MAX_BLOCKS = 64  # per stage
MAX_CLASSES = 100_000
MAX_INPUT_SIZE = 1024  # pixels a side; at least 8 (the smallest the stems can take)


class ConfigError(GhostNASError):
    """A config (or a set of search parameters) that does not describe a buildable GhostNet."""


def read_data_file(path: str | Path, *, what: str) -> Any:
    """The data a JSON or YAML file holds; ``what`` names the file in error messages.

    ``.json`` files are parsed as JSON, anything else with ``yaml.safe_load`` (which also reads
    JSON): plain data only, so a user-supplied file can never construct objects.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file (not UTF-8)") from None
    is_json = path.suffix.lower() == ".json"
    try:
        return json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{what} {path} is not valid {'JSON' if is_json else 'YAML'}: {first}") from None
    except RecursionError:  # a hostile file nested 100,000 levels deep
        raise ConfigError(f"{what} {path} is nested too deeply to be a config (a hostile or broken file)") from None


def make_divisible(value: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, as the official GhostNet code does.

    Never rounds down by more than 10%, and never below ``min_value`` (default: ``divisor``),
    so channel counts cannot collapse to zero however small the width multiplier.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class Block:
    """One Ghost bottleneck: a row ``[kernel, exp, out, se, stride]`` of the official table.

    ``exp`` and ``out`` are the unscaled channel counts; the width multiplier applies later.
    """

    kernel: int
    exp: int
    out: int
    se: float = 0.0
    stride: int = 1

    def row(self) -> list[int | float]:
        return [self.kernel, self.exp, self.out, self.se, self.stride]


_ROW_KEYS = ("kernel", "exp", "out", "se", "stride")


@dataclass(frozen=True)
class GhostNetConfig:
    """A whole GhostNet.

    ``stages`` groups the bottlenecks as the official code groups them (one ``nn.Sequential``
    each). ``ratio`` is the paper's ghost ratio ``s`` (intrinsic maps = ceil(out / s)) and
    ``dw_size`` the kernel of the cheap depthwise operation.

    ``head_channels`` is the unscaled width of the 1x1 ConvBnAct after the last stage. The
    official code always takes it from the last block's expansion size; it is a field of its
    own so that the rule is visible: a config whose head differs from that rule is valid here
    but cannot be written in the official table format (``to_official`` refuses it).
    ``None`` means "follow the official rule" and is resolved when the config is made.

    ``block_types`` holds one of ``BLOCK_TYPES`` per stage; ``()`` (and a tuple of only "ghost",
    which it is stored as) means GhostNet v1 throughout. ``module`` is the Ghost module variant
    (``MODULES``) and ``dw_dilation`` the dilation of the cheap depthwise operation.
    """

    stages: tuple[tuple[Block, ...], ...]
    width: float = 1.0
    ratio: int = 2
    dw_size: int = 3
    stem_channels: int = 16
    stem_stride: int = 2
    head_channels: int | None = None
    feature_channels: int = 1280
    input_size: int = 224
    num_classes: int = 1000
    dropout: float = 0.2
    block_types: tuple[str, ...] = ()
    module: str = "ghostnet"
    dw_dilation: int = 1

    def __post_init__(self) -> None:
        stages = tuple(tuple(_as_block(b) for b in stage) for stage in self.stages)
        object.__setattr__(self, "stages", stages)
        if not isinstance(self.block_types, (list, tuple)):
            raise ConfigError(f"block_types must be a list with one block type per stage, got {self.block_types!r}")
        types = tuple(self.block_types)
        object.__setattr__(self, "block_types", () if all(t == "ghost" for t in types) else types)
        if self.head_channels is None and stages and stages[-1]:
            object.__setattr__(self, "head_channels", stages[-1][-1].exp)
        self._validate()

    # -- validation -------------------------------------------------------------------------

    def _validate(self) -> None:
        if not self.stages or any(len(stage) == 0 for stage in self.stages):
            raise ConfigError("config needs at least one stage, and every stage at least one block")
        if len(self.stages) > MAX_STAGES or max(map(len, self.stages)) > MAX_BLOCKS:
            raise ConfigError(f"config has {len(self.stages)} stages of up to {max(map(len, self.stages))} blocks; at most {MAX_STAGES} stages of {MAX_BLOCKS} are allowed")
        _check_number("width", self.width, low=0.05, high=8.0)
        for si, stage in enumerate(self.stages):
            for bi, block in enumerate(stage):
                where = f"stage {si} block {bi}"
                _check_odd(f"{where} kernel", block.kernel, high=MAX_KERNEL)
                self._check_channels(f"{where} exp", block.exp)
                self._check_channels(f"{where} out", block.out)
                _check_number(f"{where} se", block.se, low=0.0, high=1.0)
                _check_choice(f"{where} stride", block.stride, (1, 2))
        _check_int("ratio", self.ratio, low=2, high=16, why="(s=1 leaves no cheap features)")
        _check_odd("dw_size", self.dw_size, high=MAX_KERNEL)
        self._check_channels("stem_channels", self.stem_channels)
        _check_choice("stem_stride", self.stem_stride, (1, 2))
        self._check_channels("head_channels", self.head_channels)
        _check_int("feature_channels", self.feature_channels, low=1, high=MAX_CHANNELS)
        _check_int("input_size", self.input_size, low=8, high=MAX_INPUT_SIZE)
        _check_int("num_classes", self.num_classes, low=2, high=MAX_CLASSES)
        _check_number("dropout", self.dropout, low=0.0, high=0.95)
        self._validate_family()
        if self.input_size < self.total_stride:
            raise ConfigError(
                f"input_size {self.input_size} is smaller than the network's total stride "
                f"{self.total_stride}: the last stages would see less than one pixel"
            )

    def _validate_family(self) -> None:
        """The Ghost-family fields: block types, module variant, cheap-op dilation."""
        if self.block_types and len(self.block_types) != len(self.stages):
            raise ConfigError(f"block_types has {len(self.block_types)} entries for {len(self.stages)} stages")
        for si, kind in enumerate(self.block_types):
            if kind not in BLOCK_TYPES:
                raise ConfigError(f"stage {si} block type must be one of {', '.join(BLOCK_TYPES)}, got {kind!r}")
        if self.module not in MODULES:
            raise ConfigError(f"module must be one of {', '.join(MODULES)}, got {self.module!r}")
        _check_int("dw_dilation", self.dw_dilation, low=1, high=MAX_DILATION)
        if self.dw_dilation > 1 and self.dw_size == 1:
            raise ConfigError("dw_dilation > 1 needs dw_size > 1 (a 1x1 cheap op has nothing to dilate)")
        if self.module == "yolov5":
            bad = [f"{k} {getattr(self, k)}" for k in ("ratio", "dw_size") if getattr(self, k) != YOLOV5_FIXED[k]]
            if any(block.se for block in self.blocks):
                bad.append("SE")
            if self.block_types:
                bad.append(f"block types {', '.join(sorted(set(self.block_types)))}")
            if bad:
                raise ConfigError(f"module yolov5 fixes ratio 2, dw_size 5, no SE and ghost blocks; this config has {', '.join(bad)}")
        size = math.ceil(self.input_size / self.stem_stride)
        for si, stage in enumerate(self.stages):
            if self.block_type(si) in DFC_TYPES and size < 2:
                raise ConfigError(f"stage {si} ({self.block_type(si)}) sees a {size}x{size} input: DFC attention needs at least 2x2")
            for block in stage:
                size = math.ceil(size / block.stride)

    def _check_channels(self, name: str, value: Any) -> None:
        _check_int(name, value, low=1, high=MAX_CHANNELS)
        if self.channels(value) > MAX_CHANNELS:
            raise ConfigError(f"{name} {value} at width {self.width:g} builds {self.channels(value)} channels; at most {MAX_CHANNELS} are allowed")

    # -- derived values ---------------------------------------------------------------------

    def block_type(self, stage: int) -> str:
        return self.block_types[stage] if self.block_types else "ghost"

    @property
    def reparameterisable(self) -> bool:
        """Whether the model has training-time branches that fuse for inference (ghostv3)."""
        return any(kind in REPARAM_TYPES for kind in self.block_types)

    def feature_taps(self) -> list[dict[str, Any]]:
        """What a detection neck taps: the output of the last stage at each of the network's three
        deepest reductions (8, 16, 32 for the imagenet layout), as ``num_chs``, ``reduction`` and
        ``module``, the keys of timm's ``feature_info``."""
        taps, reduction = {}, self.stem_stride
        for si, stage in enumerate(self.stages):
            reduction *= math.prod(block.stride for block in stage)
            taps[reduction] = {"num_chs": self.channels(stage[-1].out), "reduction": reduction, "module": f"blocks.{si}"}
        return [taps[r] for r in sorted(taps)[-3:]]

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(block for stage in self.stages for block in stage)

    @property
    def total_stride(self) -> int:
        return self.stem_stride * math.prod(block.stride for block in self.blocks)

    @property
    def follows_official_head(self) -> bool:
        return self.head_channels == self.stages[-1][-1].exp

    def channels(self, unscaled: int) -> int:
        """The built width of a channel count: the official rule ``make_divisible(c * width, 4)``."""
        return make_divisible(unscaled * self.width, 4)

    @property
    def id(self) -> str:
        """A stable short hash of every field: equal configs share it across runs and machines."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> GhostNetConfig:
        """A copy with ``changes`` applied and validated again.

        Changing ``stages`` without naming ``head_channels`` keeps the official rule only if
        this config followed it.
        """
        if "stages" in changes and "head_channels" not in changes and self.follows_official_head:
            changes["head_channels"] = None
        return dataclasses.replace(self, **changes)

    # -- our own format ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["stages"] = [[dataclasses.asdict(block) for block in stage] for stage in self.stages]
        for name, default in _LATER_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        if "block_types" in data:
            data["block_types"] = list(data["block_types"])
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, data: Any) -> GhostNetConfig:
        """Read our format or the official one (a mapping with ``cfgs``); unknown keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping, not {type(data).__name__}")
        if "cfgs" in data:
            return cls.from_official(data)
        data = dict(data)
        fmt = data.pop("format", FORMAT)
        if fmt != FORMAT:
            raise ConfigError(f"unknown config format {fmt!r} (expected {FORMAT!r})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known, key=str)  # YAML keys may be ints too
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(map(str, unknown))}")
        if "stages" not in data:
            raise ConfigError("config has no 'stages'")
        data["stages"] = _read_stages(data["stages"], "stages")
        try:
            return cls(**data)
        except TypeError as exc:  # a wrongly typed value that dataclass init trips on
            raise ConfigError(f"malformed config: {exc}") from None

    # -- the official table format ----------------------------------------------------------

    def official_incompatibility(self) -> str | None:
        """Why the official ``GhostNet(cfgs, width)`` class cannot build this config, or None."""
        return "; ".join(self._table_reasons() + self._block_type_reasons("v1")) or None

    def _table_reasons(self) -> list[str]:
        """What no GhostNet(cfgs, width) class (official, or timm's for any version) can express."""
        reasons = []
        if self.ratio != 2 or self.dw_size != 3:
            reasons.append(f"ghost ratio s={self.ratio}, dw_size={self.dw_size} (official: 2, 3)")
        if self.stem_channels != 16 or self.stem_stride != 2:
            reasons.append("stem differs from 16 channels, stride 2")
        if not self.follows_official_head:
            reasons.append(
                f"head_channels {self.head_channels} differs from the last block's exp "
                f"{self.stages[-1][-1].exp}"
            )
        if self.feature_channels != 1280:
            reasons.append(f"feature_channels {self.feature_channels} (official: 1280)")
        if self.module != "ghostnet" or self.dw_dilation != 1:
            reasons.append(f"module {self.module}, dw_dilation {self.dw_dilation} (official: ghostnet, 1)")
        return reasons

    def timm_version(self) -> str | None:
        """The ``version`` with which timm's ``GhostNet(cfgs, width=..., version=...)`` builds
        this config exactly, or None (``timm_incompatibility`` says why)."""
        return next((v for v in ("v1", "v2", "v3") if self._timm_reasons(v) == []), None)

    def timm_incompatibility(self) -> str | None:
        if self.timm_version():
            return None
        closest = min(("v1", "v2", "v3"), key=lambda v: len(self._wrong_layers(v)))
        return f"closest is version {closest}: " + "; ".join(self._timm_reasons(closest))

    def _timm_reasons(self, version: str) -> list[str]:
        return self._table_reasons() + self._block_type_reasons(version)

    def _wrong_layers(self, version: str) -> list[tuple[int, str, str]]:
        """(layer, block type, the type timm's ``version`` puts there) where they differ: v1 is
        "ghost" throughout; v2 "ghost" then "ghostv2" from layer index 2 on; v3 "ghostv3-nodfc"
        then "ghostv3" (the official V2/V3 code also starts attention at layer index 2)."""
        first, rest = _TIMM_LAYERS[version]
        layers = [self.block_type(si) for si, stage in enumerate(self.stages) for _ in stage]
        return [(i, kind, first if i <= 1 else rest) for i, kind in enumerate(layers) if kind != (first if i <= 1 else rest)]

    def _block_type_reasons(self, version: str) -> list[str]:
        wrong = self._wrong_layers(version)
        if not wrong:
            return []
        i, kind, expected = wrong[0]
        return [f"{len(wrong)} layer(s) of another block type, first layer {i}: {kind} where {version} has {expected}"]

    def to_official(self, *, strict: bool = True) -> dict[str, Any]:
        """``{"cfgs": [...], "width": w}`` plus the keys our builder needs to rebuild it exactly.

        The extra keys (ratio, dw_size, stem, input size, ...) are ignored by the official code;
        ``strict`` refuses configs it would build differently.
        """
        reason = self.official_incompatibility()
        if strict and reason:
            raise ConfigError(f"config cannot be written as an official GhostNet table: {reason}")
        extra = self.to_dict()
        del extra["stages"], extra["format"]
        del extra["width"]
        return {"cfgs": [[block.row() for block in stage] for stage in self.stages], "width": self.width, **extra}

    @classmethod
    def from_official(cls, data: dict[str, Any]) -> GhostNetConfig:
        data = dict(data)
        stages = _read_stages(data.pop("cfgs"), "cfgs")
        known = {f.name for f in dataclasses.fields(cls)} - {"stages"}
        unknown = sorted(set(data) - known - {"format"}, key=str)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(map(str, unknown))}")
        data.pop("format", None)
        try:
            return cls(stages=stages, **data)
        except TypeError as exc:
            raise ConfigError(f"malformed config: {exc}") from None

    # -- files ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> GhostNetConfig:
        """Read a ``.json``/``.yaml``/``.yml`` file in either format (``safe_load`` only)."""
        data = read_data_file(path, what="config file")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        data = self.to_dict()
        text = json.dumps(data, indent=2) if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
        write_atomic(path, text, error=ConfigError)


# -- helpers ------------------------------------------------------------------------------------


def _as_block(value: Any) -> Block:
    if isinstance(value, Block):
        return value
    raise ConfigError(f"a block must be a Block, not {type(value).__name__}")


def _read_stages(value: Any, key: str) -> tuple[tuple[Block, ...], ...]:
    """Stages as a list of lists of rows: each row ``[k, exp, out, se, stride]`` or a mapping."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"'{key}' must be a non-empty list of stages")
    stages = []
    for si, stage in enumerate(value):
        if not isinstance(stage, (list, tuple)) or not stage:
            raise ConfigError(f"'{key}' stage {si} must be a non-empty list of blocks")
        stages.append(tuple(_read_block(row, f"{key} stage {si} block {bi}") for bi, row in enumerate(stage)))
    return tuple(stages)


def _read_block(row: Any, where: str) -> Block:
    if isinstance(row, dict):
        unknown = sorted(set(row) - set(_ROW_KEYS), key=str)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
        missing = [k for k in ("kernel", "exp", "out") if k not in row]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        return Block(**row)
    if isinstance(row, (list, tuple)) and len(row) == 5:
        return Block(*row)
    raise ConfigError(f"{where} must be [kernel, exp, out, se, stride] or a mapping, got {row!r}")


def _check_int(name: str, value: Any, *, low: int, high: int | None = None, why: str = "") -> None:
    check_int(name, value, low=low, high=high, why=why, error=ConfigError)


def _check_odd(name: str, value: Any, *, high: int | None = None) -> None:
    check_odd(name, value, high=high, error=ConfigError)


def _check_number(name: str, value: Any, *, low: float, high: float) -> None:
    check_number(name, value, low=low, high=high, error=ConfigError)


def _check_choice(name: str, value: Any, choices: tuple[int, ...]) -> None:
    check_choice(name, value, choices, error=ConfigError)
