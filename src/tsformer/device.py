"""Where and in what precision a network runs: device names and bfloat16 autocast."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .errors import ConfigError

AMP_MODES = ("auto", "bf16", "off")


def parse_device(device: str) -> torch.device | None:
    """The device a name means (None for "auto"), or one ConfigError line; no hardware check."""
    if device == "auto":
        return None
    try:
        return torch.device(device)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from e


def resolve_device(device: str = "auto") -> torch.device:
    """The device to run on; "auto" is CUDA when available.  Refuses a missing GPU."""
    dev = parse_device(device)
    if dev is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; use 'auto', 'cpu' or 'cuda[:N]'")
    return dev


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """The precision context of one forward pass on ``device`` for mode ``amp`` ("auto":
    bf16 on CUDA, float32 elsewhere, where a CPU without bf16 arithmetic only slows down)."""
    if amp not in AMP_MODES:
        raise ConfigError(f"amp must be one of {', '.join(AMP_MODES)}, not {amp!r}")
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use)
