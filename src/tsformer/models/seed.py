"""The ``seed`` architecture: the Keras example "Timeseries classification with a Transformer
model" reproduced layer for layer, including its quirks (see the presets reference).

``GlobalAveragePooling1D(data_format="channels_first")`` on ``(batch, time, features)``
averages over the *features*, leaving one value per time step; ``pool="time"`` is the
conventional head.  Keras ends in a softmax; the model returns logits and the softmax is
applied in the loss and in ``predict_proba`` (the same function with better numerics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import Options, option
from ..registry import register_model, register_preset
from .keras_attention import fast_is_cheaper, mha_direct, mha_fast


@dataclass
class SeedOptions(Options):
    """Options of the ``seed_transformer`` architecture (the Keras example's names)."""

    group = "model option"

    head_size: int = option(256, "key dimension of each attention head", low=1, high=4096)
    num_heads: int = option(4, "attention heads", low=1, high=64)
    ff_dim: int = option(4, "width of the pointwise feed-forward layer", low=1, high=65536)
    num_blocks: int = option(4, "encoder blocks", low=1, high=64)
    mlp_units: list[int] = option([128], "widths of the head's hidden Dense layers", low=1,
                                  high=65536)
    dropout: float = option(0.25, "dropout in the blocks and on attention probabilities",
                            low=0.0, high=1.0, high_open=True)
    mlp_dropout: float = option(0.4, "dropout after each hidden Dense layer", low=0.0,
                                high=1.0, high_open=True)
    variant: Literal["prenorm", "postnorm"] = option(
        "prenorm", "prenorm: the 2021-06-25 example; postnorm: the 2021-08-05 one")
    pool: Literal["features", "time"] = option(
        "features", "features: the example's channels_first average (one value per time "
        "step); time: the conventional average over time")
    attention: Literal["auto", "fast", "direct"] = option(
        "auto", "how attention is computed (the same function): fast in the input space, "
        "direct as Keras lays it out, auto whichever is cheaper")


def _keras_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras' ``compute_fans``: for >2-D kernels the leading axes are a receptive field."""
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    rf = math.prod(shape[:-2])
    return shape[-2] * rf, shape[-1] * rf


def keras_glorot_uniform_(t: Tensor, keras_shape: tuple[int, ...] | None = None) -> Tensor:
    """Glorot-uniform with fans computed on the kernel's Keras shape (in, ..., out)."""
    fan_in, fan_out = _keras_fans(tuple(keras_shape or t.shape))
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return t.uniform_(-limit, limit)


def _keras_dense(n_in: int, n_out: int) -> nn.Linear:
    """A Dense / pointwise Conv1D layer initialised as Keras does (glorot kernel, zero bias)."""
    layer = nn.Linear(n_in, n_out)
    keras_glorot_uniform_(layer.weight, (n_in, n_out))
    nn.init.zeros_(layer.bias)
    return layer


# --------------------------------------------------------------------------- seed layers


class KerasMultiHeadAttention(nn.Module):
    """``keras.layers.MultiHeadAttention(key_dim, num_heads, dropout)`` for self-attention.

    Parameters keep Keras' layout so both computation paths (and Keras weights) fit.
    ``attention``: ``"auto"`` (input-space path whenever it is cheaper), ``"fast"``, ``"direct"``.
    """

    def __init__(
        self, n_features: int, num_heads: int, key_dim: int, dropout: float = 0.0,
        attention: str = "auto",
    ) -> None:
        super().__init__()
        c, h, d = n_features, num_heads, key_dim
        self.num_heads, self.key_dim, self.dropout = h, d, dropout
        self.attention = attention
        for name in ("query", "key", "value"):
            self.register_parameter(f"{name}_kernel", nn.Parameter(torch.empty(c, h, d)))
            self.register_parameter(f"{name}_bias", nn.Parameter(torch.zeros(h, d)))
        self.output_kernel = nn.Parameter(torch.empty(h, d, c))
        self.output_bias = nn.Parameter(torch.zeros(c))
        for k in (self.query_kernel, self.key_kernel, self.value_kernel, self.output_kernel):
            keras_glorot_uniform_(k)

    @property
    def path(self) -> str:
        if self.attention != "auto":
            return self.attention
        c = self.output_bias.shape[0]
        return "fast" if fast_is_cheaper(c, self.num_heads, self.key_dim) else "direct"

    def forward(self, x: Tensor) -> Tensor:
        fn = mha_fast if self.path == "fast" else mha_direct
        return fn(
            x,
            self.query_kernel, self.query_bias, self.key_kernel, self.key_bias,
            self.value_kernel, self.value_bias, self.output_kernel, self.output_bias,
            dropout_p=self.dropout if self.training else 0.0,
        )


class Pointwise(nn.Module):
    """Keras ``Conv1D(filters, kernel_size=1)`` on ``(batch, time, features)``: a Dense per step."""

    def __init__(self, n_in: int, n_out: int, activation: str | None = None) -> None:
        super().__init__()
        self.proj = _keras_dense(n_in, n_out)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        return F.relu(x) if self.activation == "relu" else x


class SeedEncoderBlock(nn.Module):
    """One ``transformer_encoder`` block of the seed, pre-norm or post-norm."""

    def __init__(
        self, n_features: int, head_size: int, num_heads: int, ff_dim: int, dropout: float,
        variant: str, attention: str,
    ) -> None:
        super().__init__()
        self.variant = variant
        self.attn_norm = nn.LayerNorm(n_features, eps=1e-6)
        self.attn = KerasMultiHeadAttention(n_features, num_heads, head_size, dropout, attention)
        self.attn_drop = nn.Dropout(dropout)
        self.ff_norm = nn.LayerNorm(n_features, eps=1e-6)
        self.ff1 = Pointwise(n_features, ff_dim, "relu")
        self.ff_drop = nn.Dropout(dropout)
        self.ff2 = Pointwise(ff_dim, n_features)

    def forward(self, x: Tensor) -> Tensor:
        if self.variant == "prenorm":
            y = self.attn_norm(x)
            res = self.attn_drop(self.attn(y)) + x
            y = self.ff2(self.ff_drop(self.ff1(self.ff_norm(res))))
            return y + res
        res = self.attn_norm(self.attn_drop(self.attn(x))) + x
        y = self.ff2(self.ff_drop(self.ff1(res)))
        return self.ff_norm(y) + res


class GlobalAveragePool(nn.Module):
    """Mean over one axis of ``(batch, time, features)``; ``"features"`` is the seed's quirk."""

    def __init__(self, over: str) -> None:
        super().__init__()
        self.over = over

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=-1 if self.over == "features" else 1)


@register_model("seed_transformer", options=SeedOptions)
class SeedTransformer(nn.Module):
    """The Keras example's classifier.  Input ``(batch, C, T)``; returns logits.

    Keras ends in a softmax; we return logits and apply the softmax in the loss and in
    ``predict_proba``, which is the same function with better numerics.
    """

    def __init__(
        self, n_channels: int, n_timepoints: int, n_classes: int, *,
        head_size: int = 256, num_heads: int = 4, ff_dim: int = 4, num_blocks: int = 4,
        mlp_units: tuple[int, ...] | list[int] = (128,), dropout: float = 0.25,
        mlp_dropout: float = 0.4, variant: str = "prenorm", pool: str = "features",
        attention: str = "auto",
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SeedEncoderBlock(n_channels, head_size, num_heads, ff_dim, dropout, variant, attention)
            for _ in range(num_blocks)
        )
        self.pool = GlobalAveragePool(pool)
        width = n_timepoints if pool == "features" else n_channels
        layers: list[nn.Module] = []
        for units in mlp_units:
            layers += [_keras_dense(width, units), nn.ReLU(), nn.Dropout(mlp_dropout)]
            width = units
        self.mlp = nn.Sequential(*layers)
        self.classifier = _keras_dense(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)  # (batch, time, features), the seed's layout
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.mlp(self.pool(x)))


register_preset(
    "seed", arch="seed_transformer",
    description="The Keras example's 4-block encoder, reproduced exactly (93,130 parameters on "
    "FordA), with its training schedule.",
    model=SeedOptions().to_dict(),
    train={"optimizer": "adam", "lr": 1e-4, "eps": 1e-7, "batch_size": 64, "epochs": 200,
           "validation_split": 0.2, "patience": 10, "schedule": "constant"},
)
