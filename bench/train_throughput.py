"""Proxy training throughput: ``train_proxy`` against a bare PyTorch loop, same run, interleaved.

Both train the same freshly built model (same config, seed, channels_last, flush-denormal), on
the same images, with the same batch size, optimizer, loss and thread count (and once more in
NCHW, to check the trainer's memory format). The bare loop is
what one would write by hand with every convenience stripped: images resized and normalised to
float once up front, a random permutation per epoch, slices, forward, backward, step. The
trainer does its real work per step: batch augmentation from uint8, normalisation, the
learning-rate schedule, the loss check. Training images per second of each, alternating which
goes first, median over repeats (the trainer's figure is its own ``images_per_second``: the
train stage only, as the bare loop's).

    .venv/bin/python bench/train_throughput.py                       # 0.35x, 32x32, digits
    .venv/bin/python bench/train_throughput.py --model ghostnet-1.0x --threads 2

Target (issue 3): trainer / bare >= 0.95.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script from any directory

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from evaluators.data import ImageSet, load_dataset, proxy_split, resize  # noqa: E402
from evaluators.latency import cpu_model  # noqa: E402
from evaluators.training import TrainSettings, train_proxy  # noqa: E402
from spaces import GhostNetConfig, build_model, reference  # noqa: E402


def bare_loop(config: GhostNetConfig, train: ImageSet, settings: TrainSettings, *, memory_format: torch.memory_format = torch.channels_last) -> float:
    """Images per second of a hand-written loop doing the same training, minus the trainer."""
    torch.manual_seed(settings.seed)
    config = config.replace(num_classes=train.num_classes, input_size=settings.input_size or config.input_size)
    pixels = resize(train.images, config.input_size).float()
    x_all = (pixels - pixels.mean(dim=(0, 2, 3), keepdim=True)) / pixels.std(dim=(0, 2, 3), keepdim=True)
    y_all = train.labels
    model = build_model(config).to(memory_format=memory_format)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr, momentum=settings.momentum, nesterov=True,
    )
    batch = min(settings.batch_size, len(train))
    steps = len(train) // batch
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    start = time.perf_counter()
    for _ in range(settings.epochs):
        order = torch.randperm(len(train), generator=generator)
        for i in range(steps):
            index = order[i * batch : (i + 1) * batch]
            x = x_all[index].contiguous(memory_format=memory_format)
            loss = F.cross_entropy(model(x), y_all[index], label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    return settings.epochs * steps * batch / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet-0.35x")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--subset", type=int, default=1000, help="images (train + val) of digits")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    train, val = proxy_split(load_dataset("digits"), seed=0, subset=args.subset)
    config = reference(args.model, preset="cifar")
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, input_size=args.input_size, threads=args.threads, progress=False
    )
    variants = {
        "trainer (default: augmentation on)": settings,
        "trainer, augmentation off": dataclasses.replace(settings, augment=False),
    }
    # The bare loop in NCHW too: the evidence for the trainer's channels_last on this CPU.
    bare_loops = {"bare loop": torch.channels_last, "bare loop, NCHW": torch.contiguous_format}
    rates: dict[str, list[float]] = {name: [] for name in [*variants, *bare_loops]}
    for repeat in range(args.repeats):
        runs = [*variants.items(), *((name, None) for name in bare_loops)]
        for name, variant in runs if repeat % 2 == 0 else runs[::-1]:  # alternate who goes first
            if variant is None:
                rates[name].append(bare_loop(config, train, settings, memory_format=bare_loops[name]))
            else:
                rates[name].append(train_proxy(config, train, val, variant).images_per_second)

    bare = statistics.median(rates["bare loop"])
    cpu = cpu_model()
    print(f"# train throughput: {args.model}, {args.input_size}x{args.input_size}, batch {args.batch_size}, "
          f"{len(train)} digits images x {args.epochs} epoch(s), {args.threads} thread(s), {args.repeats} repeats")
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, torch {torch.__version__}, python {platform.python_version()}")
    print()
    print("| loop | images/s (median) | min | max | ratio to bare |")
    print("|---|---|---|---|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {min(values):.1f} | {max(values):.1f} | {median / bare:.3f} |")
    return 0 if all(math.isfinite(v) for values in rates.values() for v in values) else 1


if __name__ == "__main__":
    sys.exit(main())
