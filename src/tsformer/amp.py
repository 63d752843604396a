"""bfloat16 mixed precision, and CUDA's bf16 numerics on devices without bf16 arithmetic.

Under CUDA's bf16 autocast the matmul-class ops (linear, convolution, attention) take bf16
inputs and return bf16 results, so everything between them (the residual stream, GELU,
dropout) carries 8 significant bits; losses, softmax and layer norm run in float32.  A model
trained so is not the model float32 trains: on the patchformer preset the GPU scored 2 points
more than the CPU on FiftyWords (docs/benchmarks.md, "On a GPU").  torch's own CPU autocast
does not reproduce it cheaply: on a CPU without bf16 instructions it ran a patchformer step
3.6x slower than float32, and its op lists differ from CUDA's (layer norm in bf16).

:class:`EmulatedBF16` computes CUDA autocast's numerics with float32 matmuls: a matmul-class op
rounds its inputs to bf16, multiplies in float32 (the products of bf16 numbers are exact in
float32, and CUDA accumulates in float32 too) and returns a real bf16 tensor, so the ops after
it run on bf16 values as on the GPU; a float32-list op upcasts its inputs.  Summation order
and the kernels' internals differ, so the results agree with a GPU's to bf16 rounding, not
bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .errors import ConfigError

#: "auto": bf16 autocast on CUDA, float32 elsewhere; "bf16": torch's autocast on any device;
#: "bf16-emulated": CUDA's bf16 autocast on CUDA and its numerics emulated elsewhere
#: (:class:`EmulatedBF16`); "off": float32.
AMP_MODES = ("auto", "bf16", "bf16-emulated", "off")

# CUDA autocast's op lists (torch.amp docs), by the name a torch function reaches a mode with.
LOWER_PRECISION = frozenset({
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "matmul", "__matmul__", "__rmatmul__", "mm", "mv", "bmm", "addmm",
    "addmv", "addr", "baddbmm", "addbmm", "chain_matmul", "prelu",
    "scaled_dot_product_attention"})
FLOAT32 = frozenset({
    "layer_norm", "group_norm", "softmax", "log_softmax", "softmin", "softplus", "cross_entropy",
    "nll_loss", "kl_div", "mse_loss", "l1_loss", "smooth_l1_loss",
    "binary_cross_entropy_with_logits", "norm", "normalize", "sum", "cumsum", "cumprod", "prod",
    "exp", "expm1", "log", "log1p", "log2", "log10", "pow", "__pow__", "__rpow__", "reciprocal",
    "rsqrt", "cdist", "pdist", "cosine_similarity", "renorm"})


def _tree(x: Any, f: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(x, torch.Tensor):
        return f(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_tree(v, f) for v in x)
    return x


def bf16_values(t: torch.Tensor) -> torch.Tensor:
    """``t`` rounded to bfloat16 (nearest even), held in float32 for the arithmetic after."""
    return t.to(torch.bfloat16).float()


def _rounded(t: torch.Tensor) -> torch.Tensor:
    """A matmul input as autocast sees it: float32 and bf16 become bf16 values (held in
    float32, so the op multiplies at float32 speed); other dtypes are left alone."""
    return bf16_values(t) if t.dtype in (torch.float32, torch.bfloat16) else t


def _widened(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _narrowed(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16) if t.dtype == torch.float32 else t


def _call(func: Callable[..., Any], args: tuple, kwargs: dict,
          cast: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``func`` on cast arguments; an ``out=`` tensor is the caller's and stays as it is."""
    return func(*_tree(args, cast),
                **{k: v if k == "out" else _tree(v, cast) for k, v in kwargs.items()})


class EmulatedBF16(TorchFunctionMode):
    """CUDA's bf16 autocast numerics with float32 arithmetic (module docstring: why).

    A context manager, like ``torch.autocast``.  It sees every torch function called inside,
    and the bf16 tensors between the matmuls are slower on a CPU than float32 ones: a
    patchformer step costs 1.15x float32's (``benchmarks/rocket_stem_speed.py --compare
    amp``, geometric mean over the development set's small sets)."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in LOWER_PRECISION:
            return _tree(_call(func, args, kwargs, _rounded), _narrowed)
        if name in FLOAT32:
            return _call(func, args, kwargs, _widened)
        return func(*args, **kwargs)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """The precision context of one forward pass on ``device`` for mode ``amp``."""
    if amp not in AMP_MODES:
        raise ConfigError(f"amp must be one of {', '.join(AMP_MODES)}, not {amp!r}")
    if amp == "bf16-emulated" and device.type != "cuda":
        return EmulatedBF16()
    use = amp in ("bf16", "bf16-emulated") or (amp == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use)
