"""A device latency model: predicted latency from a config's building blocks, no timing.

``ghostnas profile`` (``evaluators.profile``) times the blocks of the space on the target
device, each as a ratio to the reference model timed in the same interleaved pairs, and writes
a JSON file. This module reads that file and predicts: each unit (the stem, every bottleneck,
the head) is looked up by its exact shape (the block's class, so its type: v1/v2, v3, yolov5, and
every conv's kernel, stride, groups, dilation and bias, so the DFC attention and a dilated cheap op
too), or, for a shape the profile never timed, estimated
by a non-negative linear fit on its layer counts and dense and grouped MACs per output resolution,
its activation sizes and grouped channels, and its grouped convs costed from a grid of them timed
on the device (``FEATURES``, ``KernelGrid``); the units' sum is scaled, plus a cost
per unit, both fitted on whole models of the same run (a block inside a model does not cost what
it costs alone: timed alone, each unit carries a call's overhead that a model's forward shares,
so the cost per unit comes out negative). Or, where the profile found it
better, the same features with coefficients fitted on whole models. The ratio times the file's
reference latency is the prediction in milliseconds on that device.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spaces import GhostNASError, GhostNetConfig, build_model

__all__ = ["FEATURES", "FORMAT", "SHAPE_FEATURES", "ConvFamily", "KernelGrid", "LatencyModel", "LatencyModelError", "Unit", "config_units"]

FORMAT = "ghostnas-latency-model"
# 2: unit keys name the block's class and each conv's dilation and bias. 3: the features below
# (per output resolution, grouped channels), the correction's cost per unit may be negative.
# 4: a 1x1 grouped conv is counted by its groups (``grouped1x1_kgroups``), not its channels.
# 5: grouped convs costed from a grid timed on the device (``kernels``, the ``grouped_grid`` feature).
VERSION = 5
KINDS = ("stem", "block", "head")
# A layer's output resolution, as the nearest power of 4 pixels: 1, 4, 16 (4x4) ... 16384 (128x128)
# and above. At batch 1 a MAC costs more the fewer output pixels a GEMM has (cifar 4x4 blocks
# with 150+ channels ran at half the speed a MAC costs at 32x32), so MACs and layers are
# counted per resolution.
RESOLUTIONS = tuple(4**b for b in range(8))
# Per-unit features of the fitted model: one intercept per kind; per resolution the dense MACs,
# the grouped MACs and the layer count; the activations; and the output channels of depthwise
# convs and of grouped convs with several outputs per group (the ghost cheap op at ratio s > 2),
# which at small resolutions cost per channel, not per MAC (4x4 blocks were underestimated
# 2x without them). A grouped conv with a 1x1 kernel (the cheap op at ``dw_size`` 1) is counted
# by its groups instead: eager PyTorch runs it group by group, about 2.4 us a group whatever the
# resolution (544 groups at 4x4: 1.2 ms, 9x a dense 544-channel 1x1 conv; bench/grouped_conv.py),
# where a 3x3 or 5x5 depthwise conv costs nearly the same for 30 or 1,000 channels.
SHAPE_FEATURES = (
    *(f"is_{k}" for k in KINDS),
    *(f"{what}_hw{hw}" for hw in RESOLUTIONS for what in ("dense_mmacs", "grouped_mmacs", "layers")),
    "activations_100k",
    "depthwise_kchannels",
    "grouped_kchannels",
    "grouped1x1_kgroups",
)
# And one feature from the device: the unit's grouped convs, each costed (as a ratio to the
# reference model) by interpolating a grid of its kernel family timed at several group counts.
# At ratio s > 2 the cheap op is a kxk grouped conv with s - 1 outputs a group, which eager
# PyTorch runs at 4.5 to 8.6x the depthwise conv's cost, and not monotonically in s - 1 (3
# outputs a group ran cheaper than 2 at 32x32): no linear sum of shape features follows it,
# and format 4 underestimated every held-out model at ratio 3 (docs/BENCHMARKS.md, "Device
# latency model", sixteenth and seventeenth sessions).
FEATURES = (*SHAPE_FEATURES, "grouped_grid")
_INDEX = {name: i for i, name in enumerate(SHAPE_FEATURES)}
# The group counts a kernel family is timed at (``evaluators.profile``), in two classes: multiples
# of ``ALIGN`` (4, 8, ..., 2048) and the others (2, 6, 10, 18, ..., 2050). ONNX Runtime runs a
# depthwise conv 2 to 4x slower when its channels are not a multiple of 4 (here: a 5x5 at 8x8,
# 23 against 87 thousandths of the reference at 200 against 201 to 203 channels; a conv with 2
# outputs a group showed no such step), so a conv is costed from the counts of its own class.
ALIGN = 4
GRID_GROUPS = tuple(sorted([2**b for b in range(2, 12)] + [2] + [2**b + 2 for b in range(2, 12)]))


class LatencyModelError(GhostNASError):
    """A latency model file that cannot be used (missing, malformed, for other settings): one line."""


@dataclass(frozen=True)
class ConvFamily:
    """Grouped convs that differ only in their number of groups: channels a group in and out,
    kernel, stride, padding, dilation, bias, input height and width."""

    in_per_group: int
    out_per_group: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    bias: bool
    input_hw: tuple[int, int]

    @classmethod
    def of(cls, conv: nn.Conv2d, input_hw: tuple[int, int]) -> ConvFamily:
        g = conv.groups
        return cls(conv.in_channels // g, conv.out_channels // g, tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.padding),
                   tuple(conv.dilation), conv.bias is not None, tuple(input_hw))  # fmt: skip

    @property
    def key(self) -> str:
        """The family as 13 comma-separated integers (its name in a profile file)."""
        return ",".join(str(int(v)) for v in self._ints())

    @classmethod
    def from_key(cls, key: str) -> ConvFamily:
        v = [int(part) for part in key.split(",")]  # ValueError if not integers
        if len(v) != 13 or min(v) < 0 or min(v[:4] + v[11:]) < 1 or v[10] > 1:
            raise ValueError(f"not a conv family: {key!r}")
        return cls(v[0], v[1], (v[2], v[3]), (v[4], v[5]), (v[6], v[7]), (v[8], v[9]), bool(v[10]), (v[11], v[12]))

    def _ints(self) -> tuple[int, ...]:
        return (self.in_per_group, self.out_per_group, *self.kernel, *self.stride, *self.padding, *self.dilation, int(self.bias), *self.input_hw)

    def conv(self, groups: int) -> nn.Conv2d:
        return nn.Conv2d(self.in_per_group * groups, self.out_per_group * groups, self.kernel, self.stride, self.padding, self.dilation,
                         groups=groups, bias=self.bias)  # fmt: skip

    def input_shape(self, groups: int, *, batch_size: int) -> tuple[int, ...]:
        return (batch_size, self.in_per_group * groups, *self.input_hw)


@dataclass(frozen=True)
class Unit:
    """One timed building block: what it is, its exact shape (the lookup key), its shape
    features (``SHAPE_FEATURES``) and its grouped convs (family, groups), costed by a grid."""

    kind: str
    key: str
    input_shape: tuple[int, ...]
    features: tuple[float, ...]
    grouped: tuple[tuple[ConvFamily, int], ...] = ()


class KernelGrid:
    """A profile's ``kernels`` section: for each conv family, ratios to the reference model at
    increasing group counts. A conv is costed by linear interpolation in its groups among the
    counts of its class (a multiple of ``ALIGN`` or not; all counts where a class has fewer than
    two), with linear extrapolation from the nearest two outside, never below 0; a family never timed by
    the nearest one timed (same kernel, stride, padding, dilation, bias and channels a group in
    first, then the closest outputs a group and input size), scaled by their MACs."""

    def __init__(self, kernels: dict[str, dict[str, list[float]]]) -> None:
        self._table = {ConvFamily.from_key(key): (np.array(row["groups"]), np.array(row["ratios"], float)) for key, row in kernels.items()}

    def cost(self, family: ConvFamily, groups: int) -> float:
        """Predicted ratio to the reference of one conv of ``family`` with ``groups`` groups."""
        scale = 1.0
        if family not in self._table:
            if not self._table:
                return 0.0
            nearest = min(self._table, key=lambda other: _family_distance(family, other))
            scale = _family_macs(family) / _family_macs(nearest)
            family = nearest
        g, r = self._table[family]
        same = (g % ALIGN == 0) == (groups % ALIGN == 0)
        if same.sum() >= 2:
            g, r = g[same], r[same]
        i = int(np.clip(np.searchsorted(g, groups), 1, len(g) - 1))  # the segment [g[i-1], g[i]] (or the end one)
        value = r[i - 1] + (r[i] - r[i - 1]) * (groups - g[i - 1]) / (g[i] - g[i - 1])
        return scale * max(0.0, float(value))

    def unit_cost(self, unit: Unit) -> float:
        return sum(self.cost(family, groups) for family, groups in unit.grouped)


def _family_distance(a: ConvFamily, b: ConvFamily) -> tuple[int, float]:
    structure = (a.in_per_group, a.kernel, a.stride, a.padding, a.dilation, a.bias)
    mismatches = sum(x != y for x, y in zip(structure, (b.in_per_group, b.kernel, b.stride, b.padding, b.dilation, b.bias)))
    size = abs(math.log(a.out_per_group / b.out_per_group)) + abs(math.log(a.input_hw[0] * a.input_hw[1] / (b.input_hw[0] * b.input_hw[1])))
    return mismatches, size


def _family_macs(f: ConvFamily) -> float:
    out_hw = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(f.input_hw, f.padding, f.dilation, f.kernel, f.stride)]
    return f.in_per_group * f.out_per_group * f.kernel[0] * f.kernel[1] * max(1, out_hw[0] * out_hw[1])


def _unit_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model as the sequence of units a forward pass runs: stem, each bottleneck, head."""
    stem = nn.Sequential(model.conv_stem, model.bn1, model.act1)
    blocks = [block for stage in list(model.blocks)[:-1] for block in stage]
    head = nn.Sequential(model.blocks[-1], model.global_pool, model.conv_head, model.act2, nn.Flatten(1), model.classifier)
    return [("stem", stem), *(("block", b) for b in blocks), ("head", head)]


def config_units(config: GhostNetConfig, *, batch_size: int = 1) -> list[tuple[Unit, nn.Module]]:
    """The units of ``config`` (shapes and features from one forward pass), with their modules.

    (The ``meta`` device would skip the arithmetic, but its first use costs seconds here: a
    real forward pass at batch 1 is cheaper for one prediction.)
    """
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays untouched
        model = build_model(config, deploy=True)  # what the probe times: eval mode, ghostv3 blocks fused
    x = torch.zeros(batch_size, 3, config.input_size, config.input_size)
    units = []
    with torch.inference_mode():
        for kind, module in _unit_modules(model):
            layers: list[tuple[nn.Module, torch.Tensor]] = []
            hooks = [m.register_forward_hook(lambda m, i, o: layers.append((m, i[0], o))) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            shape = tuple(x.shape)
            x = module(x)
            for hook in hooks:
                hook.remove()
            units.append((_unit(kind, shape, layers, batch_size, block=type(module).__name__), module))
    return units


def _unit(kind: str, shape: tuple[int, ...], layers: list[tuple[nn.Module, torch.Tensor, torch.Tensor]], batch: int, *, block: str) -> Unit:
    features = [0.0] * len(SHAPE_FEATURES)
    features[_INDEX[f"is_{kind}"]] = 1.0
    signature, grouped_convs = [], []
    for layer, inp, out in layers:
        if isinstance(layer, nn.Linear):
            pixels, macs, grouped = 1, layer.in_features * layer.out_features, False
            signature.append(("linear", layer.in_features, layer.out_features))
        else:
            pixels = out.shape[2] * out.shape[3]
            macs = out.numel() / batch * layer.in_channels / layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            grouped = layer.groups > 1
            if grouped:
                grouped_convs.append((ConvFamily.of(layer, tuple(inp.shape[2:])), layer.groups))
            signature.append(
                (layer.in_channels, layer.out_channels, *layer.kernel_size, layer.stride[0], layer.groups, layer.dilation[0], layer.bias is not None)
            )
            if grouped and layer.kernel_size == (1, 1):
                features[_INDEX["grouped1x1_kgroups"]] += layer.groups / 1e3
            elif grouped:
                which = "depthwise_kchannels" if layer.out_channels == layer.groups else "grouped_kchannels"
                features[_INDEX[which]] += layer.out_channels / 1e3
        hw = RESOLUTIONS[min(len(RESOLUTIONS) - 1, max(0, round(math.log2(pixels) / 2)))]
        features[_INDEX[f"{'grouped' if grouped else 'dense'}_mmacs_hw{hw}"]] += macs / 1e6
        features[_INDEX[f"layers_hw{hw}"]] += 1.0
        features[_INDEX["activations_100k"]] += out.numel() / batch / 1e5
    key = f"{kind}|{block}|{list(shape[1:])}|{signature}"
    return Unit(kind=kind, key=key, input_shape=shape, features=tuple(features), grouped=tuple(grouped_convs))


@dataclass(frozen=True)
class LatencyModel:
    """A profile file, read and checked; ``predict`` gives milliseconds on the profiled device."""

    data: dict[str, Any]
    sha256: str
    path: str

    @functools.cached_property
    def kernels(self) -> KernelGrid:
        return KernelGrid(self.data["kernels"])

    def features(self, unit: Unit) -> list[float]:
        """``unit``'s ``FEATURES``: its shape features and its grouped convs costed by the grid."""
        return [*unit.features, self.kernels.unit_cost(unit)]

    @classmethod
    def load(cls, path: str | Path) -> LatencyModel:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise LatencyModelError(f"cannot read latency model {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise LatencyModelError(f"latency model {path} is not JSON ({exc})") from None
        problem = _problem(data)
        if problem:
            raise LatencyModelError(f"latency model {path} is not a ghostnas profile: {problem}")
        return cls(data=data, sha256=hashlib.sha256(raw).hexdigest(), path=str(path))

    @property
    def settings(self) -> dict[str, Any]:
        return self.data["settings"]

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.data["fingerprint"]

    def check(self, *, preset: str, input_size: int) -> None:
        """Refuse a file profiled for another preset or input size."""
        s = self.settings
        if (s["preset"], s["input_size"]) != (preset, input_size):
            raise LatencyModelError(
                f"latency model {self.path} was profiled for preset {s['preset']} at {s['input_size']} px, not {preset} "
                f"at {input_size} px: run `ghostnas profile --preset {preset} --input-size {input_size}` on the device"
            )

    def predict_ratio(self, config: GhostNetConfig, *, mode: str | None = None) -> float:
        """Predicted latency as a ratio to the reference model, by the file's predictor or ``mode``:
        ``blocks`` (timed blocks, fitted for unseen shapes, corrected) or ``models`` (fitted on whole models)."""
        mode = mode or self.data["fit"]["mode"]
        units = config_units(config, batch_size=self.settings["batch_size"])
        if mode == "models":
            return sum(sum(c * f for c, f in zip(self.data["fit"]["model_coef"], self.features(unit))) for unit, _ in units)
        table, coef = self.data["units"], self.data["fit"]["coef"]
        total = 0.0
        for unit, _ in units:
            if unit.key in table:
                total += table[unit.key]
            else:
                total += sum(c * f for c, f in zip(coef, self.features(unit)))
        correction = self.data["correction"]
        return correction["slope"] * total + correction["per_unit"] * len(units)

    def predict(self, config: GhostNetConfig) -> float:
        """Predicted calibrated latency (ms) of ``config`` on the profiled device."""
        return self.predict_ratio(config) * self.data["reference_ms"]

    def record(self) -> dict[str, Any]:
        """What a study stores about the file it predicted with."""
        return {"sha256": self.sha256, "file": Path(self.path).name, "fingerprint": self.fingerprint, "settings": self.settings}


def _problem(data: Any) -> str | None:
    """Why ``data`` is not a usable profile, or None."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return f"no \"format\": \"{FORMAT}\""
    if data.get("version") != VERSION:
        return f"version {data.get('version')!r}, this ghostnas reads {VERSION}"
    settings, fit, correction = data.get("settings"), data.get("fit"), data.get("correction")
    if not isinstance(settings, dict) or not {"preset", "input_size", "batch_size"} <= set(settings):
        return "settings lack preset, input_size or batch_size"
    if not isinstance(data.get("fingerprint"), dict):
        return "no device fingerprint"
    if not isinstance(fit, dict) or fit.get("mode") not in ("blocks", "models"):
        return "fit.mode is not blocks or models"
    if not _numbers(fit.get("coef"), len(FEATURES)) or (fit["mode"] == "models" and not _numbers(fit.get("model_coef"), len(FEATURES))):
        return f"fit.coef (and for mode models fit.model_coef) is not {len(FEATURES)} numbers"
    if not isinstance(correction, dict) or not _numbers([correction.get("slope"), correction.get("per_unit")], 2):
        return "correction lacks slope or per_unit"
    units = data.get("units")
    if not isinstance(units, dict) or not _numbers(list(units.values()), len(units)):
        return "units is not a table of numbers"
    reference_ms = data.get("reference_ms")
    if not _numbers([reference_ms], 1) or reference_ms <= 0:
        return "reference_ms is not a positive number"
    return _kernels_problem(data.get("kernels"))


def _kernels_problem(kernels: Any) -> str | None:
    if not isinstance(kernels, dict):
        return "no kernels table"
    for key, row in kernels.items():
        try:
            ConvFamily.from_key(key)
        except ValueError:
            return f"kernels key {key[:40]!r} is not a conv family"
        groups, ratios = (row.get("groups"), row.get("ratios")) if isinstance(row, dict) else (None, None)
        if not (_numbers(groups, len(groups or [0])) and len(groups) >= 2 and all(isinstance(g, int) and g >= 2 for g in groups)
                and all(a < b for a, b in zip(groups, groups[1:]))):  # fmt: skip
            return f"kernels {key}: groups is not at least 2 increasing integers >= 2"
        if not _numbers(ratios, len(groups)) or min(ratios) < 0:
            return f"kernels {key}: ratios is not one non-negative number a group count"
    return None


def _numbers(values: Any, count: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    )
