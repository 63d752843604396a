"""The fast attention paths must compute exactly Keras' attention (values and gradients), and
attention dropout must be exact in distribution: the same mask as a materialised reference,
each probability dropped independently with probability p.  The compiled C = 1 kernel
(``tsformer._keras_attention``) must agree with the PyTorch paths, and its absence must leave
a working, correct fallback."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import sysconfig
import warnings

import pytest
import torch

from tsformer.models import keras_attention as A

H, D = 4, 256
TOL = 1e-5


def _params(c: int, seed: int = 0) -> list[torch.Tensor]:
    """Keras-like glorot kernels, scaled up so the softmax is far from uniform; non-zero biases
    so every term of the reformulation is exercised."""
    g = torch.Generator().manual_seed(seed)
    lim = math.sqrt(6 / (c + H * D)) * 4

    def u(*s: int) -> torch.Tensor:
        return (torch.rand(*s, generator=g) * 2 - 1) * lim

    return [u(c, H, D), u(H, D), u(c, H, D), u(H, D), u(c, H, D), u(H, D), u(H, D, c), u(c)]


def _out_and_grads(fn, x: torch.Tensor, ps: list[torch.Tensor], **kw) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    ps = [p.clone().requires_grad_() for p in ps]
    out = fn(x, *ps, **kw)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * w).sum().backward()
    # the key bias cancels in the softmax, so the fast path does not use it at all
    return [out.detach(), x.grad] + [torch.zeros_like(p) if p.grad is None else p.grad for p in ps]


def _assert_close(ref: list[torch.Tensor], got: list[torch.Tensor]) -> None:
    names = ["out", "x", "qk", "qb", "kk", "kb", "vk", "vb", "ok", "ob"]
    for name, r, g in zip(names, ref, got, strict=True):
        err = (r - g).abs().max().item()
        assert err <= TOL, f"{name}: max abs diff {err:.2e}"


def _backends(c: int) -> list[str]:
    out = ["chunked", "sdpa"]
    if c == 1 and A.native_available():
        out.insert(0, "native")
    return out


@pytest.mark.parametrize("c", [1, 3])
def test_fast_matches_direct_without_dropout(c: int) -> None:
    x = torch.randn(2, 48, c, generator=torch.Generator().manual_seed(2))
    ps = _params(c)
    ref = _out_and_grads(A.mha_direct, x, ps)
    assert ref[0].abs().max() > 0.1 and ref[1].abs().max() > 0.1  # not a trivial comparison
    for backend in [*_backends(c), "auto"]:
        _assert_close(ref, _out_and_grads(A.mha_fast, x, ps, backend=backend, chunk=16))


def _masked_reference(seed: int, p: float):
    """Keras' attention with the probabilities materialised and the given keep mask applied."""

    def fn(x, qk, qb, kk, kb, vk, vb, ok, ob):
        q = torch.einsum("btc,chd->bhtd", x, qk) + qb[:, None, :]
        k = torch.einsum("btc,chd->bhtd", x, kk) + kb[:, None, :]
        v = torch.einsum("btc,chd->bhtd", x, vk) + vb[:, None, :]
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(qk.shape[-1]), dim=-1)
        keep = A.dropout_keep_mask(seed, x.shape[0], qb.shape[0], x.shape[1], p)
        probs = probs * keep / (1 - A.quantized_dropout_p(p))
        return torch.einsum("bhtd,hdc->btc", probs @ v, ok) + ob

    return fn


@pytest.mark.parametrize("c", [1, 3])
def test_dropout_matches_masked_reference(c: int) -> None:
    x = torch.randn(2, 40, c, generator=torch.Generator().manual_seed(3))
    ps = _params(c, seed=4)
    seed, p = 0xDEADBEEF12345678, 0.25
    ref = _out_and_grads(_masked_reference(seed, p), x, ps)
    for backend in [b for b in _backends(c) if b != "sdpa"]:
        got = _out_and_grads(A.mha_fast, x, ps, dropout_p=p, seed=seed, backend=backend, chunk=16)
        _assert_close(ref, got)


def test_dropout_rate_and_independence() -> None:
    n_b, n_h, t = 4, 4, 64
    for p in (0.25, 0.1):
        keep = A.dropout_keep_mask(12345, n_b, n_h, t, p).float()
        n = keep.numel()
        q = A.quantized_dropout_p(p)
        assert abs(q - p) <= 2**-17
        sigma = math.sqrt(q * (1 - q) / n)
        assert abs((1 - keep.mean().item()) - q) < 5 * sigma
        # neighbouring elements (same 64-bit word, next word, next row) are uncorrelated
        k = keep - keep.mean()
        for a, b in ((k[..., :-1], k[..., 1:]), (k[..., :-4], k[..., 4:]),
                     (k[:, :, :-1], k[:, :, 1:])):
            corr = (a * b).mean() / k.var()
            assert abs(corr.item()) < 5 / math.sqrt(a.numel())
    assert A.quantized_dropout_p(0.25) == 0.25  # exact: 2**14 / 2**16


def test_dropout_reproducible_under_manual_seed() -> None:
    x = torch.randn(2, 32, 1)
    ps = _params(1)
    outs = []
    for s in (7, 7, 8):
        torch.manual_seed(s)
        outs.append(A.mha_fast(x, *ps, dropout_p=0.25))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_dropout_is_unbiased() -> None:
    """Averaged over masks, dropout leaves the attention output unchanged (Keras' scaling)."""
    x = torch.randn(1, 32, 1, generator=torch.Generator().manual_seed(5))
    ps = _params(1)
    plain = A.mha_fast(x, *ps)
    dropped = A.mha_fast(x.expand(1000, -1, -1), *ps, dropout_p=0.25, seed=9)  # 1000 masks
    spread = (dropped - plain).abs().mean()
    assert spread > 0.01
    assert (dropped.mean(0) - plain).abs().mean() < 0.1 * spread


def test_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    x1, x3 = torch.zeros(1, 4, 1), torch.zeros(1, 4, 3)
    assert A._resolve_backend("auto", x3, 0.0) == "sdpa"
    assert A._resolve_backend("auto", x3, 0.25) == "chunked"
    with pytest.raises(ValueError):
        A._resolve_backend("nope", x1, 0.0)
    with pytest.raises(ValueError):
        A._resolve_backend("native", x3, 0.0)
    monkeypatch.setenv("TSFORMER_NATIVE", "0")  # kernel disabled: PyTorch paths only
    assert A._resolve_backend("auto", x1, 0.25) == "chunked"
    assert A.fast_is_cheaper(1, 4, 256) and not A.fast_is_cheaper(1024, 4, 256)


# --------------------------------------------------------------------------- compiled kernel

needs_native = pytest.mark.skipif(not A.native_available(), reason=A.native_status())


def _native_module():
    return A._load_native()[0]


def test_dropout_mask_is_splitmix64() -> None:
    """The mask's definition, pinned: word ``n = row * ceil(T / 4) + g`` is SplitMix64's output
    ``mix64(seed + n * golden)`` (seed 0: SplitMix64's published first outputs), element
    ``4 g + l`` its 16-bit lane ``l``, kept when the lane is ``>= round(p * 2**16)``."""
    first = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]  # SplitMix64(0)
    t, p = 12, 0.25  # 3 words a row; row 0 uses words 0-2, i.e. n = 0, 1, 2
    n = torch.arange(1, 4, dtype=torch.int64)  # mix64 of (n * golden) for n = 1, 2, 3
    words = A._mix64(n * A._signed64(A._GOLDEN))
    assert [w & (2**64 - 1) for w in words.tolist()] == first
    keep = A.dropout_keep_mask(A._GOLDEN, 1, 1, t, p)[0, 0, 0]  # seed golden: n + 1
    lanes = [(w >> (16 * lane)) & 0xFFFF for w in first for lane in range(4)]
    assert keep.tolist() == [v >= 2**14 for v in lanes]
    # and a whole mask, as a digest, so any change to it shows
    mask = A.dropout_keep_mask(0xDEADBEEF12345678, 2, 3, 37, 0.25)
    digest = hashlib.sha256(mask.to(torch.uint8).numpy().tobytes()).hexdigest()[:16]
    assert digest == MASK_DIGEST, digest


# of dropout_keep_mask(0xDEADBEEF12345678, 2, 3, 37, 0.25) as uint8 bytes; the same before the
# kernel became an extension (the Python mask of tsformer/attention.py at ba9783e, which the
# ctypes-built kernel of that commit reproduced, gives this digest too)
MASK_DIGEST = "c0abab8db1867cfc"


@needs_native
@pytest.mark.parametrize("t", [1, 3, 37, 64, 100])
def test_native_mask_is_the_pytorch_mask(t: int) -> None:
    """Bit for bit, the mask the C++ kernel applies is :func:`dropout_keep_mask`."""
    mod = _native_module()
    seed, b, h = 0xDEADBEEF12345678, 2, 3
    for p in (0.25, 0.1, 0.5):
        ref = A.dropout_keep_mask(seed, b, h, t, p).reshape(b * h * t, t)
        got = mod.keep_mask(seed, 0, b * h * t, t, A._threshold(p)).bool()
        assert torch.equal(ref, got), (t, p)
    row0 = 5 * t + 2  # any row range, any seed (top bit set)
    got = mod.keep_mask(2**64 - 3, row0, 4, t, A._threshold(0.25)).bool()
    ref = A._keep_rows(2**64 - 3, torch.arange(row0, row0 + 4), t, 0.25)
    assert torch.equal(ref, got)


def _isas() -> list[str]:
    return _native_module().supported_isas() if A.native_available() else []


@needs_native
@pytest.mark.parametrize("p", [0.0, 0.25])
@pytest.mark.parametrize("isa", ["avx512", "avx2", "baseline"])
def test_native_matches_chunked_and_direct(isa: str, p: float) -> None:
    """Each SIMD variant of the kernel (those this CPU runs) against the chunked path and the
    materialised reference, forward and every gradient, with and without dropout."""
    mod = _native_module()
    if isa not in mod.supported_isas():
        pytest.skip(f"{isa} not supported on this CPU")
    x = torch.randn(3, 45, 1, generator=torch.Generator().manual_seed(6))
    ps = _params(1, seed=7)
    seed = 0x0123456789ABCDEF
    ref = _out_and_grads(_masked_reference(seed, p) if p else A.mha_direct, x, ps)
    chunked = _out_and_grads(A.mha_fast, x, ps, dropout_p=p, seed=seed, backend="chunked",
                             chunk=16)
    before = mod.isa()
    try:
        mod.set_isa(isa)
        native = _out_and_grads(A.mha_fast, x, ps, dropout_p=p, seed=seed, backend="native")
    finally:
        mod.set_isa(before)
    _assert_close(ref, native)
    _assert_close(chunked, native)


@needs_native
def test_native_is_deterministic_across_threads() -> None:
    """Each (batch, head) is one thread's work, so the thread count cannot change a bit."""
    x = torch.randn(4, 33, 1, generator=torch.Generator().manual_seed(8))
    ps = _params(1, seed=9)
    n = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(_out_and_grads(A.mha_fast, x, ps, dropout_p=0.25, seed=11,
                                       backend="native"))
    finally:
        torch.set_num_threads(n)
    for got in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outs[0], got, strict=True))


@needs_native
def test_native_checks_its_inputs() -> None:
    mod = _native_module()
    a, x = torch.zeros(2, 3, 5), torch.zeros(2, 5)
    o, r, z, ex, e2 = mod.forward(a, x, 0, 0, 1.0)
    assert o.shape == a.shape and torch.allclose(r, torch.ones_like(r))
    bad = [
        (a.double(), x), (a, x.double()),  # dtype
        (a.transpose(0, 1), x),  # layout: must be contiguous
        (a, torch.zeros(2, 4)), (a[0], x),  # shapes
    ]
    for aa, xx in bad:
        with pytest.raises(RuntimeError):
            mod.forward(aa, xx, 0, 0, 1.0)
    with pytest.raises(RuntimeError):
        mod.forward(a, x, 0, 70000, 1.0)  # threshold out of range
    with pytest.raises(RuntimeError):
        mod.backward(a, x, o, r[:, :2], o, r, z, ex, e2, 0, 0, 1.0)
    with pytest.raises(RuntimeError):
        mod.set_isa("no-such-isa")


def test_fallback_when_the_kernel_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the compiled module (no compiler at install, or built against another torch):
    ``auto`` takes the PyTorch paths silently, an explicit ``native`` warns once and falls
    back to ``chunked``, and every value is what the kernel gives."""
    x = torch.randn(2, 40, 1, generator=torch.Generator().manual_seed(3))
    ps = _params(1, seed=4)
    seed, p = 0xDEADBEEF12345678, 0.25
    ref = _out_and_grads(_masked_reference(seed, p), x, ps)
    with_kernel = _out_and_grads(A.mha_fast, x, ps, dropout_p=p, seed=seed)

    monkeypatch.delenv("TSFORMER_NATIVE", raising=False)
    monkeypatch.setitem(sys.modules, A._NATIVE_MODULE, None)  # import now raises ImportError
    monkeypatch.setattr(A, "_warned", set())
    A._load_native.cache_clear()
    try:
        assert not A.native_available()
        assert A._NATIVE_MODULE in A.native_status()
        x1 = torch.zeros(1, 4, 1)
        assert A._resolve_backend("auto", x1, 0.25) == "chunked"
        assert A._resolve_backend("auto", x1, 0.0) == "sdpa"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # auto: no warning
            auto = _out_and_grads(A.mha_fast, x, ps, dropout_p=p, seed=seed)
        with pytest.warns(RuntimeWarning, match="unavailable.*chunked"):
            native = _out_and_grads(A.mha_fast, x, ps, dropout_p=p, seed=seed, backend="native")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once only
            A.mha_fast(x, *ps, dropout_p=p, seed=seed, backend="native")
        with pytest.raises(ValueError):  # a usage error stays an error
            A._resolve_backend("native", torch.zeros(1, 4, 3), 0.0)
    finally:
        A._load_native.cache_clear()
    for got in (auto, native):
        _assert_close(ref, got)
        _assert_close(with_kernel, got)


def test_kernel_was_built_where_it_can_be() -> None:
    """scripts/setup.sh builds the kernel at install time; where a C++ compiler is present a
    missing kernel means the build failed silently (setup.py never fails the install)."""
    cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    if os.environ.get("TSFORMER_NATIVE") == "0" or not shutil.which(cxx.split()[0]):
        pytest.skip("no C++ compiler here, or the kernel is disabled")
    assert A.native_available(), (
        f"{A.native_status()}: reinstall with scripts/setup.sh (pip install "
        "--no-build-isolation -e .) to build it"
    )
