"""The fast attention paths must compute exactly Keras' attention (values and gradients), and
attention dropout must be exact in distribution: the same mask as a materialised reference,
each probability dropped independently with probability p."""

from __future__ import annotations

import math

import pytest
import torch

from tsformer import attention as A

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
    monkeypatch.setenv("TSFORMER_NATIVE", "0")  # no compiler: PyTorch paths only
    assert A._resolve_backend("auto", x1, 0.25) == "chunked"
    assert A.fast_is_cheaper(1, 4, 256) and not A.fast_is_cheaper(1024, 4, 256)
