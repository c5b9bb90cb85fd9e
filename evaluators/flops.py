"""FLOPs and parameter counts with fvcore, in the GhostNet paper's convention.

The paper (and the reference table in DESIGN.md) counts multiply-adds of convolution and linear
layers only. fvcore by default also counts batch norm (about 1 MAC per output element), adaptive
average pooling, and, with warnings, nothing at all for elementwise ops (ReLU, add, the SE
multiply, concatenation). Those are memory-bound and a few percent of the total; leaving them out
keeps our figures comparable with the published ones, so only the conv and linear handles run.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch

with warnings.catch_warnings():  # fvcore's import touches torch.jit.script, deprecated in torch 2.x
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn.jit_analysis import JitModelAnalysis
    from fvcore.nn.jit_handles import addmm_flop_jit, conv_flop_jit, linear_flop_jit, matmul_flop_jit

from spaces import GhostNetConfig, build_model

__all__ = ["Cost", "count_cost", "count_model"]

# fvcore counts one "flop" per multiply-add for these, which is the paper's MACs.
_PAPER_OPS = {
    "aten::_convolution": conv_flop_jit,
    "aten::linear": linear_flop_jit,
    "aten::addmm": addmm_flop_jit,
    "aten::matmul": matmul_flop_jit,
}


@dataclass(frozen=True)
class Cost:
    params: int
    flops: int  # multiply-adds of conv and linear layers at batch size 1


def count_model(model: torch.nn.Module, input_size: int) -> Cost:
    """Count ``model`` on one ``3 x input_size x input_size`` image."""
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        # JitModelAnalysis is FlopCountAnalysis without its default handles: only ours count.
        analysis = JitModelAnalysis(model, torch.zeros(1, 3, input_size, input_size))
        analysis.set_op_handle(**_PAPER_OPS)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        # The JIT trace fvcore runs warns about deprecations and Python-side tensor branches;
        # none of it is actionable for the user, and it would flood every trial's log.
        with warnings.catch_warnings(), _quiet("fvcore"):
            warnings.simplefilter("ignore")
            flops = int(analysis.total())
    finally:
        model.train(was_training)
    return Cost(params=params, flops=flops)


def count_cost(config: GhostNetConfig) -> Cost:
    """Params and FLOPs of the network ``config`` describes, at its own input size, in its
    inference form: re-parameterisable (ghostv3) blocks are counted fused, as they run."""
    with torch.no_grad():
        return count_model(build_model(config, deploy=True), config.input_size)


class _quiet:
    """Raise a logger's level for a block (fvcore logs skipped ops at WARNING)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)
