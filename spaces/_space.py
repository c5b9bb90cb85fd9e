"""The search space: which GhostNet configs a search may sample, declared as data (YAML).

The space knows nothing of Optuna. ``SearchSpace.sample`` walks the space define-by-run and asks
a ``suggest(name, dimension)`` callback for each value it needs (the search package passes one
backed by an Optuna trial); ``to_config`` turns those named values into a config and
``to_params`` turns a config back into them, so reference models can be enqueued as trials.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union


from spaces._config import BLOCK_TYPES, MAX_BLOCKS, MAX_CHANNELS, MAX_DILATION, MAX_KERNEL, MODULES, YOLOV5_FIXED, Block, ConfigError, GhostNetConfig, read_data_file
from spaces._reference import apply_preset

__all__ = ["Choice", "Dimension", "Fixed", "IntRange", "SearchSpace", "StageSpace", "default_space_path", "load_space", "random_suggest"]


@dataclass(frozen=True)
class Fixed:
    """A dimension the user pinned: never sampled, never a parameter."""

    value: Any

    def contains(self, value: Any) -> bool:
        return value == self.value


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def contains(self, value: Any) -> bool:
        return value in self.values


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high and (value - self.low) % self.step == 0


Dimension = Union[Fixed, Choice, IntRange]
Suggest = Callable[[str, Dimension], Any]


def random_suggest(rng: random.Random) -> Suggest:
    """A ``suggest`` for ``SearchSpace.sample`` that draws each dimension uniformly from ``rng``
    (benchmarks and tests; a search asks Optuna instead)."""

    def suggest(name: str, dim: Dimension) -> Any:
        return rng.choice(dim.values) if isinstance(dim, Choice) else rng.randrange(dim.low, dim.high + 1, dim.step)

    return suggest

_STAGE_DIMS = ("depth", "kernel", "exp", "out", "se")
_BLOCK_DIMS = ("kernel", "exp", "out", "se")
_GLOBAL_DIMS = ("width", "ratio", "dw_size", "dw_dilation")


@dataclass(frozen=True)
class StageSpace:
    """One stage: its stride (fixed, on its first block), depth, and the range of each block."""

    stride: int
    depth: Dimension
    kernel: Dimension
    exp: Dimension
    out: Dimension
    se: Dimension
    block: Dimension = Fixed("ghost")  # the stage's block type (BLOCK_TYPES)


@dataclass(frozen=True)
class SearchSpace:
    width: Dimension
    ratio: Dimension
    dw_size: Dimension
    stages: tuple[StageSpace, ...]
    # "last_exp" is the official rule (the head follows the last block's expansion size);
    # an integer pins the head so that searching the last block cannot change it.
    head: str | int = "last_exp"
    # The Ghost module variant (MODULES). "yolov5" fixes ratio, dw_size, se and the block types
    # (YOLOV5_FIXED): a sample that draws it draws none of those.
    module: Dimension = Fixed("ghostnet")
    dw_dilation: Dimension = Fixed(1)

    # -- sampling ---------------------------------------------------------------------------

    def sample(self, suggest: Suggest) -> dict[str, Any]:
        """Named values for one config, asking ``suggest`` only for dimensions that vary."""
        params: dict[str, Any] = {}

        def pick(name: str, dim: Dimension) -> Any:
            if isinstance(dim, Fixed):
                return dim.value
            params[name] = suggest(name, dim)
            return params[name]

        fixed = YOLOV5_FIXED if pick("module", self.module) == "yolov5" else {}
        for name in _GLOBAL_DIMS:
            pick(name, Fixed(fixed[name]) if name in fixed else getattr(self, name))
        for si, stage in enumerate(self.stages):
            depth = pick(f"s{si}.depth", stage.depth)
            pick(f"s{si}.block", Fixed(fixed["block"]) if fixed else stage.block)
            for bi in range(depth):
                for dim in _BLOCK_DIMS:
                    pick(f"s{si}.b{bi}.{dim}", Fixed(fixed[dim]) if dim in fixed else getattr(stage, dim))
        return params

    def dimensions(self) -> dict[str, Dimension]:
        """Every parameter the space can produce (blocks up to each stage's largest depth)."""
        return {name: dim for name, dim in self._named_dims(max_depth=True) if not isinstance(dim, Fixed)}

    def _named_dims(self, *, max_depth: bool, depths: dict[int, int] | None = None, fixed: dict[str, Any] | None = None):
        """Each parameter name with its dimension; ``fixed`` pins some (a yolov5 sample's)."""
        fixed = fixed or {}

        def dim(name: str, declared: Dimension) -> Dimension:
            return Fixed(fixed[name]) if name in fixed else declared

        yield "module", self.module
        for name in _GLOBAL_DIMS:
            yield name, dim(name, getattr(self, name))
        for si, stage in enumerate(self.stages):
            yield f"s{si}.depth", stage.depth
            yield f"s{si}.block", dim("block", stage.block)
            depth = _largest(stage.depth) if max_depth else (depths or {})[si]
            for bi in range(depth):
                for key in _BLOCK_DIMS:
                    yield f"s{si}.b{bi}.{key}", dim(key, getattr(stage, key))

    # -- params <-> config ------------------------------------------------------------------

    def to_config(
        self,
        params: dict[str, Any],
        *,
        preset: str = "imagenet",
        num_classes: int | None = None,
        input_size: int | None = None,
    ) -> GhostNetConfig:
        """The config for ``params``; ConfigError if a value is missing, off the space or unbuildable."""

        def value(name: str, dim: Dimension) -> Any:
            if isinstance(dim, Fixed):
                return dim.value
            if name not in params:
                raise ConfigError(f"parameter {name!r} is missing")
            if not dim.contains(params[name]):
                raise ConfigError(f"parameter {name}={params[name]!r} is outside the space ({_describe(dim)})")
            return params[name]

        module = value("module", self.module)
        fixed = YOLOV5_FIXED if module == "yolov5" else {}

        def pinned(name: str, key: str, declared: Dimension) -> Any:
            return fixed[key] if key in fixed else value(name, declared)

        stages, types = [], []
        for si, stage in enumerate(self.stages):
            depth = value(f"s{si}.depth", stage.depth)
            types.append(pinned(f"s{si}.block", "block", stage.block))
            blocks = []
            for bi in range(depth):
                row = {dim: pinned(f"s{si}.b{bi}.{dim}", dim, getattr(stage, dim)) for dim in _BLOCK_DIMS}
                blocks.append(Block(**row, stride=stage.stride if bi == 0 else 1))
            stages.append(tuple(blocks))
        config = GhostNetConfig(
            stages=tuple(stages),
            block_types=tuple(types),
            module=module,
            **{name: pinned(name, name, getattr(self, name)) for name in _GLOBAL_DIMS},
            head_channels=None if self.head == "last_exp" else self.head,
        )
        config = apply_preset(config, preset)
        changes = {k: v for k, v in (("num_classes", num_classes), ("input_size", input_size)) if v is not None}
        return config.replace(**changes) if changes else config

    def to_params(self, config: GhostNetConfig) -> dict[str, Any]:
        """The parameters that make ``config``; ConfigError if it is not a point of this space."""
        if len(config.stages) != len(self.stages):
            raise ConfigError(f"config has {len(config.stages)} stages, the space {len(self.stages)}")
        values: dict[str, Any] = {name: getattr(config, name) for name in ("module", *_GLOBAL_DIMS)}
        for si, stage in enumerate(config.stages):
            values[f"s{si}.depth"] = len(stage)
            values[f"s{si}.block"] = config.block_type(si)
            for bi, block in enumerate(stage):
                for dim in _BLOCK_DIMS:
                    values[f"s{si}.b{bi}.{dim}"] = getattr(block, dim)
        depths = {si: len(stage) for si, stage in enumerate(config.stages)}
        fixed = YOLOV5_FIXED if config.module == "yolov5" else {}
        params = {}
        for name, dim in self._named_dims(max_depth=False, depths=depths, fixed=fixed):
            if not dim.contains(values[name]):
                raise ConfigError(f"{name}={values[name]!r} is outside the space ({_describe(dim)})")
            if not isinstance(dim, Fixed):
                params[name] = values[name]
        expected_head = config.stages[-1][-1].exp if self.head == "last_exp" else self.head
        if config.head_channels != expected_head:
            raise ConfigError(f"head_channels {config.head_channels} does not follow the space's head rule ({self.head})")
        return params

    # -- files ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "space") -> SearchSpace:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a search space must be a mapping")
        _no_unknown(data, {"width", "ratio", "dw_size", "head", "stages", "module", "dw_dilation"}, source)
        for key in ("width", "ratio", "dw_size", "stages"):
            if key not in data:
                raise ConfigError(f"{source}: missing '{key}'")
        head = data.get("head", "last_exp")
        if head != "last_exp" and not (isinstance(head, int) and not isinstance(head, bool) and head > 0):
            raise ConfigError(f"{source}: head must be 'last_exp' or a positive integer, got {head!r}")
        if not isinstance(data["stages"], list) or not data["stages"]:
            raise ConfigError(f"{source}: 'stages' must be a non-empty list")
        space = cls(
            width=_read_dim(data["width"], f"{source}: width"),
            ratio=_read_dim(data["ratio"], f"{source}: ratio"),
            dw_size=_read_dim(data["dw_size"], f"{source}: dw_size"),
            stages=tuple(_read_stage(raw, f"{source}: stages[{si}]") for si, raw in enumerate(data["stages"])),
            head=head,
            module=_read_dim(data.get("module", "ghostnet"), f"{source}: module"),
            dw_dilation=_read_dim(data.get("dw_dilation", 1), f"{source}: dw_dilation"),
        )
        _check_values(space.width, f"{source}: width", integer=False, low=0.05, high=8.0)
        _check_values(space.ratio, f"{source}: ratio", integer=True, low=2, high=16)
        _check_values(space.dw_size, f"{source}: dw_size", integer=True, low=1, high=MAX_KERNEL, odd=True)
        _check_values(space.dw_dilation, f"{source}: dw_dilation", integer=True, low=1, high=MAX_DILATION)
        _check_names(space.module, f"{source}: module", MODULES)
        if max(_values(space.dw_dilation)) > 1 and 1 in _values(space.dw_size):
            raise ConfigError(f"{source}: dw_dilation > 1 needs dw_size > 1; drop 1 from dw_size or pin dw_dilation to 1")
        return space


def _read_stage(raw: Any, where: str) -> StageSpace:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping")
    _no_unknown(raw, {"stride", "block", *_STAGE_DIMS}, where)
    missing = [k for k in ("stride", *_STAGE_DIMS) if k not in raw]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    if raw["stride"] not in (1, 2) or isinstance(raw["stride"], bool):
        raise ConfigError(f"{where}.stride must be 1 or 2, got {raw['stride']!r}")
    dims = {k: _read_dim(raw[k], f"{where}.{k}") for k in _STAGE_DIMS}
    highs = {"depth": MAX_BLOCKS, "kernel": MAX_KERNEL, "exp": MAX_CHANNELS, "out": MAX_CHANNELS}  # what a config allows
    for k, high in highs.items():
        _check_values(dims[k], f"{where}.{k}", integer=True, low=1, high=high, odd=(k == "kernel"))
    _check_values(dims["se"], f"{where}.se", integer=False, low=0.0, high=1.0)
    block = _read_dim(raw.get("block", "ghost"), f"{where}.block")
    _check_names(block, f"{where}.block", BLOCK_TYPES)
    return StageSpace(stride=raw["stride"], block=block, **dims)


def default_space_path() -> Path:
    return Path(__file__).with_name("ghostnet.yaml")


def load_space(path: str | Path | None = None) -> SearchSpace:
    """Read a space file (YAML or JSON; ``safe_load`` only). None: the default GhostNet space."""
    path = Path(path) if path is not None else default_space_path()
    data = read_data_file(path, what="space file")
    return SearchSpace.from_dict(data, source=str(path))


# -- helpers ------------------------------------------------------------------------------------


def _read_dim(raw: Any, where: str) -> Dimension:
    """A scalar pins a value; ``{choices: [...]}`` or ``{low, high, step}`` lets it vary."""
    if isinstance(raw, dict):
        if "choices" in raw:
            _no_unknown(raw, {"choices"}, where)
            choices = raw["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}: choices must be a non-empty list")
            if len(set(map(repr, choices))) != len(choices):
                raise ConfigError(f"{where}: choices repeat a value")
            return Fixed(choices[0]) if len(choices) == 1 else Choice(tuple(choices))
        _no_unknown(raw, {"low", "high", "step"}, where)
        low, high, step = raw.get("low"), raw.get("high"), raw.get("step", 1)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step)):
            raise ConfigError(f"{where}: low, high and step must be integers")
        if step < 1 or low > high or (high - low) % step:
            raise ConfigError(f"{where}: impossible range low={low} high={high} step={step}")
        return Fixed(low) if low == high else IntRange(low, high, step)
    if isinstance(raw, (int, float, str)) and not isinstance(raw, bool):
        return Fixed(raw)
    raise ConfigError(f"{where}: expected a value, {{choices: [...]}} or {{low, high, step}}, got {raw!r}")


def _values(dim: Dimension) -> list[Any]:
    if isinstance(dim, Fixed):
        return [dim.value]
    if isinstance(dim, Choice):
        return list(dim.values)
    return [dim.low, dim.high]


def _largest(dim: Dimension) -> int:
    return max(_values(dim))


def _check_values(dim: Dimension, where: str, *, integer: bool, low: float, high: float | None = None, odd: bool = False) -> None:
    for v in _values(dim):
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type or v < low or (high is not None and v > high) or (odd and v % 2 == 0):
            kind = "odd integers" if odd else "integers" if integer else "numbers"
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ConfigError(f"{where}: values must be {kind} {bound}, got {v!r}")
    if isinstance(dim, IntRange) and odd and dim.step % 2:
        raise ConfigError(f"{where}: an odd-only range needs an even step")


def _check_names(dim: Dimension, where: str, allowed: tuple[str, ...]) -> None:
    for v in _values(dim):
        if v not in allowed:
            raise ConfigError(f"{where}: values must be among {', '.join(allowed)}, got {v!r}")


def _describe(dim: Dimension) -> str:
    if isinstance(dim, Fixed):
        return f"fixed at {dim.value!r}"
    if isinstance(dim, Choice):
        return "choices " + ", ".join(map(repr, dim.values))
    return f"{dim.low}..{dim.high} step {dim.step}"


def _no_unknown(data: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
