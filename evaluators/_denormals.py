"""Flush-to-zero for denormal floats, on for a block and restored after."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import torch


def _flushing() -> bool:
    # torch has no getter; the FPU flag it sets also flushes Python's own float math, so a
    # halved smallest normal reads as zero exactly when flushing is on.
    return sys.float_info.min / 2 == 0.0


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Denormal values become zero inside the block: late in a decay, denormal weights make CPU
    math crawl, and they would make timings depend on the values. The previous mode comes back
    afterwards, so the rest of the process (numpy, property-based tests) keeps IEEE subnormals."""
    was_flushing = _flushing()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)
