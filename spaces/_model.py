"""The GhostNet builder (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020).

Module and attribute names follow the official implementation, so the state dict of a model
built here for ``ratio=2, dw_size=3`` has the same keys and shapes as the official one (and its
published weights load). The generalisations are the ghost ratio ``s``, the cheap kernel and its
dilation, and the later family's blocks per stage (``spaces._family``: V2, V3, YOLOv5), whose
names follow timm, so timm's GhostNetV2/V3 state dicts load too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spaces._config import DFC_TYPES, REPARAM_TYPES, Block, GhostNetConfig, make_divisible
from spaces._family import GhostBottleneckV3, YoloGhostBottleneck, dfc_attention, dfc_gate, projection_shortcut

__all__ = ["GhostBottleneck", "GhostModule", "GhostNet", "GhostNetFeatures", "SqueezeExcite", "build_model"]


class SqueezeExcite(nn.Module):
    """Squeeze-excite with a hard-sigmoid gate, reduced width ``make_divisible(c * ratio, 4)``."""

    def __init__(self, channels: int, *, se_ratio: float) -> None:
        super().__init__()
        reduced = make_divisible(channels * se_ratio, 4)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv_expand(self.act1(self.conv_reduce(self.avg_pool(x))))
        return x * F.hardsigmoid(gate)


class ConvBnAct(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


class GhostModule(nn.Module):
    """A 1x1 primary conv makes ceil(out / s) maps; a depthwise ``dw_size`` conv makes the rest.

    ``dfc`` adds GhostNetV2's DFC attention (timm's GhostModuleV2): a gate from the input at half
    resolution multiplies the output.
    """

    def __init__(
        self, inp: int, oup: int, *, ratio: int = 2, dw_size: int = 3, dilation: int = 1, relu: bool = True, dfc: bool = False
    ) -> None:
        super().__init__()
        self.oup = oup
        init_channels = math.ceil(oup / ratio)
        new_channels = init_channels * (ratio - 1)
        act = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.primary_conv = nn.Sequential(
            nn.Conv2d(inp, init_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(init_channels),
            act,
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_channels, new_channels, dw_size, 1, dilation * (dw_size // 2), dilation=dilation, groups=init_channels, bias=False),
            nn.BatchNorm2d(new_channels),
            nn.ReLU(inplace=True) if relu else nn.Identity(),
        )
        self.short_conv = dfc_attention(inp, oup) if dfc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)[:, : self.oup]
        return out if self.short_conv is None else dfc_gate(self.short_conv, x, out)


class GhostBottleneck(nn.Module):
    """Ghost (expand) -> depthwise k x k if stride 2 -> SE -> Ghost (project), plus a shortcut."""

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        *,
        kernel: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
        ratio: int = 2,
        dw_size: int = 3,
        dilation: int = 1,
        dfc: bool = False,
    ) -> None:
        super().__init__()
        self.stride = stride
        ghost = {"ratio": ratio, "dw_size": dw_size, "dilation": dilation}
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True, dfc=dfc, **ghost)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, kernel, stride, (kernel - 1) // 2, groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = SqueezeExcite(mid_chs, se_ratio=se_ratio) if se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False, **ghost)
        # An empty Sequential as the identity, as the official code has it.
        self.shortcut: nn.Module = nn.Sequential() if in_chs == out_chs and stride == 1 else projection_shortcut(in_chs, out_chs, kernel=kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + self.shortcut(residual)


class GhostNet(nn.Module):
    def __init__(self, config: GhostNetConfig) -> None:
        super().__init__()
        self.config = config
        self.dropout = config.dropout
        self.feature_info: list[dict[str, object]] = []

        stem = config.channels(config.stem_channels)
        self.conv_stem = nn.Conv2d(3, stem, 3, config.stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info.append({"num_chs": stem, "reduction": config.stem_stride, "module": "act1"})

        in_chs, reduction = stem, config.stem_stride
        stages: list[nn.Module] = []
        for si, stage in enumerate(config.stages):
            layers = []
            for block in stage:
                layers.append(_bottleneck(config, config.block_type(si), in_chs, block))
                in_chs, reduction = config.channels(block.out), reduction * block.stride
            stages.append(nn.Sequential(*layers))
            self.feature_info.append({"num_chs": in_chs, "reduction": reduction, "module": f"blocks.{si}"})
        # The official rule: this 1x1 layer's width is the last block's expansion size (times
        # width). The config holds it as head_channels, so a different head is never silent.
        head = config.channels(config.head_channels)
        stages.append(nn.Sequential(ConvBnAct(in_chs, head, 1)))
        self.feature_info.append({"num_chs": head, "reduction": reduction, "module": f"blocks.{len(stages) - 1}"})
        self.blocks = nn.Sequential(*stages)

        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv_head = nn.Conv2d(head, config.feature_channels, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(config.feature_channels, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.act1(self.bn1(self.conv_stem(x))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.conv_head(self.global_pool(x))).flatten(1)
        if self.dropout > 0.0:
            x = F.dropout(x, p=self.dropout, training=self.training)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


    def fuse(self) -> GhostNet:
        """Fold every re-parameterisable (ghostv3) block into its inference form, in place."""
        return _fuse_blocks(self)


def _fuse_blocks(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, GhostBottleneckV3):
            module.fuse()
    return model


def _bottleneck(config: GhostNetConfig, kind: str, in_chs: int, block: Block) -> nn.Module:
    mid, out = config.channels(block.exp), config.channels(block.out)
    if config.module == "yolov5":
        return YoloGhostBottleneck(in_chs, mid, out, kernel=block.kernel, stride=block.stride, dw_size=config.dw_size, dilation=config.dw_dilation)
    ghost = {"kernel": block.kernel, "stride": block.stride, "ratio": config.ratio, "dw_size": config.dw_size, "dilation": config.dw_dilation}
    if kind in REPARAM_TYPES:
        se = SqueezeExcite(mid, se_ratio=block.se) if block.se > 0 else None
        return GhostBottleneckV3(in_chs, mid, out, se=se, dfc=kind in DFC_TYPES, **ghost)
    return GhostBottleneck(in_chs, mid, out, se_ratio=block.se, dfc=kind in DFC_TYPES, **ghost)


class GhostNetFeatures(nn.Module):
    """A detection backbone: the stem and the stages up to the last tap of
    ``config.feature_taps()``, returning those stages' outputs (timm's ``features_only``).

    Parameter names are the classifier's, so a trained GhostNet's weights load into it.
    """

    def __init__(self, config: GhostNetConfig) -> None:
        super().__init__()
        full = GhostNet(config)
        self.config = config
        self.feature_info = config.feature_taps()
        self._taps = [int(tap["module"].split(".")[1]) for tap in self.feature_info]
        self.conv_stem, self.bn1, self.act1 = full.conv_stem, full.bn1, full.act1
        self.blocks = full.blocks[: self._taps[-1] + 1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        features = []
        for index, stage in enumerate(self.blocks):
            x = stage(x)
            if index in self._taps:
                features.append(x)
        return features

    def fuse(self) -> GhostNetFeatures:
        """Fold every re-parameterisable (ghostv3) block into its inference form, in place."""
        return _fuse_blocks(self)


def build_model(config: GhostNetConfig, *, features_only: bool = False, deploy: bool = False) -> GhostNet | GhostNetFeatures:
    """A freshly initialised GhostNet for ``config`` (PyTorch's default initialisation).

    ``features_only``: the detection backbone (``GhostNetFeatures``). ``deploy``: the inference
    form, in eval mode, with re-parameterisable blocks fused (what is timed and exported).
    """
    model = GhostNetFeatures(config) if features_only else GhostNet(config)
    return model.eval().fuse() if deploy else model
