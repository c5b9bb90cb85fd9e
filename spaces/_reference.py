"""The published GhostNet table, its width family, and the input presets."""

from __future__ import annotations

import dataclasses

from spaces._config import ConfigError, GhostNetConfig

__all__ = ["FAMILY_REFERENCES", "OFFICIAL_CFGS", "PRESETS", "REFERENCE_WIDTHS", "apply_preset", "reference", "reference_names"]

# The official 1.0x table, [kernel, exp, out, se, stride] per bottleneck, grouped as the official
# code groups them (huawei-noah/Efficient-AI-Backbones, ghostnet_pytorch/ghostnet.py).
OFFICIAL_CFGS: list[list[list[int | float]]] = [
    [[3, 16, 16, 0, 1]],
    [[3, 48, 24, 0, 2]],
    [[3, 72, 24, 0, 1]],
    [[5, 72, 40, 0.25, 2]],
    [[5, 120, 40, 0.25, 1]],
    [[3, 240, 80, 0, 2]],
    [[3, 200, 80, 0, 1], [3, 184, 80, 0, 1], [3, 184, 80, 0, 1], [3, 480, 112, 0.25, 1], [3, 672, 112, 0.25, 1]],
    [[5, 672, 160, 0.25, 2]],
    [[5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1], [5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1]],
]

REFERENCE_WIDTHS: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0, 1.3)

# The later members of the family, as timm builds them (ghostnetv2_100/130/160, ghostnetv3_100):
# the same table, with the block types of layers 0-1 and of the rest (GhostNetConfig.timm_version).
FAMILY_REFERENCES: dict[str, tuple[float, str, str]] = {
    "ghostnetv2-1.0x": (1.0, "ghost", "ghostv2"),
    "ghostnetv2-1.3x": (1.3, "ghost", "ghostv2"),
    "ghostnetv2-1.6x": (1.6, "ghost", "ghostv2"),
    "ghostnetv3-1.0x": (1.0, "ghostv3-nodfc", "ghostv3"),
}

# imagenet: the published network. cifar: 32x32 input with total stride 8, as CIFAR ports of
# MobileNetV2 do: the stem and the first stride-2 bottleneck run at stride 1.
PRESETS: dict[str, dict[str, int]] = {
    "imagenet": {"input_size": 224, "num_classes": 1000},
    "cifar": {"input_size": 32, "num_classes": 10},
}


def apply_preset(config: GhostNetConfig, preset: str) -> GhostNetConfig:
    """``config`` adapted to a preset's input: the cifar preset removes the first two strides.

    Strides are taken off relative to the imagenet layout (stem stride 2), so applying a
    preset to a config that already has it is a no-op.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if preset == "imagenet" or config.stem_stride == 1:
        return config.replace(**PRESETS[preset]) if preset == "imagenet" else config
    stages, first_done = [], False
    for stage in config.stages:
        blocks = []
        for block in stage:
            if block.stride == 2 and not first_done:
                block, first_done = dataclasses.replace(block, stride=1), True
            blocks.append(block)
        stages.append(tuple(blocks))
    return config.replace(stages=tuple(stages), stem_stride=1, **PRESETS[preset])


def reference_names(*, family: bool = True) -> list[str]:
    """``ghostnet-0.35x`` ... ``ghostnet-1.3x``, then (``family``) the V2 and V3 references."""
    return [f"ghostnet-{w}x" for w in REFERENCE_WIDTHS] + (list(FAMILY_REFERENCES) if family else [])


def _reference_table(name: str) -> GhostNetConfig:
    widths = dict(zip(reference_names(family=False), REFERENCE_WIDTHS))
    if name in widths:
        return GhostNetConfig.from_official({"cfgs": OFFICIAL_CFGS, "width": widths[name]})
    if name not in FAMILY_REFERENCES:
        raise ConfigError(f"unknown reference model {name!r} (choose from {', '.join(reference_names())})")
    width, first, rest = FAMILY_REFERENCES[name]
    # Every stage of the first two holds one layer, so per-stage types give timm's per-layer rule.
    types = [first if si <= 1 else rest for si in range(len(OFFICIAL_CFGS))]
    return GhostNetConfig.from_official({"cfgs": OFFICIAL_CFGS, "width": width, "block_types": types})


def reference(
    name: str = "ghostnet-1.0x",
    *,
    preset: str = "imagenet",
    num_classes: int | None = None,
    input_size: int | None = None,
) -> GhostNetConfig:
    """A published network: GhostNet at one of its widths (``ghostnet-0.35x`` ... ``1.3x``), or
    GhostNetV2 / V3 as timm builds them (``ghostnetv2-1.0x``, ``-1.3x``, ``-1.6x``, ``ghostnetv3-1.0x``)."""
    config = apply_preset(_reference_table(name), preset)
    changes = {k: v for k, v in (("num_classes", num_classes), ("input_size", input_size)) if v is not None}
    return config.replace(**changes) if changes else config
