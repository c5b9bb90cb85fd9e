"""Where models run: a device name checked once, with one message, before anything starts."""

from __future__ import annotations

import torch

from spaces import GhostNASError

__all__ = ["DEVICES", "check_device"]

DEVICES = ("cpu", "cuda")


def check_device(device: object, *, flag: str = "--device") -> None:
    """``device`` is cpu, or cuda on a machine whose torch sees a CUDA device (``cuda:N`` too)."""
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise GhostNASError(f"{flag} must be cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GhostNASError(f"{flag} {device}: torch sees no CUDA device on this machine (use {flag} cpu)")
