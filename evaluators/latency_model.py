"""A device latency model: predicted latency from a config's building blocks, no timing.

``ghostnas profile`` (``evaluators.profile``) times the blocks of the space on the target
device, each as a ratio to the reference model timed in the same interleaved pairs, and writes
a JSON file. This module reads that file and predicts: each unit (the stem, every bottleneck,
the head) is looked up by its exact shape (the block's class, so its type: v1/v2, v3, yolov5, and
every conv's kernel, stride, groups, dilation and bias, so the DFC attention and a dilated cheap op
too), or, for a shape the profile never timed, estimated
by a non-negative linear fit on its layer counts and dense and grouped MACs per output resolution,
its activation sizes and grouped channels (``FEATURES``); the units' sum is scaled, plus a cost
per unit, both fitted on whole models of the same run (a block inside a model does not cost what
it costs alone: timed alone, each unit carries a call's overhead that a model's forward shares,
so the cost per unit comes out negative). Or, where the profile found it
better, the same features with coefficients fitted on whole models. The ratio times the file's
reference latency is the prediction in milliseconds on that device.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spaces import GhostNASError, GhostNetConfig, build_model

__all__ = ["FEATURES", "FORMAT", "LatencyModel", "LatencyModelError", "Unit", "config_units"]

FORMAT = "ghostnas-latency-model"
# 2: unit keys name the block's class and each conv's dilation and bias. 3: the features below
# (per output resolution, grouped channels), the correction's cost per unit may be negative.
# 4: a 1x1 grouped conv is counted by its groups (``grouped1x1_kgroups``), not its channels.
VERSION = 4
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
FEATURES = (
    *(f"is_{k}" for k in KINDS),
    *(f"{what}_hw{hw}" for hw in RESOLUTIONS for what in ("dense_mmacs", "grouped_mmacs", "layers")),
    "activations_100k",
    "depthwise_kchannels",
    "grouped_kchannels",
    "grouped1x1_kgroups",
)
_INDEX = {name: i for i, name in enumerate(FEATURES)}


class LatencyModelError(GhostNASError):
    """A latency model file that cannot be used (missing, malformed, for other settings): one line."""


@dataclass(frozen=True)
class Unit:
    """One timed building block: what it is, its exact shape (the lookup key) and its features."""

    kind: str
    key: str
    input_shape: tuple[int, ...]
    features: tuple[float, ...]


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
            hooks = [m.register_forward_hook(lambda m, i, o: layers.append((m, o))) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            shape = tuple(x.shape)
            x = module(x)
            for hook in hooks:
                hook.remove()
            units.append((_unit(kind, shape, layers, batch_size, block=type(module).__name__), module))
    return units


def _unit(kind: str, shape: tuple[int, ...], layers: list[tuple[nn.Module, torch.Tensor]], batch: int, *, block: str) -> Unit:
    features = [0.0] * len(FEATURES)
    features[_INDEX[f"is_{kind}"]] = 1.0
    signature = []
    for layer, out in layers:
        if isinstance(layer, nn.Linear):
            pixels, macs, grouped = 1, layer.in_features * layer.out_features, False
            signature.append(("linear", layer.in_features, layer.out_features))
        else:
            pixels = out.shape[2] * out.shape[3]
            macs = out.numel() / batch * layer.in_channels / layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            grouped = layer.groups > 1
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
    return Unit(kind=kind, key=f"{kind}|{block}|{list(shape[1:])}|{signature}", input_shape=shape, features=tuple(features))


@dataclass(frozen=True)
class LatencyModel:
    """A profile file, read and checked; ``predict`` gives milliseconds on the profiled device."""

    data: dict[str, Any]
    sha256: str
    path: str

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
            return sum(sum(c * f for c, f in zip(self.data["fit"]["model_coef"], unit.features)) for unit, _ in units)
        table, coef = self.data["units"], self.data["fit"]["coef"]
        total = 0.0
        for unit, _ in units:
            if unit.key in table:
                total += table[unit.key]
            else:
                total += sum(c * f for c, f in zip(coef, unit.features))
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
    return None


def _numbers(values: Any, count: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    )
