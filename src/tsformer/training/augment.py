"""Training-time augmentations of a batch ``(B, C, T)``, each drawn from the loop's generator."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _jitter(x: Tensor, g: torch.Generator) -> Tensor:
    return x + 0.03 * torch.randn(x.shape, generator=g, device=x.device) * x.std(-1, keepdim=True)


def _scale(x: Tensor, g: torch.Generator) -> Tensor:
    s = 1 + 0.1 * torch.randn(x.shape[0], 1, 1, generator=g, device=x.device)
    return x * s


def _shift(x: Tensor, g: torch.Generator) -> Tensor:
    """Circular time shift by up to 10% of the length, one shift per series."""
    t = x.shape[-1]
    k = torch.randint(-(t // 10), t // 10 + 1, (x.shape[0],), generator=g, device=x.device)
    idx = (torch.arange(t, device=x.device)[None, :] - k[:, None]) % t
    return torch.gather(x, -1, idx[:, None, :].expand_as(x))


def _resample(x: Tensor, s: Tensor) -> Tensor:
    """``x (B, C, T)`` read at fractional times ``s (B, T)`` (clamped to the series), by
    linear interpolation (the window warp's resampler)."""
    t = x.shape[-1]
    s = s.clamp(0, t - 1)
    lo = s.floor().long().clamp(max=t - 2)
    frac = (s - lo).to(x.dtype)[:, None, :]
    lo = lo[:, None, :].expand(-1, x.shape[1], -1)
    return torch.gather(x, -1, lo) * (1 - frac) + torch.gather(x, -1, lo + 1) * frac


def _warp(x: Tensor, g: torch.Generator) -> Tensor:
    """Window warping: a random window of a tenth of the series is stretched or squeezed by
    2x, then the series is resampled to its length (shapes that vary in local speed)."""
    b, _, t = x.shape
    if t < 4:  # no window to warp in a series this short
        return x
    w = max(2.0, 0.1 * t)
    start = torch.rand(b, 1, generator=g, device=x.device) * (t - 1 - w)
    f = torch.where(torch.rand(b, 1, generator=g, device=x.device) < 0.5, 0.5, 2.0)
    total = (t - 1) + (f - 1) * w  # warped length, per series
    u = torch.linspace(0, 1, t, device=x.device)[None, :] * total  # output grid
    s = torch.where(u < start, u, torch.where(u < start + f * w, start + (u - start) / f,
                                              u - (f - 1) * w))
    return _resample(x, s)


#: Training-time augmentations, by name, applied to a batch ``(B, C, T)`` in the given order.
AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "jitter": _jitter, "scale": _scale, "shift": _shift, "warp": _warp,
}
