"""How a series is cut into tokens: patch length, stride, padding and the stem's kernel.

Shared by the patchformer network and its rocket stem; each rule depends on sizes only.
Also :data:`is_exporting`, which the stem and the ensemble consult to trace export-friendly ops.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

#: Whether ``torch.export`` is tracing the call (torch.compiler.is_exporting, torch >= 2.5;
#: never on older releases, which tsformer's export does not support anyway).
is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)

#: Tokens the patcher aims for: attention is quadratic in it, and ~64 covers every length.
TARGET_TOKENS = 64
#: Bounds of the automatic stem kernel (see :func:`resolve_stem_kernel`).
MIN_KERNEL, MAX_KERNEL = 7, 63


def resolve_patching(n_timepoints: int, patch_len: int | str = "auto",
                     stride: int | str = "auto", target: int = TARGET_TOKENS
                     ) -> tuple[int, int]:
    """Patch length and stride: about ``target`` half-overlapping patches."""
    if stride == "auto":
        stride = max(1, round(n_timepoints / target))
    if patch_len == "auto":
        patch_len = 2 * int(stride)
    patch_len, stride = int(patch_len), int(stride)
    if patch_len < 1 or stride < 1:
        raise ConfigError(f"patch_len and stride must be >= 1, not {patch_len} and {stride}")
    return min(patch_len, n_timepoints), stride


def resolve_stem_kernel(stride: int, stem_kernel: int | str = "auto") -> int:
    """Stem kernel: ``16 * stride - 1`` within [7, 63] unless given.

    Tied to the token stride, so the kernel is a fixed share of the series (about a quarter)
    up to the cap that bounds the cost, which grows linearly with it.  Long kernels act as
    learned frequency filters: on FordA (stride 8) kernels 7, 15, 31, 63 reached 0.934,
    0.939, 0.947, 0.955 (docs/results.md, ablations)."""
    if stem_kernel == "auto":
        return int(min(MAX_KERNEL, max(MIN_KERNEL, 16 * stride - 1)))
    return int(stem_kernel)


def patch_padding(n: int, patch_len: int, stride: int) -> tuple[int, int]:
    """Right padding so the last points fall in a patch, and the number of patches."""
    pad = (stride - (n - patch_len) % stride) % stride
    return pad, (n + pad - patch_len) // stride + 1
