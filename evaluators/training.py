"""Proxy training: a short, fixed, seeded training run whose accuracy ranks architectures.

One call trains a freshly built model from scratch on in-memory uint8 tensors (see
``evaluators.data``): nesterov SGD, label smoothing, linear warm-up then cosine decay to exactly
zero at the end of the budget. Before every evaluation the BatchNorm statistics are re-estimated
on training batches (adaptive BN, EagleEye, ECCV 2020): after a short run the running averages
still remember the first, random-weight batches, and ranking models on those stale statistics
ranks them partly by noise.

A failed run (non-finite or diverging loss, out of memory, time limit) raises
:class:`TrainingFailed` with a one-line reason; the search records it and goes on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from evaluators._denormals import flush_denormals
from evaluators._device import check_device
from evaluators.data import ImageSet, augment_batch, resize
from spaces import GhostNetConfig, build_model, check_int

__all__ = ["MAX_PROXY_EPOCHS", "MAX_SEED", "TrainResult", "TrainSettings", "TrainingFailed", "recalibrate_bn", "train_proxy", "train_step"]

log = logging.getLogger(__name__)

# A mean loss this many times chance level (ln C) means the weights have blown up.
_DIVERGED = 10.0
_EVAL_BATCH = 512


class TrainingFailed(RuntimeError):
    """A proxy training run that could not produce an accuracy; ``reason`` is one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Seeds reach numpy's and Optuna's samplers, which take seeds below 2**32; a search adds its
# worker index to its seed, so the bound leaves room for that.
MAX_SEED = 2**31 - 1

# A proxy run is a few epochs (docs/BENCHMARKS.md, "Proxy training"); a thousand is already a full
# training of every trial, more is a typo.
MAX_PROXY_EPOCHS = 1000


@dataclass(frozen=True)
class TrainSettings:
    """The proxy budget and recipe. Defaults: see docs/BENCHMARKS.md, "Proxy training"."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4  # on conv and linear weights only, never on BN or biases
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.1  # of all steps, linear from 0; then cosine to zero
    input_size: int | None = None  # train at this size instead of the config's (a budget knob)
    augment: bool = True  # random crop (padding input_size/8) and, where labels allow, flips
    adaptive_bn: bool = True
    bn_batches: int = 10
    device: str = "cpu"
    threads: int | None = None  # CPU intra-op threads for this call; None keeps torch's setting
    seed: int = 0
    time_limit_s: float | None = None  # fail the run rather than let one sample hold the search
    progress: bool = True  # a tqdm bar after a few seconds, on a terminal only

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, low=1, high=MAX_PROXY_EPOCHS)
        positive = {"batch_size": self.batch_size, "bn_batches": self.bn_batches}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        for name, value in {"momentum": self.momentum, "label_smoothing": self.label_smoothing, "warmup_fraction": self.warmup_fraction}.items():
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.input_size is not None and (isinstance(self.input_size, bool) or not isinstance(self.input_size, int) or self.input_size < 1):
            raise ValueError(f"input_size must be a positive integer or None, got {self.input_size!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive or None, got {self.time_limit_s!r}")
        check_device(self.device)
        check_int("seed", self.seed, low=0, high=MAX_SEED)


@dataclass(frozen=True)
class TrainResult:
    accuracy: float  # top-1 on the validation set, 0..1
    loss_sum: float  # sum over all steps of the mean training batch loss
    epochs_run: int
    stopped_early: bool  # on_epoch returned False before the last epoch
    images_per_second: float  # training images (forward + backward + step) per second of "train"
    seconds: dict[str, float] = field(default_factory=dict)  # data, build, train, bn_recalibration, eval
    history: tuple[float, ...] = ()  # validation accuracy after each evaluated epoch


def train_proxy(
    config: GhostNetConfig,
    train: ImageSet,
    val: ImageSet,
    settings: TrainSettings = TrainSettings(),
    *,
    on_epoch: Callable[[int, float], bool] | None = None,
    check_stop: Callable[[], None] | None = None,
) -> TrainResult:
    """Train a fresh model for ``config`` on ``train``, return its top-1 accuracy on ``val``.

    The model gets ``train``'s number of classes, and ``settings.input_size`` if given; images
    are resized once, here (a no-op when they already have the size). ``on_epoch(epoch,
    accuracy)`` runs after each epoch (``epoch`` counts from 1) with the accuracy the result would
    report if training stopped there; returning False stops it. Without a callback only the
    final model is evaluated. ``check_stop()`` runs before every step; whatever it raises ends
    the run there (a search stopping). Seeds are fixed per call, and the caller's random state is kept.
    """
    if train.classes != val.classes:
        raise ValueError(f"train and validation sets disagree on classes: {train.name} vs {val.name}")
    if len(train) < 2 or len(val) < 1:
        raise ValueError(f"need at least 2 training and 1 validation image, got {len(train)} and {len(val)}")
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {settings.device!r} requested, but torch sees no CUDA device")
    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with _threads(settings.threads), flush_denormals(), torch.random.fork_rng(devices=cuda_devices):
        try:
            return _Run(config, train, val, settings, device).run(on_epoch, check_stop)
        except torch.OutOfMemoryError as exc:
            raise TrainingFailed(f"out of memory on {device}: {_first_line(exc)}") from None
        except MemoryError:
            raise TrainingFailed(f"out of memory on {device}") from None
        except RuntimeError as exc:
            # The CPU allocator reports exhaustion as a plain RuntimeError.
            if "can't allocate memory" in str(exc) or "out of memory" in str(exc):
                raise TrainingFailed(f"out of memory on {device}: {_first_line(exc)}") from None
            raise
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()


class _Run:
    """The state of one training run; ``run`` is the whole procedure, top to bottom."""

    def __init__(self, config: GhostNetConfig, train: ImageSet, val: ImageSet, settings: TrainSettings, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.seconds = dict.fromkeys(("data", "build", "train", "bn_recalibration", "eval"), 0.0)
        cuda = device.type == "cuda"
        torch.manual_seed(settings.seed)
        # channels_last on both: on this CPU a bare loop in NCHW trained at 0.78x its speed at 32x32
        # (0.95x at 16x16; docs/BENCHMARKS.md, "Proxy training"); on CUDA bf16 tensor cores want it.
        self.memory_format = torch.channels_last
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
        self.generator = torch.Generator().manual_seed(settings.seed)  # data order and augmentation

        t = time.perf_counter()
        changes = {"num_classes": train.num_classes}
        if settings.input_size is not None:
            changes["input_size"] = settings.input_size
        self.config = config.replace(**changes)
        size = self.config.input_size
        self.train_images = resize(train.images, size).to(device)
        self.val_images = resize(val.images, size).to(device)
        self.train_labels, self.val_labels = train.labels.to(device), val.labels.to(device)
        pixels = self.train_images.float()
        self.mean = pixels.mean(dim=(0, 2, 3), keepdim=True)
        self.inv_std = 1.0 / pixels.std(dim=(0, 2, 3), keepdim=True).clamp(min=1.0)
        del pixels
        self.padding = size // 8 if settings.augment else 0
        self.flip = settings.augment and train.mirror_invariant
        self.batch_size = min(settings.batch_size, len(train))
        # Whole batches only: a last batch of one image would break BatchNorm's batch statistics.
        self.steps_per_epoch = len(train) // self.batch_size
        # The same plain (unaugmented: the validation images' distribution) training batches for
        # every recalibration, drawn apart from the training order, so that evaluating after
        # each epoch for a callback leaves the training run itself exactly as it is without one.
        count = min(settings.bn_batches, self.steps_per_epoch) * self.batch_size
        self.bn_index = torch.randperm(len(train), generator=torch.Generator().manual_seed(settings.seed))[:count].to(device)
        self.seconds["data"] = time.perf_counter() - t

        t = time.perf_counter()
        self.model = build_model(self.config).to(device=device, memory_format=self.memory_format)
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]
        self.optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=settings.lr,
            momentum=settings.momentum,
            nesterov=settings.momentum > 0,
        )
        self.seconds["build"] = time.perf_counter() - t

    def run(self, on_epoch: Callable[[int, float], bool] | None, check_stop: Callable[[], None] | None) -> TrainResult:
        settings = self.settings
        total_steps = settings.epochs * self.steps_per_epoch
        warmup = int(total_steps * settings.warmup_fraction)
        chance_loss = math.log(self.config.num_classes)
        check_every = 1 if self.device.type == "cpu" else 25  # a check syncs a GPU; a CPU is in sync
        loss_sum = torch.zeros((), device=self.device)
        checked_sum, checked_step = 0.0, 0
        history: list[float] = []
        accuracy, stopped_early, epochs_run, step = math.nan, False, 0, 0
        start = time.perf_counter()
        bar = tqdm(
            total=total_steps,
            desc=f"train {self.config.id}",
            delay=3.0,
            leave=False,
            disable=not settings.progress or not sys.stderr.isatty(),
        )
        with bar:
            for epoch in range(1, settings.epochs + 1):
                t = time.perf_counter()
                self.model.train()
                order = torch.randperm(len(self.train_labels), generator=self.generator).to(self.device)
                for i in range(self.steps_per_epoch):
                    if check_stop is not None:
                        check_stop()
                    lr = _learning_rate(step, total_steps=total_steps, warmup=warmup, peak=settings.lr)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    loss_sum += self._step(order[i * self.batch_size : (i + 1) * self.batch_size])
                    step += 1
                    if step % check_every == 0 or i == self.steps_per_epoch - 1:
                        current = float(loss_sum)
                        if not math.isfinite(current):
                            raise TrainingFailed(f"loss became {current} in epoch {epoch}, step {step}")
                        mean = (current - checked_sum) / (step - checked_step)
                        if mean > _DIVERGED * chance_loss:
                            raise TrainingFailed(
                                f"diverged: mean loss {mean:.3g} by step {step} of epoch {epoch}, chance level {chance_loss:.3g}"
                            )
                        checked_sum, checked_step = current, step
                        bar.set_postfix(loss=f"{mean:.3f}", refresh=False)
                    bar.update()
                    if settings.time_limit_s is not None and time.perf_counter() - start > settings.time_limit_s:
                        raise TrainingFailed(f"time limit of {settings.time_limit_s:g} s reached in epoch {epoch}, step {step}")
                self.seconds["train"] += time.perf_counter() - t
                epochs_run = epoch
                last = epoch == settings.epochs
                if on_epoch is None and not last:
                    continue
                accuracy = self._evaluate()
                history.append(accuracy)
                log.debug("config %s epoch %d: val top-1 %.4f", self.config.id, epoch, accuracy)
                if on_epoch is not None:
                    keep_going = on_epoch(epoch, accuracy)
                    # None (a callback with no return) goes on: only an explicit false stops.
                    if not last and keep_going is not None and not keep_going:
                        stopped_early = True
                        break
        images = epochs_run * self.steps_per_epoch * self.batch_size
        result = TrainResult(
            accuracy=accuracy,
            loss_sum=float(loss_sum),
            epochs_run=epochs_run,
            stopped_early=stopped_early,
            images_per_second=images / self.seconds["train"] if self.seconds["train"] > 0 else 0.0,
            seconds=dict(self.seconds),
            history=tuple(history),
        )
        log.info(
            "config %s: top-1 %.4f after %d epoch(s), %.0f images/s, %.1f s",
            self.config.id, accuracy, epochs_run, result.images_per_second, sum(self.seconds.values()),
        )
        return result

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) * self.inv_std
        return x.contiguous(memory_format=self.memory_format)

    def _step(self, index: torch.Tensor) -> torch.Tensor:
        images = self.train_images[index]
        if self.padding or self.flip:
            images = augment_batch(images, generator=self.generator, padding=self.padding, flip=self.flip)
        return train_step(
            self.model, self.optimizer, self._inputs(images), self.train_labels[index],
            autocast=self.autocast, label_smoothing=self.settings.label_smoothing,
        )  # fmt: skip

    def _evaluate(self) -> float:
        if self.settings.adaptive_bn:
            t = time.perf_counter()
            index = self.bn_index
            batches = (self._inputs(self.train_images[index[i : i + self.batch_size]]) for i in range(0, len(index), self.batch_size))
            with self.autocast:
                recalibrate_bn(self.model, batches)
            self.seconds["bn_recalibration"] += time.perf_counter() - t
        t = time.perf_counter()
        self.model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        with torch.inference_mode(), self.autocast:
            for start in range(0, len(self.val_labels), _EVAL_BATCH):
                logits = self.model(self._inputs(self.val_images[start : start + _EVAL_BATCH]))
                correct += (logits.argmax(1) == self.val_labels[start : start + _EVAL_BATCH]).sum()
        self.seconds["eval"] += time.perf_counter() - t
        return int(correct) / len(self.val_labels)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    autocast: contextlib.AbstractContextManager[Any],
    label_smoothing: float,
) -> torch.Tensor:
    """One optimisation step on a batch (the proxy's and the full trainer's): forward under
    ``autocast``, label-smoothed cross-entropy in float32, backward, ``optimizer.step()``.
    Returns the batch's mean loss, detached (still on the device: reading it would sync a GPU)."""
    with autocast:
        logits = model(inputs)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def recalibrate_bn(model: nn.Module, batches: Iterator[torch.Tensor]) -> None:
    """Replace every BatchNorm's running statistics by their plain average over ``batches``.

    Only the BN layers run in training mode (dropout and the like stay off), no gradient is
    taken, and each layer's momentum is restored afterwards. The model is left in eval mode.
    (``torch.optim.swa_utils.update_bn`` averages alike but runs the whole model in training
    mode: dropout draws from torch's RNG and skews a BN placed after it; see the test.)
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # None: a cumulative average, equal weight for every batch
        bn.train()
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.eval()


def _learning_rate(step: int, *, total_steps: int, warmup: int, peak: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay reaching zero at ``total_steps``,
    the end of the budget (so no step is spent at a learning rate of zero)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
