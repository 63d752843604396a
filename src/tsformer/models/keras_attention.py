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

* ``"native"`` (C = 1 only, the seed): a small C kernel compiled with the system compiler on
  first use and cached.  With one feature each score row is ``a_i x_j``, so the row maximum is
  known in closed form (``a_i max x`` or ``a_i min x``), forward needs one pass of ``T^2``
  exponentials and backward one more, and no ``T x T`` tensor ever exists.  The gradient of
  ``a`` comes from moments accumulated in forward.
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

import ctypes
import hashlib
import math
import os
import platform
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

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

_NATIVE_SRC = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* exp for arguments <= ~0 (scores minus the row maximum); Cephes polynomial, ~1 ulp. */
static inline float exp_neg(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float q = 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    float y = q * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, 4);
    return y * s;
}

typedef struct {
    const float *a, *x, *g, *gr, *o_s, *r_s, *z_s, *ex_s, *edx2_s;
    float *o, *r, *z, *ex, *edx2, *da, *dx;
    int64_t H, T;
    uint64_t seed;
    int thr;          /* drop when 16-bit lane < thr; 0 = no dropout */
    float keep_scale; /* 1 / (1 - p) */
} job_t;

/* Per-thread scratch.  Rows are padded to a multiple of 32 so every loop runs full vectors
   (a scalar tail of up to 31 elements costs ~30% at T = 500); the padded x repeats x[0] so
   exponents stay <= 0, and pads get weight 0. */
typedef struct { float *xp, *w, *k, *acc; uint64_t *hb; int64_t Tp; } scratch_t;

static int scratch_init(scratch_t *s, int64_t T) {
    s->Tp = (T + 31) / 32 * 32;
    size_t n = (size_t)s->Tp * 4 + 64;
    s->xp = (float *)aligned_alloc(64, n); s->w = (float *)aligned_alloc(64, n);
    s->k = (float *)aligned_alloc(64, n); s->acc = (float *)aligned_alloc(64, n);
    s->hb = (uint64_t *)aligned_alloc(64, n);
    if (!s->xp || !s->w || !s->k || !s->acc || !s->hb) return 0;
    for (int64_t j = 0; j < s->Tp; ++j) s->w[j] = j < T ? 1.0f : 0.0f;
    return 1;
}

static void scratch_free(scratch_t *s) {
    free(s->xp); free(s->w); free(s->k); free(s->acc); free(s->hb);
}

/* x row of batch b into the padded buffer; returns min and max */
static void load_x(scratch_t *s, const float *xb, int64_t T, float *mn, float *mx) {
    float lo = xb[0], hi = xb[0];
    for (int64_t j = 0; j < T; ++j) {
        s->xp[j] = xb[j];
        lo = xb[j] < lo ? xb[j] : lo; hi = xb[j] > hi ? xb[j] : hi;
    }
    for (int64_t j = T; j < s->Tp; ++j) s->xp[j] = xb[0];
    *mn = lo; *mx = hi;
}

/* keep mask of one score row as floats {0, 1} (times the pad weight): group g of 4 elements
   is SplitMix64(seed + (row * G + g) * golden), element j uses 16-bit lane j % 4 */
static void row_keep(scratch_t *s, int64_t T, uint64_t seed, int64_t row, uint16_t thr) {
    const int64_t G = (T + 3) / 4, Gp = s->Tp / 4;
    uint64_t *hb = s->hb;
    const uint64_t base = seed + (uint64_t)(row * G) * 0x9E3779B97F4A7C15ULL;
    for (int64_t g = 0; g < Gp; ++g) hb[g] = mix64(base + (uint64_t)g * 0x9E3779B97F4A7C15ULL);
    const uint16_t *h16 = (const uint16_t *)hb;
    float *k = s->k;
    const float *w = s->w;
#pragma omp simd
    for (int64_t j = 0; j < s->Tp; ++j) k[j] = h16[j] >= thr ? w[j] : 0.0f;
}

static void fwd_bh(const job_t *jb, scratch_t *sp, int64_t bh) {
    const int64_t T = jb->T;
    const uint16_t thr = (uint16_t)jb->thr;
    scratch_t s = *sp;
    const int64_t Tp = s.Tp;
    const float *xp = s.xp, *w = s.w, *k = s.k;
    {
        float xmin, xmax;
        load_x(&s, jb->x + (bh / jb->H) * T, T, &xmin, &xmax);
        for (int64_t i = 0; i < T; ++i) {
            const int64_t row = bh * T + i;
            const float ai = jb->a[row];
            const float m = ai >= 0.0f ? ai * xmax : ai * xmin;
            float z = 0.f, s1 = 0.f, sd0 = 0.f, sd1 = 0.f, sd2 = 0.f;
            if (thr) {
                row_keep(&s, T, jb->seed, row, thr);
#pragma omp simd reduction(+ : z, s1, sd0, sd1, sd2)
                for (int64_t j = 0; j < Tp; ++j) {
                    const float xj = xp[j];
                    const float e = exp_neg(ai * xj - m) * w[j];
                    const float ke = e * k[j];
                    const float kex = ke * xj;
                    z += e; s1 += e * xj; sd0 += ke; sd1 += kex; sd2 += kex * xj;
                }
                const float iz = 1.0f / z;
                jb->o[row] = sd1 * jb->keep_scale * iz;
                jb->r[row] = sd0 * jb->keep_scale * iz;
                jb->ex[row] = s1 * iz;
                jb->edx2[row] = sd2 * jb->keep_scale * iz;
            } else {
#pragma omp simd reduction(+ : z, s1, sd2)
                for (int64_t j = 0; j < Tp; ++j) {
                    const float xj = xp[j];
                    const float e = exp_neg(ai * xj - m) * w[j];
                    const float ex = e * xj;
                    z += e; s1 += ex; sd2 += ex * xj;
                }
                const float iz = 1.0f / z;
                jb->o[row] = s1 * iz;
                jb->r[row] = 1.0f;
                jb->ex[row] = s1 * iz;
                jb->edx2[row] = sd2 * iz;
            }
            jb->z[row] = z;
        }
    }
}

static void bwd_bh(const job_t *jb, scratch_t *sp, int64_t bh) {
    const int64_t T = jb->T;
    const uint16_t thr = (uint16_t)jb->thr;
    scratch_t s = *sp;
    const int64_t Tp = s.Tp;
    const float *xp = s.xp, *k = s.k;
    float *acc = s.acc;
    {
        float xmin, xmax;
        load_x(&s, jb->x + (bh / jb->H) * T, T, &xmin, &xmax);
        for (int64_t j = 0; j < Tp; ++j) acc[j] = 0.f;
        for (int64_t i = 0; i < T; ++i) {
            const int64_t row = bh * T + i;
            const float ai = jb->a[row], gi = jb->g[row], qi = jb->gr[row];
            const float oi = jb->o_s[row], ri = jb->r_s[row];
            const float iz = 1.0f / jb->z_s[row];
            const float m = ai >= 0.0f ? ai * xmax : ai * xmin;
            /* values (x_j, 1), output grads (g_i, q_i); D_i = g_i o_i + q_i r_i */
            const float Di = gi * oi + qi * ri;
            /* dL/da_i = g_i E[d x^2] + q_i o_i - D_i E[x] */
            jb->da[row] = gi * jb->edx2_s[row] + qi * oi - Di * jb->ex_s[row];
            /* dL/dx_j += p_ij (d_ij (g_i + a_i q_i + a_i g_i x_j) - a_i D_i) */
            const float alpha = (gi + ai * qi) * jb->keep_scale * iz;
            const float beta = ai * gi * jb->keep_scale * iz;
            const float gamma = ai * Di * iz;
            if (thr) {
                row_keep(&s, T, jb->seed, row, thr);
#pragma omp simd
                for (int64_t j = 0; j < Tp; ++j) {
                    const float xj = xp[j];
                    const float e = exp_neg(ai * xj - m);
                    acc[j] += e * (k[j] * (alpha + beta * xj) - gamma);
                }
            } else {
#pragma omp simd
                for (int64_t j = 0; j < Tp; ++j) {
                    const float xj = xp[j];
                    const float e = exp_neg(ai * xj - m);
                    acc[j] += e * (alpha - gamma + beta * xj);
                }
            }
        }
        for (int64_t j = 0; j < T; ++j) jb->dx[bh * T + j] = acc[j];
    }
}

/* OpenMP, linked against the runtime PyTorch already loaded (libgomp.so.1): its worker
   threads spin for a while after each op, so a separate thread pool would fight them for
   the cores; sharing the runtime lets the spinning threads take this work instead.  Dynamic
   scheduling keeps a descheduled thread (busy shared machine) from stalling the others. */
static int run(const job_t *jb, int64_t n_bh, int n_threads,
               void (*fn)(const job_t *, scratch_t *, int64_t)) {
    int failed = 0;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > n_bh) n_threads = (int)n_bh;
#pragma omp parallel num_threads(n_threads) reduction(| : failed)
    {
        scratch_t s;
        const int ok = scratch_init(&s, jb->T);
        failed |= !ok;
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < n_bh; ++bh)
            if (ok) fn(jb, &s, bh);
        scratch_free(&s);
    }
    return failed;
}

int tsf_attn1_fwd(const float *a, const float *x, int64_t B, int64_t H, int64_t T,
                   uint64_t seed, int thr, float keep_scale, float *o, float *r, float *z,
                   float *ex, float *edx2, int n_threads) {
    job_t jb;
    memset(&jb, 0, sizeof jb);
    jb.a = a; jb.x = x; jb.H = H; jb.T = T; jb.seed = seed; jb.thr = thr;
    jb.keep_scale = keep_scale; jb.o = o; jb.r = r; jb.z = z; jb.ex = ex; jb.edx2 = edx2;
    return run(&jb, B * H, n_threads, fwd_bh);
}

int tsf_attn1_bwd(const float *a, const float *x, const float *g, const float *gr,
                   const float *o, const float *r, const float *z, const float *ex,
                   const float *edx2, int64_t B, int64_t H,
                   int64_t T, uint64_t seed, int thr, float keep_scale, float *da, float *dx,
                   int n_threads) {
    job_t jb;
    memset(&jb, 0, sizeof jb);
    jb.a = a; jb.x = x; jb.g = g; jb.gr = gr; jb.o_s = o; jb.r_s = r; jb.z_s = z;
    jb.ex_s = ex; jb.edx2_s = edx2;
    jb.H = H; jb.T = T; jb.seed = seed; jb.thr = thr; jb.keep_scale = keep_scale;
    jb.da = da; jb.dx = dx;
    return run(&jb, B * H, n_threads, bwd_bh);
}
"""

_NATIVE_FLAGS = [
    "-O3", "-march=native", "-fopenmp-simd", "-fno-strict-aliasing", "-fno-math-errno",
    "-fPIC", "-shared", "-fopenmp",
]
_native_lock = threading.Lock()
_native_state: dict[str, object] = {}


def _cache_dir() -> Path:
    env = os.environ.get("TSFORMER_CACHE_DIR")
    if env:
        return Path(env) / "native"
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("tsformer")) / "native"
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".cache" / "tsformer" / "native"


def _cpu_tag() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((ln for ln in fh if ln.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return platform.node() + platform.machine() + flags


def _build_native() -> ctypes.CDLL:
    cc = os.environ.get("CC", "gcc")
    key = hashlib.sha256(
        "\0".join([_NATIVE_SRC, cc, *_NATIVE_FLAGS, _cpu_tag()]).encode()
    ).hexdigest()[:16]
    out = _cache_dir() / f"tsf_attn1_{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            src = Path(tmp) / "attn1.c"
            src.write_text(_NATIVE_SRC)
            so = Path(tmp) / "attn1.so"
            try:
                subprocess.run(
                    [cc, *_NATIVE_FLAGS, str(src), "-o", str(so), "-lm"],
                    check=True, capture_output=True, timeout=120,
                )
            except subprocess.CalledProcessError:  # no OpenMP runtime: single-threaded kernel
                flags = [f for f in _NATIVE_FLAGS if f != "-fopenmp"]
                subprocess.run(
                    [cc, *flags, str(src), "-o", str(so), "-lm"],
                    check=True, capture_output=True, timeout=120,
                )
            os.replace(so, out)  # atomic: concurrent builders are harmless
    lib = ctypes.CDLL(str(out))
    f, i64, u64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64
    ci, cf = ctypes.c_int, ctypes.c_float
    lib.tsf_attn1_fwd.argtypes = [f, f, i64, i64, i64, u64, ci, cf, f, f, f, f, f, ci]
    lib.tsf_attn1_fwd.restype = ctypes.c_int
    lib.tsf_attn1_bwd.argtypes = [
        f, f, f, f, f, f, f, f, f, i64, i64, i64, u64, ci, cf, f, f, ci
    ]
    lib.tsf_attn1_bwd.restype = ctypes.c_int
    return lib


def native_available() -> bool:
    """Whether the compiled C = 1 kernel can be used (built on first call; ``TSFORMER_NATIVE=0``
    disables it).  Without a C compiler everything still works through the PyTorch paths."""
    if os.environ.get("TSFORMER_NATIVE", "1") == "0":
        return False
    with _native_lock:
        if "lib" not in _native_state:
            try:
                _native_state["lib"] = _build_native()
            except (OSError, subprocess.SubprocessError) as exc:
                warnings.warn(
                    f"tsformer: native attention kernel unavailable ({exc}); "
                    "using the PyTorch implementation",
                    RuntimeWarning, stacklevel=2,
                )
                _native_state["lib"] = None
        return _native_state["lib"] is not None


class _NativeAttention1(torch.autograd.Function):
    """C = 1 attention core in C: ``a`` (B, H, T) scaled query factors, ``x`` (B, T).

    Returns ``o_i = sum_j p_ij d_ij x_j`` and ``r_i = sum_j p_ij d_ij`` (1 without dropout;
    it weights the value bias ``bv Wo``).
    """

    @staticmethod
    def forward(ctx, a: Tensor, x: Tensor, p: float, seed: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]  # noqa: E501
        lib = _native_state["lib"]
        a, x = a.contiguous(), x.contiguous()
        b, h, t = a.shape
        thr = _threshold(p) if p > 0 else 0
        keep_scale = 1.0 / (1.0 - thr / float(1 << _MASK_BITS))
        o, r, z, ex, edx2 = (torch.empty_like(a) for _ in range(5))
        rc = lib.tsf_attn1_fwd(  # type: ignore[union-attr]
            a.data_ptr(), x.data_ptr(), b, h, t, seed, thr, keep_scale,
            o.data_ptr(), r.data_ptr(), z.data_ptr(), ex.data_ptr(), edx2.data_ptr(),
            torch.get_num_threads(),
        )
        if rc:
            raise MemoryError("native attention kernel: out of memory for scratch buffers")
        ctx.save_for_backward(a, x, o, r, z, ex, edx2)
        ctx.seed, ctx.thr, ctx.keep_scale = seed, thr, keep_scale
        return o, r

    @staticmethod
    @once_differentiable
    def backward(ctx, go: Tensor, gr: Tensor):  # type: ignore[override]
        lib = _native_state["lib"]
        a, x, o, r, z, ex, edx2 = ctx.saved_tensors
        go, gr = go.contiguous(), gr.contiguous()
        b, h, t = a.shape
        da, dxh = torch.empty_like(a), torch.empty_like(a)
        rc = lib.tsf_attn1_bwd(  # type: ignore[union-attr]
            a.data_ptr(), x.data_ptr(), go.data_ptr(), gr.data_ptr(), o.data_ptr(),
            r.data_ptr(), z.data_ptr(), ex.data_ptr(), edx2.data_ptr(),
            b, h, t, ctx.seed, ctx.thr, ctx.keep_scale, da.data_ptr(), dxh.data_ptr(),
            torch.get_num_threads(),
        )
        if rc:
            raise MemoryError("native attention kernel: out of memory for scratch buffers")
        return da, dxh.sum(1), None, None


# --------------------------------------------------------------------------- public API


def _resolve_backend(backend: str, x: Tensor, dropout_p: float) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    native_ok = x.shape[-1] == 1 and x.dtype == torch.float32 and x.device.type == "cpu"
    if backend == "native":
        if not (native_ok and native_available()):
            raise ValueError("the native backend needs C = 1, float32 on CPU and a C compiler")
        return backend
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
        o, r = _NativeAttention1.apply(a[..., 0], x[..., 0], dropout_p, seed or 0)
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
