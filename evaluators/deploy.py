"""What a trained run leaves behind, and reading it back.

``write_run`` turns a :class:`~evaluators.trainer.TrainedRun` into the files of its run directory:

* ``model.safetensors``: the state dict of the plain GhostNet (official key names, so a config
  the official ``GhostNet(cfgs, width=...)`` class can build loads into it unchanged);
* ``config.json``: our config, the official table (or why there is none), the classes and the
  input preprocessing (per-channel mean and std of 0..255 pixels);
* ``model.onnx``: the model in its inference form (ghostv3 blocks fused) with that normalisation built in: input ``float32 (batch, 3, H, W)``
  pixels in 0..255, output logits; the batch axis is dynamic. Before anything claims success it
  runs in ONNX Runtime on validation images and must agree with PyTorch (max absolute logit
  difference <= ``ONNX_TOLERANCE`` and the same top-1 for every image);
* ``metrics.json``: the epoch history, final validation accuracy, seconds, the ONNX check and
  library versions.
"""

from __future__ import annotations

import copy
import json
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evaluators.data import ImageSet, proxy_split, resize
from evaluators.flops import count_cost
from evaluators.trainer import RunError, RunSettings, TrainedRun, train_run
from spaces import ConfigError, GhostNetConfig, build_model, write_atomic, write_atomic_path

__all__ = [
    "ONNX_OPSET", "ONNX_TOLERANCE", "Deployed", "LoadedRun", "accuracy_on", "load_run", "train_and_export", "verify_onnx", "write_run",
]  # fmt: skip

ONNX_OPSET = 18
ONNX_TOLERANCE = 1e-4
RUN_FILES = ("model.safetensors", "config.json", "metrics.json", "model.onnx")


class Deployed(nn.Module):
    """The model with its input normalisation: 0..255 pixels in, logits out."""

    def __init__(self, model: nn.Module, *, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def write_run(trained: TrainedRun, out: Path, *, val_images: torch.Tensor, source: dict[str, Any], classes: tuple[str, ...], extra: dict[str, Any]) -> dict[str, Any]:
    """Write the four files of a finished run to ``out``; returns the metrics written.

    ``val_images`` (uint8) feed the ONNX check; ``source`` says where the config came from
    (study and trial, file, reference); ``extra`` joins the metrics (data set, split, recipe).
    """
    from safetensors.torch import save_file

    config = trained.config
    state = {k: v.detach().contiguous().cpu() for k, v in trained.model.state_dict().items()}
    write_atomic_path(out / "model.safetensors", lambda tmp: save_file(state, str(tmp), metadata={"config_id": config.id}), error=RunError)
    incompatible = config.official_incompatibility()
    description = {
        "config": config.to_dict(),
        "config_id": config.id,
        "official": None if incompatible else config.to_official(),
        "official_incompatibility": incompatible,
        "classes": list(classes),
        "preprocessing": {"input_size": config.input_size, "pixel_range": [0, 255], "mean": trained.mean, "std": trained.std},
        "source": source,
    }
    _write_json(out / "config.json", description)
    deployed = Deployed(trained.model, mean=trained.mean, std=trained.std).eval()
    # The inference form (ghostv3 blocks fused, a no-op for the others), checked against the trained one.
    fused = Deployed(copy.deepcopy(trained.model).eval().fuse(), mean=trained.mean, std=trained.std).eval()
    batch = resize(val_images[:64], config.input_size).float()
    onnx_check = export_onnx(fused, out / "model.onnx", example=batch, reference=deployed)
    last = trained.history[-1] if trained.history else {}
    metrics = {
        "history": trained.history,
        "epochs": len(trained.history),
        "val_accuracy": last.get("val_accuracy"),
        "seconds": trained.seconds,
        "onnx": onnx_check,
        "versions": versions(),
        **extra,
    }
    _write_json(out / "metrics.json", metrics)
    return metrics


def export_onnx(model: nn.Module, path: Path, *, example: torch.Tensor, reference: nn.Module | None = None) -> dict[str, Any]:
    """Export ``model`` (dynamic batch axis) and check it in ONNX Runtime on ``example`` against
    ``reference`` (default: ``model`` itself) in PyTorch."""
    require_onnx()

    check: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            # The TorchScript exporter (about 1 s on a GhostNet; the dynamo one takes 8-15 s here)
            # warns that it is deprecated: not the user's to act on.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example[:2],), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
                input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )  # fmt: skip
        check.update(verify_onnx(tmp, reference if reference is not None else model, example))
        if not check["ok"]:
            raise RunError(
                f"ONNX check failed: max |logit difference| {check['max_abs_diff']:.3g} (limit {ONNX_TOLERANCE:g}), "
                f"top-1 agrees on {check['top1_agree']}/{check['images']} images"
            )

    write_atomic_path(path, write, error=RunError)
    return check


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401 - the exporter needs it
        import onnxruntime  # noqa: F401 - and the check
    except ImportError:
        raise RunError("train exports the model to ONNX and checks it with ONNX Runtime: pip install 'ghostnas[onnx]'") from None


def verify_onnx(path: Path, model: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """Compare an ONNX file's logits on ``images`` (float 0..255) with ``model``'s in PyTorch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {"input": images.numpy()})
    with torch.inference_mode():
        reference = model.eval()(images).numpy()
    diff = float(np.abs(ours - reference).max())
    agree = int((ours.argmax(1) == reference.argmax(1)).sum())
    ok = diff <= ONNX_TOLERANCE and agree == len(images)
    return {"ok": ok, "max_abs_diff": diff, "top1_agree": agree, "images": len(images), "opset": ONNX_OPSET, "onnxruntime": ort.__version__}


def versions() -> dict[str, str]:
    import onnxruntime

    return {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n", error=RunError)


@dataclass(frozen=True)
class LoadedRun:
    config: GhostNetConfig
    model: Deployed  # eval mode, CPU: 0..255 pixels in
    description: dict[str, Any]  # config.json
    metrics: dict[str, Any]  # metrics.json


def load_run(run: Path) -> LoadedRun:
    """Read a finished run directory back; a missing or inconsistent file is a one-line RunError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    missing = [name for name in RUN_FILES if not (run / name).is_file()]
    if missing:
        raise RunError(f"{run} is not a finished training run (missing {', '.join(missing)})")
    try:
        description = json.loads((run / "config.json").read_text(encoding="utf-8"))
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        config = GhostNetConfig.from_dict(description["config"])
        pre = description["preprocessing"]
        mean, std = [float(v) for v in pre["mean"]], [float(v) for v in pre["std"]]
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
        raise RunError(f"{run}: config.json or metrics.json is unreadable ({exc})") from None
    try:
        state = load_file(str(run / "model.safetensors"))
    except (OSError, SafetensorError) as exc:
        raise RunError(f"{run}/model.safetensors is unreadable ({exc})") from None
    model = build_model(config)
    expected = model.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    shaped = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or shaped:
        example = (missing or unexpected or shaped)[0]
        raise RunError(
            f"{run}/model.safetensors does not fit the config in config.json ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(shaped)} wrongly shaped tensors, e.g. {example})"
        )
    model.load_state_dict(state)
    return LoadedRun(config=config, model=Deployed(model, mean=mean, std=std).eval(), description=description, metrics=metrics)


def train_and_export(
    config: GhostNetConfig,
    data: ImageSet,
    settings: RunSettings,
    *,
    out: Path,
    source: dict[str, Any],
    about: dict[str, Any] | None = None,
    val_fraction: float = 0.1,
    subset: int | None = None,
) -> dict[str, Any]:
    """The whole ``train`` command below the flags: split ``data`` (stratified, ``settings.seed``),
    train or resume in ``out``, write the run's files; returns the metrics written.

    The request that owns ``out`` is everything that decides the weights: where the config
    came from (``source``), the config, the data set (name, size, classes), the split and the
    recipe. ``about`` joins ``source`` in config.json only (e.g. the study's scores of the
    trial, which ``confirm`` may change without changing the model).
    """
    require_onnx()  # before hours of training, not after
    train, val = proxy_split(data, seed=settings.seed, val_fraction=val_fraction, subset=subset)
    request = {
        "source": source,
        "config": config.to_dict(),
        "dataset": {"name": data.name, "images": len(data), "classes": list(data.classes)},
        "split": {"val_fraction": val_fraction, "subset": subset, "train": len(train), "val": len(val)},
    }
    trained = train_run(config, train, val, settings, out=out, request=request)
    cost = count_cost(trained.config)
    extra = {
        "dataset": request["dataset"] | {"train": len(train), "val": len(val)},
        "recipe": settings.recipe(),
        "device": settings.device,
        "params": cost.params,
        "flops": cost.flops,
        "resumed_from_epoch": trained.resumed_from,
    }
    return write_run(trained, out, val_images=val.images, source={**source, **(about or {})}, classes=data.classes, extra=extra)


def accuracy_on(run: LoadedRun, data: ImageSet, *, batch: int = 256) -> float:
    """Top-1 of a loaded run's model on every image of ``data`` (its classes must be the run's)."""
    classes = run.description.get("classes")
    if list(data.classes) != classes:
        raise RunError(f"data set {data.name} has classes {list(data.classes)[:5]}..., the run was trained on {classes[:5]}...")
    images = resize(data.images, run.config.input_size)
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            logits = run.model(images[start : start + batch].float())
            correct += int((logits.argmax(1) == data.labels[start : start + batch]).sum())
    return correct / len(images)
