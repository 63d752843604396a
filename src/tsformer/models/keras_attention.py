"""Exact multi-head attention for the seed model, in Keras' parameter layout.

Keras' ``MultiHeadAttention(key_dim=D, num_heads=H)`` projects ``C`` input features to
``H x D`` queries, keys and values.  When ``C`` is much smaller than ``H * D`` (FordA: 1 vs
1024) the same function can be computed in the ``C``-dimensional input space:

* scores ``q_i . k_j = u_i . x_j + (terms constant in j)`` with ``u_i = x_i Wq Wk^T + bq Wk^T``;
  the constant terms cancel in the softmax;
* ``sum_j a_ij (x_j Wv + bv) Wo = (A X)(Wv Wo) + bv Wo`` because each row of ``A`` sums to 1
  (with attention dropout the rows sum to 1 only in expectation, so the ``bv Wo`` term is
  weighted by the kept, rescaled row sum, exactly as Keras computes it).

Both paths take the same parameters, so a model can switch between them freely.
Shapes: ``x`` is ``(batch, time, C)``; kernels follow Keras: query/key/value ``(C, H, D)``,
biases ``(H, D)``, output kernel ``(H, D, C)``, output bias ``(C,)``.

The input-space attention core ``o_i = sum_j softmax_j(a_i . x_j) m_ij x_j`` has three
implementations (``backend=``):

* ``"native"`` (C = 1 only, the seed): a C++ extension, ``tsformer._keras_attention``
  (``src/tsformer/csrc/keras_attention.cpp``), compiled when the package is installed (see
  ``setup.py``) and run in PyTorch's thread pool.  With one feature each score row is
  ``a_i x_j``, so the row maximum is known in closed form (``a_i max x`` or ``a_i min x``),
  forward needs one pass of ``T^2`` exponentials and backward one more, and no ``T x T``
  tensor ever exists.  The gradient of ``a`` comes from moments accumulated in forward.  When
  the extension is missing (installed without a compiler or without torch at build time),
  fails to load (built against another torch) or ``TSFORMER_NATIVE=0``, ``"auto"`` uses the
  PyTorch paths and an explicit ``"native"`` falls back to ``"chunked"`` with one
  ``RuntimeWarning``; :func:`native_available` and :func:`native_status` tell which.
* ``"chunked"``: pure PyTorch, any C, processes query chunks and recomputes in backward, so
  memory stays at one chunk of scores.  Same masks as the native kernel (used to test it).
* ``"sdpa"``: ``F.scaled_dot_product_attention`` with the head dimension zero-padded to 8.
  Fast without dropout; with dropout PyTorch's CPU kernel falls back to materialising
  ``B x H x T x T`` probabilities (about 9x slower), so on the CPU it is not used for dropout
  by default.  On CUDA it is the default: the fused kernels apply dropout themselves.

Attention dropout (native and chunked) is counter-based: the keep mask of element
``(b, h, i, j)`` is a pure function of a 64-bit seed and the element's index, so backward
regenerates it instead of storing it.  Each group of 4 elements of a row takes one SplitMix64
output; element ``j`` uses its 16-bit lane ``j % 4`` and is dropped when that lane is below
``round(p * 2**16)``.  The drop probability is therefore ``p`` quantised to a multiple of
``2**-16`` (exact for p = 0.25), and kept probabilities are scaled by ``1 / (1 - p_q)`` with
that quantised ``p_q``.  The seed is drawn from PyTorch's default generator, so results are
reproducible under ``torch.manual_seed``.  See :func:`dropout_keep_mask`.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import warnings
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

# The fused CPU kernel wants a head dimension that is a multiple of 8; zero padding leaves
# every dot product (and so every score and output) unchanged.
_PAD_TO = 8

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_MASK_BITS = 16

BACKENDS = ("auto", "native", "chunked", "sdpa")


def mha_direct(
    x: Tensor,
    qk: Tensor, qb: Tensor, kk: Tensor, kb: Tensor, vk: Tensor, vb: Tensor,
    ok: Tensor, ob: Tensor,
    dropout_p: float = 0.0,
) -> Tensor:
    """Attention exactly as Keras computes it: project to ``H x D``, attend, project back."""
    d = qk.shape[-1]
    q = torch.einsum("btc,chd->bhtd", x, qk) + qb[:, None, :]
    k = torch.einsum("btc,chd->bhtd", x, kk) + kb[:, None, :]
    v = torch.einsum("btc,chd->bhtd", x, vk) + vb[:, None, :]
    o = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=1.0 / math.sqrt(d))
    return torch.einsum("bhtd,hdc->btc", o, ok) + ob


def _pad(t: Tensor, width: int) -> Tensor:
    return t if t.shape[-1] == width else F.pad(t, (0, width - t.shape[-1]))


def quantized_dropout_p(p: float) -> float:
    """The drop probability the counter-based mask really uses: ``p`` rounded to ``2**-16``."""
    return _threshold(p) / float(1 << _MASK_BITS)


def _threshold(p: float) -> int:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {p}")
    return min(int(round(p * (1 << _MASK_BITS))), (1 << _MASK_BITS) - 1)


def _signed64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _mix64(z: Tensor) -> Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping multiply, logical shifts)."""
    z = (z ^ ((z >> 30) & ((1 << 34) - 1))) * _signed64(_MIX1)
    z = (z ^ ((z >> 27) & ((1 << 37) - 1))) * _signed64(_MIX2)
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def _keep_rows(seed: int, rows: Tensor, t: int, p: float) -> Tensor:
    """Keep mask (``len(rows)`` x ``t``) for global score rows ``rows = bh * T + i``."""
    g = (t + 3) // 4
    n = rows.to(torch.int64)[:, None] * g + torch.arange(g, dtype=torch.int64)
    h = _mix64(n * _signed64(_GOLDEN) + _signed64(seed))
    lanes = h.contiguous().view(torch.int16).to(torch.int32) & 0xFFFF  # little-endian lanes
    return lanes[:, :t] >= _threshold(p)


def dropout_keep_mask(seed: int, batch: int, heads: int, t: int, p: float) -> Tensor:
    """The ``(batch, heads, t, t)`` boolean keep mask that the dropout paths use for ``seed``.

    Materialises the whole mask, so it is meant for tests and references, not training.
    """
    rows = torch.arange(batch * heads * t)
    return _keep_rows(seed, rows, t, p).view(batch, heads, t, t)


def _draw_seed() -> int:
    return int(torch.randint(-(2**63), 2**63 - 1, (1,), dtype=torch.int64)) & ((1 << 64) - 1)


# --------------------------------------------------------------------------- chunked (PyTorch)


class _ChunkedAttention(torch.autograd.Function):
    """``o_i = sum_j softmax_j(a_i . k_j) d_ij v_j`` over query chunks, recomputed in backward.

    ``a`` (B, H, T, C) scaled query factors, ``k`` (B, T, C) keys, ``v`` (B, T, Cv) values.
    Only one ``(B, H, chunk, T)`` block of scores exists at a time, forward and backward.
    """

    @staticmethod
    def forward(ctx, a: Tensor, k: Tensor, v: Tensor, p: float, seed: int, chunk: int) -> Tensor:  # type: ignore[override]  # noqa: E501
        b, h, t, _ = a.shape
        keep_scale = 1.0 / (1.0 - quantized_dropout_p(p)) if p > 0 else 1.0
        o = a.new_empty(b, h, t, v.shape[-1])
        vh = v[:, None]
        for i0 in range(0, t, chunk):
            i1 = min(t, i0 + chunk)
            pr = torch.softmax(torch.einsum("bhic,bjc->bhij", a[:, :, i0:i1], k), dim=-1)
            if p > 0:
                pr = pr * _chunk_keep(seed, b, h, t, i0, i1, p) * keep_scale
            o[:, :, i0:i1] = pr @ vh
        ctx.save_for_backward(a, k, v, o)
        ctx.p, ctx.seed, ctx.chunk, ctx.keep_scale = p, seed, chunk, keep_scale
        return o

    @staticmethod
    @once_differentiable
    def backward(ctx, go: Tensor):  # type: ignore[override]
        a, k, v, o = ctx.saved_tensors
        b, h, t, _ = a.shape
        da = torch.empty_like(a)
        dk, dv = torch.zeros_like(k), torch.zeros_like(v)
        for i0 in range(0, t, ctx.chunk):
            i1 = min(t, i0 + ctx.chunk)
            ac, gc = a[:, :, i0:i1], go[:, :, i0:i1]
            pr = torch.softmax(torch.einsum("bhic,bjc->bhij", ac, k), dim=-1)
            gv = torch.einsum("bhic,bjc->bhij", gc, v)  # g_i . v_j
            if ctx.p > 0:
                d = _chunk_keep(ctx.seed, b, h, t, i0, i1, ctx.p) * ctx.keep_scale
                pd, gv = pr * d, gv * d
            else:
                pd = pr
            # dL/ds_ij = p_ij (d_ij g_i.v_j - g_i.o_i)
            ds = pr * (gv - (gc * o[:, :, i0:i1]).sum(-1, keepdim=True))
            da[:, :, i0:i1] = ds @ k[:, None]
            dk += torch.einsum("bhij,bhic->bjc", ds, ac)
            dv += torch.einsum("bhij,bhic->bjc", pd, gc)
        return da, dk, dv, None, None, None


def _chunk_keep(seed: int, b: int, h: int, t: int, i0: int, i1: int, p: float) -> Tensor:
    rows = (torch.arange(b * h)[:, None] * t + torch.arange(i0, i1)).reshape(-1)
    return _keep_rows(seed, rows, t, p).view(b, h, i1 - i0, t)


# --------------------------------------------------------------------------- native (C = 1)

_NATIVE_MODULE = "tsformer._keras_attention"
_warned: set[str] = set()


@functools.cache
def _load_native() -> tuple[ModuleType | None, str]:
    """The compiled kernel module (built at install time from ``csrc/keras_attention.cpp``) and
    a one-line status; ``(None, reason)`` when it is missing or does not load."""
    try:
        mod = importlib.import_module(_NATIVE_MODULE)
    except (ImportError, OSError) as exc:  # not built, or built against another torch
        return None, f"{_NATIVE_MODULE} is not available ({type(exc).__name__}: {exc})"
    return mod, f"{_NATIVE_MODULE} ({mod.isa()} kernels)"


def _native() -> ModuleType | None:
    if os.environ.get("TSFORMER_NATIVE", "1") == "0":
        return None
    return _load_native()[0]


def native_available() -> bool:
    """Whether the compiled C = 1 kernel can be used.

    It is built when tsformer is installed (``scripts/setup.sh``: ``pip install
    --no-build-isolation`` with torch present and a C++ compiler); ``TSFORMER_NATIVE=0``
    disables it.  Without it everything works through the PyTorch paths (the seed's training
    step with attention dropout is ~15x slower on "chunked"); :func:`native_status` says why
    it is missing.
    """
    return _native() is not None


def native_status() -> str:
    """One line: the compiled kernel in use (and its SIMD variant), or why it is not used."""
    if os.environ.get("TSFORMER_NATIVE", "1") == "0":
        return "disabled by TSFORMER_NATIVE=0"
    return _load_native()[1]


def _warn_fallback() -> None:
    why = native_status()
    if why not in _warned:
        _warned.add(why)
        warnings.warn(
            f"tsformer: backend='native' asked for, but the compiled kernel is unavailable "
            f"({why}); using the 'chunked' PyTorch implementation (same values, slower). "
            "Reinstall with scripts/setup.sh (or pip install --no-build-isolation) to build it.",
            RuntimeWarning, stacklevel=4,
        )


class _NativeAttention1(torch.autograd.Function):
    """C = 1 attention core in C++: ``a`` (B, H, T) scaled query factors, ``x`` (B, T).

    Returns ``o_i = sum_j p_ij d_ij x_j`` and ``r_i = sum_j p_ij d_ij`` (1 without dropout;
    it weights the value bias ``bv Wo``).
    """

    @staticmethod
    def forward(ctx, a: Tensor, x: Tensor, p: float, seed: int, mod: ModuleType) -> tuple[Tensor, Tensor]:  # type: ignore[override]  # noqa: E501
        a, x = a.contiguous(), x.contiguous()
        thr = _threshold(p) if p > 0 else 0
        keep_scale = 1.0 / (1.0 - thr / float(1 << _MASK_BITS))
        o, r, z, ex, edx2 = mod.forward(a, x, seed, thr, keep_scale)
        ctx.save_for_backward(a, x, o, r, z, ex, edx2)
        ctx.seed, ctx.thr, ctx.keep_scale, ctx.mod = seed, thr, keep_scale, mod
        return o, r

    @staticmethod
    @once_differentiable
    def backward(ctx, go: Tensor, gr: Tensor):  # type: ignore[override]
        a, x, o, r, z, ex, edx2 = ctx.saved_tensors
        da, dxh = ctx.mod.backward(
            a, x, go.contiguous(), gr.contiguous(), o, r, z, ex, edx2,
            ctx.seed, ctx.thr, ctx.keep_scale,
        )
        return da, dxh.sum(1), None, None, None


# --------------------------------------------------------------------------- public API


def _resolve_backend(backend: str, x: Tensor, dropout_p: float) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    native_ok = x.shape[-1] == 1 and x.dtype == torch.float32 and x.device.type == "cpu"
    if backend == "native":
        if not native_ok:
            raise ValueError("the native backend needs C = 1 and float32 on the CPU")
        if native_available():
            return backend
        _warn_fallback()
        return "chunked"
    if backend != "auto":
        return backend
    if native_ok and native_available():
        return "native"
    if x.device.type != "cpu":  # CUDA's fused SDPA kernels apply dropout themselves
        return "sdpa"
    return "chunked" if dropout_p > 0 else "sdpa"


def mha_fast(
    x: Tensor,
    qk: Tensor, qb: Tensor, kk: Tensor, kb: Tensor, vk: Tensor, vb: Tensor,
    ok: Tensor, ob: Tensor,
    dropout_p: float = 0.0,
    *,
    seed: int | None = None,
    backend: str = "auto",
    chunk: int = 64,
) -> Tensor:
    """The same function as :func:`mha_direct`, computed in the ``C``-dimensional input space.

    ``dropout_p`` drops attention probabilities (Keras semantics).  ``seed`` fixes the dropout
    mask of the ``native``/``chunked`` backends (default: drawn from PyTorch's generator);
    ``backend`` picks the implementation of the attention core (see the module docstring),
    ``chunk`` the query chunk of ``"chunked"``.
    """
    b, t, c = x.shape
    h, d = qb.shape
    scale = 1.0 / math.sqrt(d)
    # a_i = (x_i (Wq Wk^T) + bq Wk^T) / sqrt(D), per head: (B, H, T, C)
    qk_c = torch.einsum("chd,ehd->hce", qk, kk) * scale
    qb_c = torch.einsum("hd,ehd->he", qb, kk) * scale
    a = torch.einsum("btc,hce->bhte", x, qk_c) + qb_c[None, :, None, :]
    vo = torch.einsum("chd,hde->hce", vk, ok)
    vbo = torch.einsum("hd,hde->he", vb, ok)
    which = _resolve_backend(backend, x, dropout_p)
    if dropout_p > 0 and which != "sdpa":
        seed = (_draw_seed() if seed is None else seed) & ((1 << 64) - 1)
    if which == "native":
        o, r = _NativeAttention1.apply(a[..., 0], x[..., 0], dropout_p, seed or 0, _native())
        o, r = o[..., None], r[..., None]
    else:
        # values (x_j, 1): with dropout the rows of the dropped attention matrix do not sum
        # to 1, so bv Wo is weighted by the kept row sum r_i, as in Keras.
        v = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1) if dropout_p > 0 else x
        if which == "chunked":
            ov = _ChunkedAttention.apply(a, x, v, dropout_p, seed or 0, chunk)
        else:
            width = max(_PAD_TO, -(-c // _PAD_TO) * _PAD_TO)
            ov = F.scaled_dot_product_attention(
                _pad(a, width), _pad(x, width)[:, None].expand(b, h, t, width),
                _pad(v, max(_PAD_TO, -(-v.shape[-1] // _PAD_TO) * _PAD_TO))[:, None].expand(
                    b, h, t, -1),
                dropout_p=dropout_p, scale=1.0,
            )
        o = ov[..., :c]
        r = ov[..., c:c + 1] if dropout_p > 0 else None
    out = torch.einsum("bhtc,hce->bte", o, vo) + ob
    if r is None or dropout_p == 0:
        return out + vbo.sum(0)
    return out + torch.einsum("bht,he->bte", r[..., 0], vbo)


def fast_is_cheaper(n_features: int, num_heads: int, key_dim: int) -> bool:
    """The input-space path wins whenever C is well below the projected width H*D."""
    return 4 * n_features <= num_heads * key_dim
