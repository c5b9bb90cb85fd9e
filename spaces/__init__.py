"""What can be built: the config schema, the reference GhostNet tables, the model builder and
the search space. Pure data and torch: nothing here imports Optuna or the other packages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spaces._checks import GhostNASError, check_choice, check_int, check_number, check_odd
from spaces._config import BLOCK_TYPES, MAX_CLASSES, MAX_INPUT_SIZE, MODULES, Block, ConfigError, GhostNetConfig, make_divisible, read_data_file
from spaces._files import check_writable_target, write_atomic, write_atomic_path
from spaces._space import Choice, Dimension, Fixed, IntRange, SearchSpace, StageSpace, default_space_path, load_space, random_suggest
from spaces._reference import FAMILY_REFERENCES, OFFICIAL_CFGS, PRESETS, REFERENCE_WIDTHS, apply_preset, reference, reference_names

if TYPE_CHECKING:
    from spaces._model import GhostBottleneck, GhostModule, GhostNet, GhostNetFeatures, SqueezeExcite, build_model

# The model builder needs torch, seconds to import: it loads on first use, so that reading configs
# (results, the CLI's checks) does not pay for it (tests/test_imports.py).
_MODEL = ("GhostBottleneck", "GhostModule", "GhostNet", "GhostNetFeatures", "SqueezeExcite", "build_model")


def __getattr__(name: str) -> Any:
    if name in _MODEL:
        from spaces import _model

        return getattr(_model, name)
    raise AttributeError(f"module 'spaces' has no attribute {name!r}")


__all__ = [
    "BLOCK_TYPES",
    "FAMILY_REFERENCES",
    "MAX_CLASSES",
    "MAX_INPUT_SIZE",
    "MODULES",
    "GhostNetFeatures",
    "Block",
    "Choice",
    "Dimension",
    "Fixed",
    "IntRange",
    "SearchSpace",
    "StageSpace",
    "default_space_path",
    "load_space",
    "random_suggest",
    "ConfigError",
    "GhostNASError",
    "GhostBottleneck",
    "GhostModule",
    "GhostNet",
    "GhostNetConfig",
    "OFFICIAL_CFGS",
    "PRESETS",
    "REFERENCE_WIDTHS",
    "SqueezeExcite",
    "apply_preset",
    "build_model",
    "check_choice",
    "check_int",
    "check_number",
    "check_odd",
    "check_writable_target",
    "make_divisible",
    "read_data_file",
    "reference",
    "reference_names",
    "write_atomic",
    "write_atomic_path",
]
