"""The later Ghost family as builder blocks: GhostNetV2's DFC attention, GhostNetV3's
re-parameterisable Ghost module and bottleneck, and YOLOv5's GhostConv / GhostBottleneck.

Module and attribute names follow timm's ``ghostnet.py`` (V2, V3) and ultralytics/yolov5
``models/common.py`` (GhostConv, GhostBottleneck), so state dicts line up with theirs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GhostBottleneckV3", "GhostModuleV3", "YoloGhostBottleneck", "YoloGhostConv", "dfc_attention", "dfc_gate", "projection_shortcut",
]  # fmt: skip

REPARAM_BRANCHES = 3  # parallel conv+BN branches per re-parameterisable conv (GhostNetV3)


# -- GhostNetV2: decoupled fully connected (DFC) attention ------------------------------------------


def dfc_attention(in_chs: int, out_chs: int) -> nn.Sequential:
    """1x1 conv -> depthwise (1, 5) -> depthwise (5, 1), each with BN (timm's ``short_conv``)."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (1, 5), 1, (0, 2), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (5, 1), 1, (2, 0), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
    )


def projection_shortcut(in_chs: int, out_chs: int, *, kernel: int, stride: int) -> nn.Sequential:
    """A Ghost bottleneck's shortcut where the shape changes: depthwise ``kernel`` (``stride``) + BN,
    then 1x1 conv + BN (the official GhostNet's and timm's ``shortcut``, key for key)."""
    return nn.Sequential(
        nn.Conv2d(in_chs, in_chs, kernel, stride, (kernel - 1) // 2, groups=in_chs, bias=False),
        nn.BatchNorm2d(in_chs),
        nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_chs),
    )


def dfc_gate(short_conv: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` times the DFC gate of ``x``: computed at half resolution, upsampled (nearest)."""
    gate = torch.sigmoid(short_conv(F.avg_pool2d(x, kernel_size=2, stride=2)))
    return out * F.interpolate(gate, size=(out.shape[-2], out.shape[-1]), mode="nearest")


# -- GhostNetV3: re-parameterisable convs --------------------------------------------------------


class ConvBn(nn.Module):
    """conv (no bias) -> BN: one training-time branch (timm's ConvBnAct without act)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int = 1, *, groups: int = 1, dilation: int = 1) -> None:
        super().__init__()
        pad = dilation * (kernel // 2)
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, pad, dilation=dilation, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv(x))


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` and the bias of conv -> ``bn`` (running statistics) as one conv, in float64:
    the branches' sum is rounded once, to the model's dtype, when it is copied into the conv."""
    gamma, beta, mean, var = (t.double() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))
    scale = gamma / (var + bn.eps).sqrt()
    return weight.double() * scale.reshape(-1, 1, 1, 1), beta - mean * scale


@torch.no_grad()
def _fuse(branches: nn.ModuleList, scale: ConvBn | None, skip: nn.BatchNorm2d | None) -> nn.Conv2d:
    """One conv (with bias) computing the sum of ``branches`` (k x k), the 1 x 1 ``scale``
    branch and the BN identity ``skip``, all from the running BN statistics."""
    template = branches[0].conv
    kernel, pad = template.kernel_size[0], template.kernel_size[0] // 2
    parts = [_fold_bn(b.conv.weight, b.bn1) for b in branches]
    if scale is not None:
        weight, bias = _fold_bn(scale.conv.weight, scale.bn1)
        parts.append((F.pad(weight, [pad, pad, pad, pad]), bias))
    if skip is not None:  # the identity as a depthwise kernel with a 1 at its centre
        identity = torch.zeros_like(template.weight)
        identity[:, 0, pad, pad] = 1.0
        parts.append(_fold_bn(identity, skip))
    fused = nn.Conv2d(
        template.in_channels, template.out_channels, kernel, template.stride, template.padding,
        dilation=template.dilation, groups=template.groups, bias=True, device=template.weight.device, dtype=template.weight.dtype,
    )  # fmt: skip
    fused.weight.copy_(sum(w for w, _ in parts))
    fused.bias.copy_(sum(b for _, b in parts))
    return fused


class GhostModuleV3(nn.Module):
    """GhostNetV3's Ghost module: the primary 1x1 conv and the cheap depthwise conv each train as
    parallel conv+BN branches (plus, for the cheap one, a 1x1 scale branch and a BN identity when
    ``ratio`` is 2); ``fuse`` folds each into one conv. Optional DFC attention as in V2."""

    def __init__(
        self, in_chs: int, out_chs: int, *, ratio: int = 2, dw_size: int = 3, dilation: int = 1, relu: bool = True, dfc: bool = False
    ) -> None:
        super().__init__()
        self.out_chs, self.fused = out_chs, False
        init_chs = math.ceil(out_chs / ratio)
        new_chs = init_chs * (ratio - 1)
        self.primary_conv: nn.Module = nn.Identity()
        self.cheap_operation: nn.Module = nn.Identity()
        self.primary_rpr_conv = nn.ModuleList(ConvBn(in_chs, init_chs, 1) for _ in range(REPARAM_BRANCHES))
        self.primary_activation = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.cheap_rpr_skip = nn.BatchNorm2d(init_chs) if new_chs == init_chs else None
        self.cheap_rpr_conv = nn.ModuleList(
            ConvBn(init_chs, new_chs, dw_size, groups=init_chs, dilation=dilation) for _ in range(REPARAM_BRANCHES)
        )
        self.cheap_rpr_scale = ConvBn(init_chs, new_chs, 1, groups=init_chs)
        self.cheap_activation = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.short_conv = dfc_attention(in_chs, out_chs) if dfc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            x1 = self.primary_conv(x)
            x2 = self.cheap_operation(x1)
        else:
            x1 = self.primary_activation(sum(branch(x) for branch in self.primary_rpr_conv))
            x2 = self.cheap_rpr_scale(x1) + sum(branch(x1) for branch in self.cheap_rpr_conv)
            if self.cheap_rpr_skip is not None:
                x2 = x2 + self.cheap_rpr_skip(x1)
            x2 = self.cheap_activation(x2)
        out = torch.cat([x1, x2], dim=1)[:, : self.out_chs]
        return out if self.short_conv is None else dfc_gate(self.short_conv, x, out)

    def fuse(self) -> None:
        """Fold the branches into ``primary_conv`` / ``cheap_operation`` (timm's layout)."""
        if self.fused:
            return
        primary = _fuse(self.primary_rpr_conv, None, None)
        cheap = _fuse(self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip)
        self.primary_conv = nn.Sequential(primary, self.primary_activation)
        self.cheap_operation = nn.Sequential(cheap, self.cheap_activation)
        del self.primary_rpr_conv, self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip
        self.fused = True


class GhostBottleneckV3(nn.Module):
    """GhostNetV3's bottleneck: re-parameterisable Ghost modules, and for stride 2 a depthwise
    conv trained as branches plus a 1x1 scale branch (no identity: the stride changes the shape)."""

    def __init__(
        self, in_chs: int, mid_chs: int, out_chs: int, *, kernel: int = 3, stride: int = 1, se: nn.Module | None = None,
        ratio: int = 2, dw_size: int = 3, dilation: int = 1, dfc: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.stride, self.fused = stride, False
        ghost = {"ratio": ratio, "dw_size": dw_size, "dilation": dilation}
        self.ghost1 = GhostModuleV3(in_chs, mid_chs, relu=True, dfc=dfc, **ghost)
        self.conv_dw: nn.Module = nn.Identity()
        self.bn_dw: nn.Module = nn.Identity()
        if stride > 1:
            self.dw_rpr_conv = nn.ModuleList(ConvBn(mid_chs, mid_chs, kernel, stride, groups=mid_chs) for _ in range(REPARAM_BRANCHES))
            self.dw_rpr_scale = ConvBn(mid_chs, mid_chs, 1, stride, groups=mid_chs)
        self.se = se
        self.ghost2 = GhostModuleV3(mid_chs, out_chs, relu=False, **ghost)
        self.shortcut: nn.Module = nn.Identity() if in_chs == out_chs and stride == 1 else projection_shortcut(in_chs, out_chs, kernel=kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.conv_dw(x) if self.fused else self.dw_rpr_scale(x) + sum(branch(x) for branch in self.dw_rpr_conv)
        if self.se is not None:
            x = self.se(x)
        return self.ghost2(x) + self.shortcut(residual)

    def fuse(self) -> None:
        self.ghost1.fuse()
        self.ghost2.fuse()
        if self.stride > 1 and not self.fused:
            self.conv_dw = _fuse(self.dw_rpr_conv, self.dw_rpr_scale, None)
            del self.dw_rpr_conv, self.dw_rpr_scale
        self.fused = True


# -- YOLOv5 ----------------------------------------------------------------------------------------


class YoloConv(nn.Module):
    """YOLOv5's ``Conv``: conv (no bias) -> BN -> SiLU (or nothing, ``act=False``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1, *, groups: int = 1, dilation: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, dilation * (kernel // 2), dilation=dilation, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class YoloGhostConv(nn.Module):
    """YOLOv5's ``GhostConv``: a 1x1 Conv to half the output, a depthwise ``dw_size`` (5) Conv
    of that half, concatenated. Ratio 2 by construction."""

    def __init__(self, in_chs: int, out_chs: int, *, dw_size: int = 5, dilation: int = 1, act: bool = True) -> None:
        super().__init__()
        half = out_chs // 2
        self.cv1 = YoloConv(in_chs, half, 1, act=act)
        self.cv2 = YoloConv(half, half, dw_size, groups=half, dilation=dilation, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


class YoloGhostBottleneck(nn.Module):
    """YOLOv5's ``GhostBottleneck`` (GhostConv -> depthwise k x k if stride 2 -> GhostConv, no
    SE) with the table's expansion size as its hidden width, where YOLOv5 uses ``out // 2``.
    YOLOv5's shortcut is the identity at stride 1 (it only ever keeps the width there); here a
    stride-1 block that changes the width gets a 1x1 Conv, so every row of the table builds."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, *, kernel: int = 3, stride: int = 1, dw_size: int = 5, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            YoloGhostConv(in_chs, mid_chs, dw_size=dw_size, dilation=dilation),
            YoloConv(mid_chs, mid_chs, kernel, stride, groups=mid_chs, act=False) if stride == 2 else nn.Identity(),
            YoloGhostConv(mid_chs, out_chs, dw_size=dw_size, dilation=dilation, act=False),
        )
        if stride == 2:
            self.shortcut: nn.Module = nn.Sequential(
                YoloConv(in_chs, in_chs, kernel, stride, groups=in_chs, act=False), YoloConv(in_chs, out_chs, 1, act=False)
            )
        else:
            self.shortcut = nn.Identity() if in_chs == out_chs else YoloConv(in_chs, out_chs, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)
