"""Running a network over arrays: logits in bounded memory, in the precision it trained in."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .device import autocast
from .errors import DataError


@torch.no_grad()
def predict_logits(
    model: nn.Module, X: np.ndarray | Tensor, *, batch_size: int = 256,
    device: torch.device | str | None = None, amp: str = "auto",
) -> Tensor:
    """Float32 logits on the CPU; batches of ``batch_size`` go to the device one at a time."""
    first = next(model.parameters(), None)
    dev = torch.device(device) if device is not None else (
        first.device if first is not None else torch.device("cpu"))
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[i:i + batch_size], dtype=torch.float32).to(dev)
            with autocast(dev, amp):
                out.append(model(xb).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.empty(0)
    return torch.cat(out)


def refuse_non_finite(logits: Tensor, X: np.ndarray | Tensor) -> Tensor:
    """``logits`` if every value is finite; else one DataError naming the first series whose
    outputs are NaN/inf (its values overflow the model), so no NaN reaches a user or a JSON
    document."""
    bad = ~torch.isfinite(logits).all(dim=1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        peak = float(torch.as_tensor(X[i]).abs().max())
        raise DataError(f"the model's outputs for series {i} are not finite: its values (up to "
                        f"{peak:.3g} in magnitude) overflow the model; rescale the series "
                        "(e.g. z-normalise each one)")
    return logits
