"""Full training of one chosen config: the recipe a deployable model gets, resumable per epoch.

Unlike the proxy (``evaluators.training``), which ranks architectures in a few epochs, this
trains one model to the end of a longer budget: nesterov SGD with weight decay off BatchNorm
and biases, linear warm-up then cosine decay to zero (per step), label smoothing, random crop
and flip, an optional EMA of the weights, ``channels_last`` and bf16 autocast on CUDA. The data
helpers (resizing, batch augmentation) and the schedule are the proxy's.

After every epoch the whole state (model, optimizer, scheduler, EMA, RNG states, epoch, history)
is written atomically to ``checkpoint.pt`` in the run directory, beside ``run.json``, the request
that owns the directory. The same request resumes from the last finished epoch and, because the
random states come back with it, continues exactly as an uninterrupted run would; a different
request is refused with :class:`RunError`, and so is an unreadable checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from evaluators._denormals import flush_denormals
from evaluators.data import ImageSet, augment_batch, resize
from evaluators.training import MAX_SEED, _learning_rate, recalibrate_bn, train_step
from spaces import GhostNASError, GhostNetConfig, build_model, check_int, check_number, write_atomic

__all__ = ["CHECKPOINT_FILE", "MAX_EPOCHS", "REQUEST_FILE", "RunError", "RunSettings", "TrainedRun", "check_run_dir", "claim_run_dir", "train_run"]

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
REQUEST_FILE = "run.json"
MAX_EPOCHS = 10_000  # ImageNet recipes run 300-600; more is a typo, not a plan
_CHECKPOINT_FORMAT = 1
_EVAL_BATCH = 512
OPTIMIZERS = ("sgd", "adamw")


class RunError(GhostNASError):
    """A run directory that cannot be used (another command's, a damaged checkpoint), or an
    export that failed its check; the message is one line."""


@dataclass(frozen=True)
class RunSettings:
    """The full-training recipe. Defaults: see docs/BENCHMARKS.md, "Training a chosen model"."""

    epochs: int = 30
    batch_size: int = 128
    # "sgd" (nesterov, ``momentum``) or "adamw" (decoupled decay: give it a larger
    # ``weight_decay``, e.g. 0.05, and a smaller ``lr``, e.g. 2e-3).
    optimizer: str = "sgd"
    lr: float = 0.2  # peak, reached after the warm-up
    momentum: float = 0.9  # nesterov
    weight_decay: float = 5e-4  # on conv and linear weights only
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    ema_decay: float | None = None  # per step, e.g. 0.999; None: no EMA
    augment: bool = True  # random crop (padding input_size/8) and, where labels allow, flips
    # Adaptive BN before every validation (as the proxy does): the running statistics recomputed
    # from this many plain training batches, so the validated and exported weights see BN
    # statistics of their own. Without it a briefly trained re-parameterised (ghostv3) net's
    # eval-mode activations run far off its lagging statistics (1e3x seen), and fp32 rounding
    # alone then moves its logits by ~1: no ONNX check can pass. 0: off.
    bn_batches: int = 10
    device: str = "cpu"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, low=1, high=MAX_EPOCHS)
        check_int("batch_size", self.batch_size, low=1)  # larger than the training set: the whole set
        check_int("bn_batches", self.bn_batches, low=0)
        check_int("seed", self.seed, low=0, high=MAX_SEED)
        check_number("lr", self.lr, low=0, low_open=True)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("momentum", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)!r}")
        if not 0 <= self.weight_decay < math.inf or not 0 <= self.warmup_epochs < math.inf:
            raise ValueError(f"weight_decay and warmup_epochs must be finite numbers >= 0, got {self.weight_decay!r} and {self.warmup_epochs!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema decay must lie strictly between 0 and 1, got {self.ema_decay!r}")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    def recipe(self) -> dict[str, Any]:
        """What decides the trained weights (not where or how visibly they are trained)."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "progress")}


@dataclass(frozen=True)
class TrainedRun:
    model: nn.Module  # the final weights (the EMA's when on), eval mode, CPU, NCHW
    config: GhostNetConfig  # as trained: the data's classes, the training input size
    history: list[dict[str, Any]]  # one entry per epoch
    mean: list[float]  # per-channel pixel mean (0..255) the model's inputs are normalised by
    std: list[float]
    seconds: float  # training time over all sessions of this run
    resumed_from: int  # epochs already done when this call started


def train_run(
    config: GhostNetConfig, train: ImageSet, val: ImageSet, settings: RunSettings, *, out: Path, request: dict[str, Any]
) -> TrainedRun:
    """Train ``config`` on ``train``, validating on ``val`` after each epoch, checkpointing in ``out``.

    ``request`` (JSON data) identifies the run: a directory holding another request is refused.
    """
    if train.classes != val.classes:
        raise ValueError(f"train and validation sets disagree on classes: {train.name} vs {val.name}")
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {settings.device!r} requested, but torch sees no CUDA device")
    request = {**request, "recipe": settings.recipe()}
    claim_run_dir(out, request)
    with flush_denormals():
        return _Session(config, train, val, settings, device, out).run(request)


def check_run_dir(out: Path) -> None:
    """Refuse, before any work, an ``out`` that cannot become a run directory: something that
    is not a directory or holds files but no run, or a path under a regular file."""
    if (out / REQUEST_FILE).exists():
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"{out} exists and holds no GhostNAS run; choose another --out")
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise RunError(f"cannot create {out}: {above} is not a directory")


def claim_run_dir(out: Path, request: dict[str, Any]) -> None:
    """Make ``out`` this request's run directory, or refuse one that belongs to another."""
    path = out / REQUEST_FILE
    if path.exists():
        try:
            held = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(f"{path} is unreadable ({exc}); delete {out} or choose another --out") from None
        if held != request:
            diff = ", ".join(k for k in sorted(set(held) | set(request)) if held.get(k) != request.get(k))
            raise RunError(f"{out} holds a run of another command (it differs in: {diff}); choose another --out or delete it")
        return
    check_run_dir(out)
    write_atomic(path, json.dumps(request, indent=2, sort_keys=True), error=RunError)


class _Session:
    """One process's share of a run: builds the state, restores a checkpoint, trains the rest."""

    def __init__(self, config: GhostNetConfig, train: ImageSet, val: ImageSet, settings: RunSettings, device: torch.device, out: Path) -> None:
        self.settings, self.device, self.out = settings, device, out
        self.config = config.replace(num_classes=train.num_classes)
        size = self.config.input_size
        self.train_images, self.val_images = resize(train.images, size).to(device), resize(val.images, size).to(device)
        self.train_labels, self.val_labels = train.labels.to(device), val.labels.to(device)
        pixels = self.train_images.float()
        self.mean = pixels.mean(dim=(0, 2, 3), keepdim=True)
        self.std = pixels.std(dim=(0, 2, 3), keepdim=True).clamp(min=1.0)
        del pixels
        self.padding = size // 8 if settings.augment else 0
        self.flip = settings.augment and train.mirror_invariant
        self.batch_size = min(settings.batch_size, len(train))
        self.steps_per_epoch = len(train) // self.batch_size  # whole batches only (BatchNorm)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

        torch.manual_seed(settings.seed)
        self.generator = torch.Generator().manual_seed(settings.seed)  # data order and augmentation
        # The same plain training batches for every recalibration, drawn apart from the data order.
        count = min(settings.bn_batches, self.steps_per_epoch) * self.batch_size
        self.bn_index = torch.randperm(len(train), generator=torch.Generator().manual_seed(settings.seed))[:count].to(device)
        self.model = build_model(self.config).to(device=device, memory_format=torch.channels_last)
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]  # BatchNorm and biases
        groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if settings.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=settings.lr)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=settings.momentum > 0)
        total = settings.epochs * self.steps_per_epoch
        warmup = min(total - 1, round(settings.warmup_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: _learning_rate(min(step, total - 1), total_steps=total, warmup=warmup, peak=1.0)
        )
        self.ema = None
        if settings.ema_decay is not None:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema_decay), use_buffers=True)
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0

    def run(self, request: dict[str, Any]) -> TrainedRun:
        done = self._restore(request)
        epochs = self.settings.epochs
        if done:
            log.info("resuming %s from epoch %d of %d", self.out, done, epochs)
        else:
            log.info("training %s on %d images for %d epochs in %s", self.config.id, len(self.train_labels), epochs, self.out)
        for epoch in range(done + 1, epochs + 1):
            t = time.perf_counter()
            loss, images_per_second = self._train_epoch(epoch)
            accuracy = self._evaluate()
            seconds = time.perf_counter() - t
            self.seconds += seconds
            lr = self.optimizer.param_groups[0]["lr"]
            self.history.append({
                "epoch": epoch, "loss": loss, "val_accuracy": accuracy, "lr": lr,
                "images_per_second": images_per_second, "seconds": seconds,
            })  # fmt: skip
            self._save(request, epoch)
            left = seconds * (epochs - epoch)
            log.info("epoch %d/%d: loss %.4f, val top-1 %.4f, %.0f images/s, %.0f s left", epoch, epochs, loss, accuracy, images_per_second, left)
        final = (self.ema.module if self.ema is not None else self.model).to("cpu", memory_format=torch.contiguous_format).eval()
        return TrainedRun(
            model=final, config=self.config, history=self.history, mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(), seconds=self.seconds, resumed_from=done,
        )  # fmt: skip

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        s = self.settings
        self.model.train()
        order = torch.randperm(len(self.train_labels), generator=self.generator).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        start = time.perf_counter()
        last = self.history[-1]["val_accuracy"] if self.history else math.nan
        bar = tqdm(
            total=self.steps_per_epoch, desc=f"epoch {epoch}/{s.epochs}", unit="step", leave=False,
            disable=not s.progress or not sys.stderr.isatty(), dynamic_ncols=True,
        )  # fmt: skip
        with bar:
            for i in range(self.steps_per_epoch):
                loss_sum += self._step(order[i * self.batch_size : (i + 1) * self.batch_size])
                if i % 10 == 9 or i == self.steps_per_epoch - 1:
                    elapsed = time.perf_counter() - start
                    rate = (i + 1) * self.batch_size / elapsed
                    left = (s.epochs - epoch + 1) * self.steps_per_epoch * self.batch_size / rate - elapsed
                    bar.set_postfix(loss=f"{float(loss_sum) / (i + 1):.3f}", val=f"{last:.3f}", img_s=f"{rate:.0f}", left=f"{left:.0f}s", refresh=False)
                bar.update()
        mean = float(loss_sum) / self.steps_per_epoch
        if not math.isfinite(mean):
            raise RunError(f"training diverged: the loss became {mean} in epoch {epoch}; try a lower --lr")
        return mean, self.steps_per_epoch * self.batch_size / (time.perf_counter() - start)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        return ((images.float() - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def _step(self, index: torch.Tensor) -> torch.Tensor:
        images = self.train_images[index]
        if self.padding or self.flip:
            images = augment_batch(images, generator=self.generator, padding=self.padding, flip=self.flip)
        loss = train_step(
            self.model, self.optimizer, self._inputs(images), self.train_labels[index],
            autocast=self.autocast, label_smoothing=self.settings.label_smoothing,
        )  # fmt: skip
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss

    def _evaluate(self) -> float:
        model = self.ema.module if self.ema is not None else self.model
        index = self.bn_index
        if len(index):
            with self.autocast:
                recalibrate_bn(model, (self._inputs(self.train_images[index[i : i + self.batch_size]]) for i in range(0, len(index), self.batch_size)))
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        with torch.inference_mode(), self.autocast:
            for start in range(0, len(self.val_labels), _EVAL_BATCH):
                logits = model(self._inputs(self.val_images[start : start + _EVAL_BATCH]))
                correct += (logits.argmax(1) == self.val_labels[start : start + _EVAL_BATCH]).sum()
        return int(correct) / len(self.val_labels)

    # -- checkpoints --------------------------------------------------------------------------

    def _save(self, request: dict[str, Any], epoch: int) -> None:
        state = {
            "format": _CHECKPOINT_FORMAT,
            "request": json.dumps(request, sort_keys=True),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": {"torch": torch.get_rng_state(), "data": self.generator.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []},  # fmt: skip
            "history": json.dumps(self.history),
            "seconds": self.seconds,
        }
        write_atomic(self.out / CHECKPOINT_FILE, lambda stream: torch.save(state, stream), error=RunError)

    def _restore(self, request: dict[str, Any]) -> int:
        """Load the checkpoint if there is one; the number of epochs it holds (0 without)."""
        path = self.out / CHECKPOINT_FILE
        if not path.exists():
            return 0
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            if state.get("format") != _CHECKPOINT_FORMAT or state["request"] != json.dumps(request, sort_keys=True):
                raise ValueError("it belongs to another run or another format")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            torch.set_rng_state(state["rng"]["torch"].cpu())
            self.generator.set_state(state["rng"]["data"].cpu())
            if state["rng"]["cuda"]:
                torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
            self.history, self.seconds, epoch = json.loads(state["history"]), float(state["seconds"]), int(state["epoch"])
        except Exception as exc:  # torch.load of a damaged file raises many kinds of error
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise RunError(f"checkpoint {path} is unreadable ({reason}); delete it to train from scratch") from None
        if len(self.history) != epoch or not 0 < epoch <= self.settings.epochs:
            raise RunError(f"checkpoint {path} is inconsistent (epoch {epoch}, {len(self.history)} history entries); delete it to train from scratch")
        return epoch
