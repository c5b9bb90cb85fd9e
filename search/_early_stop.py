"""Early stopping for multi-objective searches (Optuna's pruners are single-objective).

Successive halving on proxy epochs: at each rung epoch (``first_rung`` = 2, then times eta,
before the last), a trial keeps training only if its validation accuracy is within the top
1/eta of the finished trials that reached the same epoch with FLOPs within a factor
``flops_band`` of its own. Comparing within a FLOPs band keeps small, fast models (slow
learners, but on the front for latency) from being stopped by big ones.

No rung at epoch 1: on CIFAR-10, accuracy after one epoch ranked models worse than FLOPs alone
(Kendall tau 0.27 against 0.33 versus 16 epochs; 0.22 within 2x FLOPs bands), and stopping there
cut trials that would have finished on the front (docs/BENCHMARKS.md, "Proxy training" and
"Search cost"). So at the default 2-epoch budget nothing is stopped; from 3 epochs on it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search._objectives import SearchError

__all__ = ["EarlyStopping", "Peer"]


@dataclass(frozen=True)
class Peer:
    flops: float
    epoch_accuracy: Sequence[float]


@dataclass(frozen=True)
class EarlyStopping:
    eta: float = 3.0
    flops_band: float = 2.0
    min_peers: int = 3
    first_rung: int = 2

    def __post_init__(self) -> None:
        if not (isinstance(self.eta, (int, float)) and self.eta > 1):
            raise SearchError(f"early-stopping rung ratio must be > 1, got {self.eta!r}")
        if not (isinstance(self.first_rung, int) and self.first_rung >= 1):
            raise SearchError(f"early-stopping first rung must be an epoch >= 1, got {self.first_rung!r}")
        if not self.flops_band >= 1:
            raise SearchError(f"early-stopping FLOPs band must be >= 1, got {self.flops_band!r}")

    def rungs(self, epochs: int) -> list[int]:
        rungs, rung = [], float(self.first_rung)
        while round(rung) < epochs:
            if round(rung) not in rungs:
                rungs.append(round(rung))
            rung *= self.eta
        return rungs

    def check(self, *, epoch: int, epochs: int, accuracy: float, flops: float, peers: Sequence[Peer]) -> str | None:
        """Why to stop after ``epoch`` (1-based), or None to go on."""
        if epoch not in self.rungs(epochs):
            return None
        band = [
            p.epoch_accuracy[epoch - 1]
            for p in peers
            if len(p.epoch_accuracy) >= epoch and flops / self.flops_band <= p.flops <= flops * self.flops_band
        ]
        if len(band) < self.min_peers:
            return None
        threshold = float(np.quantile(band, 1 - 1 / self.eta))
        if accuracy >= threshold:
            return None
        return (
            f"epoch {epoch}: accuracy {accuracy:.3f} below the top 1/{self.eta:g} ({threshold:.3f}) "
            f"of {len(band)} trials with FLOPs within {self.flops_band:g}x"
        )
