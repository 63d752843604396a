"""Exact multi-head attention for the seed model, in Keras' parameter layout.

Keras' ``MultiHeadAttention(key_dim=D, num_heads=H)`` projects ``C`` input features to
``H x D`` queries, keys and values.  When ``C`` is much smaller than ``H * D`` (FordA: 1 vs
1024) the same function can be computed in the ``C``-dimensional input space:

* scores ``q_i . k_j = u_i . x_j + (terms constant in j)`` with ``u_i = x_i Wq Wk^T + bq Wk^T``;
  the constant terms cancel in the softmax;
* ``sum_j a_ij (x_j Wv + bv) Wo = (A X)(Wv Wo) + bv Wo`` because each row of ``A`` sums to 1.

Both paths take the same parameters, so a model can switch between them freely.
Shapes: ``x`` is ``(batch, time, C)``; kernels follow Keras: query/key/value ``(C, H, D)``,
biases ``(H, D)``, output kernel ``(H, D, C)``, output bias ``(C,)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# The fused CPU kernel wants a head dimension that is a multiple of 8; zero padding leaves
# every dot product (and so every score and output) unchanged.
_PAD_TO = 8


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


def mha_fast(
    x: Tensor,
    qk: Tensor, qb: Tensor, kk: Tensor, kb: Tensor, vk: Tensor, vb: Tensor,
    ok: Tensor, ob: Tensor,
    dropout_p: float = 0.0,
) -> Tensor:
    """The same function as :func:`mha_direct`, computed in the ``C``-dimensional input space."""
    b, t, c = x.shape
    h, d = qb.shape
    # u_i = x_i (Wq Wk^T) + bq Wk^T, per head: (B, H, T, C)
    qk_c = torch.einsum("chd,ehd->hce", qk, kk)
    qb_c = torch.einsum("hd,ehd->he", qb, kk)
    u = torch.einsum("btc,hce->bhte", x, qk_c) + qb_c[None, :, None, :]
    width = max(_PAD_TO, -(-c // _PAD_TO) * _PAD_TO)
    xs = _pad(x, width)[:, None].expand(b, h, t, width)
    o = F.scaled_dot_product_attention(
        _pad(u, width), xs, xs, dropout_p=dropout_p, scale=1.0 / math.sqrt(d)
    )[..., :c]
    # (A X)(Wv Wo) + bv Wo + bo
    vo = torch.einsum("chd,hde->hce", vk, ok)
    bias = torch.einsum("hd,hde->e", vb, ok) + ob
    return torch.einsum("bhtc,hce->bte", o, vo) + bias


def fast_is_cheaper(n_features: int, num_heads: int, key_dim: int) -> bool:
    """The input-space path wins whenever C is well below the projected width H*D."""
    return 4 * n_features <= num_heads * key_dim
