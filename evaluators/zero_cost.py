"""Zero-cost accuracy estimators: scores of an untrained network from a few batches, in seconds.

Each score is the published definition, computed on a freshly initialised model (seeded); a
larger score predicts a more accurate trained network. ``bench/proxy_ranking.py`` measures how
well each ranks models against ``docs/bench/ground_truth.jsonl`` (docs/BENCHMARKS.md, "Proxy
ranking"). Which weights count: the weights of every ``Conv2d`` and ``Linear`` layer (as in the
reference implementations of Abdelfattah et al. 2021 and Li et al. 2023); the loss, where one is
needed, is the mean cross-entropy of the batch.

* :func:`synflow`: Tanaka et al., "Pruning neural networks without any data by iteratively
  conserving synaptic flow", NeurIPS 2020.
* :func:`naswot`: Mellor et al., "Neural Architecture Search without Training", ICML 2021
  (the Hamming-kernel log-determinant of the published version).
* :func:`jacov`: the same authors' first version (arXiv 2006.04647v1): the Jacobian covariance.
* :func:`grad_norm`, :func:`snip`: Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS",
  ICLR 2021; snip after Lee et al., "SNIP: Single-shot Network Pruning based on Connection
  Sensitivity", ICLR 2019.
* :func:`zico`: Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on
  Gradients", ICLR 2023.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.data import ImageSet, resize
from spaces import GhostNetConfig, build_model

__all__ = ["ZERO_COST_SCORES", "grad_norm", "jacov", "naswot", "snip", "synflow", "zero_cost_scores", "zico"]

Batch = tuple[torch.Tensor, torch.Tensor]  # (float inputs, int64 labels)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _gradients(model: nn.Module, batch: Batch) -> list[torch.Tensor]:
    """d(mean cross-entropy)/d(weight) for every conv and linear weight, the model in train mode."""
    model.train()
    model.zero_grad(set_to_none=True)
    x, y = batch
    F.cross_entropy(model(x), y).backward()
    return [w.grad.detach().clone() if w.grad is not None else torch.zeros_like(w) for w in _weights(model)]


def synflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Tanaka et al. 2020: with every parameter replaced by its absolute value and an all-ones
    input, R = sum of the network's outputs; the score is sum over weights of theta * dR/dtheta.

    Data-free by definition (only the input's shape is used). Computed in float64 with BatchNorm
    in eval mode at its initial statistics (no batch statistics: the ones-input has no variance),
    as the reference implementation leaves BN out. The model's parameters are changed (abs, float64).
    """
    model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad(set_to_none=True)
    model(torch.ones(1, *input_shape, dtype=torch.float64)).sum().backward()
    return float(sum((w.detach() * w.grad).sum() for w in _weights(model) if w.grad is not None))


def grad_norm(model: nn.Module, batch: Batch) -> float:
    """Abdelfattah et al. 2021: the sum over layers of the Euclidean norm of dL/dW."""
    return float(sum(g.norm() for g in _gradients(model, batch)))


def snip(model: nn.Module, batch: Batch) -> float:
    """Lee et al. 2019, as a network score in Abdelfattah et al. 2021: sum over weights of the
    connection sensitivity |dL/dW * W|."""
    grads = _gradients(model, batch)
    return float(sum((g * w.detach()).abs().sum() for g, w in zip(grads, _weights(model))))


def zico(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Li et al. 2023: over >= 2 batches, per weight the mean |gradient| over its standard deviation
    (population), summed within a layer; the score is the sum over layers of the log of that sum.
    Weights whose gradient does not vary are left out, and so is a layer whose sum is zero."""
    if len(batches) < 2:
        raise ValueError(f"zico needs at least 2 batches, got {len(batches)}")
    per_batch = [_gradients(model, b) for b in batches]
    score = 0.0
    for layer in zip(*per_batch):
        grads = torch.stack(layer).double()
        std = grads.std(dim=0, unbiased=False)
        keep = std != 0
        total = float((grads.abs().mean(dim=0)[keep] / std[keep]).sum())
        if total != 0:
            score += math.log(total)
    return score


@contextlib.contextmanager
def _relu_codes(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect, per forward pass, each ReLU's output > 0 flattened per input."""
    codes: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: codes.append((out > 0).flatten(1)))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        yield codes
    finally:
        for h in hooks:
            h.remove()


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """Mellor et al. 2021: each input's binary code c_i (which ReLU units are active), the kernel
    K[i, j] = N_A - Hamming(c_i, c_j) over the batch, and the score log|det K| (-inf if singular).

    The batch statistics of BatchNorm are used (train mode), as in the paper's code."""
    model.train()
    with torch.no_grad(), _relu_codes(model) as codes:
        model(x)
    c = torch.cat(codes, dim=1).double()
    # N_A - Hamming = (agreements on 1) + (agreements on 0)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(kernel).logabsdet)


def jacov(model: nn.Module, x: torch.Tensor, *, k: float = 1e-5) -> float:
    """Mellor et al. 2020 (arXiv 2006.04647v1): J_i = d(sum of outputs)/d(input i), flattened; the
    correlation matrix of the J_i over the batch has eigenvalues s; the score is
    -sum(log(s + k) + 1 / (s + k)). Train-mode BatchNorm, as in their code."""
    model.train()
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()
    jac = x.grad.flatten(1).double()
    corr = torch.corrcoef(jac)
    eigenvalues = torch.linalg.eigvalsh(corr)
    return float(-(torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum())


ZERO_COST_SCORES: dict[str, Callable[[nn.Module, list[Batch]], float]] = {
    "synflow": lambda model, batches: synflow(model, batches[0][0].shape[1:]),
    "naswot": lambda model, batches: naswot(model, batches[0][0]),
    "jacov": lambda model, batches: jacov(model, batches[0][0]),
    "grad_norm": lambda model, batches: grad_norm(model, batches[0]),
    "snip": lambda model, batches: snip(model, batches[0]),
    "zico": lambda model, batches: zico(model, batches),
}


def zero_cost_scores(
    config: GhostNetConfig,
    data: ImageSet,
    *,
    names: Sequence[str] = tuple(ZERO_COST_SCORES),
    batches: int = 2,
    batch_size: int = 64,
    input_size: int | None = None,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, float]]:
    """Each score in ``names`` for ``config`` (with ``data``'s classes, at ``input_size`` if given)
    and the seconds each took. Every score gets its own freshly built model from ``seed`` and the
    same ``batches`` seeded batches of ``data`` (normalised per channel over those images).
    The caller's random state is kept."""
    unknown = [n for n in names if n not in ZERO_COST_SCORES]
    if unknown:
        raise ValueError(f"unknown zero-cost score {unknown[0]!r} (choose from {', '.join(ZERO_COST_SCORES)})")
    if batches < 1 or batch_size < 2 or batches * batch_size > len(data):
        raise ValueError(f"need {batches} batch(es) of {batch_size} images (>= 2 each), {data.name} has {len(data)}")
    config = config.replace(num_classes=data.num_classes, **({"input_size": input_size} if input_size else {}))
    with torch.random.fork_rng(devices=[]):
        index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[: batches * batch_size]
        images = resize(data.images[index], config.input_size).float()
        images = (images - images.mean(dim=(0, 2, 3), keepdim=True)) / images.std(dim=(0, 2, 3), keepdim=True).clamp(min=1.0)
        labels = data.labels[index]
        split = [(images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(index), batch_size)]
        scores, seconds = {}, {}
        for name in names:
            t = time.perf_counter()
            torch.manual_seed(seed)
            scores[name] = ZERO_COST_SCORES[name](build_model(config), split)
            seconds[name] = time.perf_counter() - t
    return scores, seconds
