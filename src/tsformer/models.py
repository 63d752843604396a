"""Models and the preset registry.

A preset is plain data: an architecture name, model hyperparameters and training defaults.
``create_model(name, n_channels=..., n_timepoints=..., n_classes=..., **overrides)`` builds
it (timm-style).  Public models take ``(batch, n_channels, n_timepoints)`` and return logits.

The ``seed`` preset is the Keras example "Timeseries classification with a Transformer
model" reproduced layer for layer, including its quirks (see ANCHORS.md):
``GlobalAveragePooling1D(data_format="channels_first")`` on ``(batch, time, features)``
averages over the *features*, leaving one value per time step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import fast_is_cheaper, mha_direct, mha_fast
from .errors import ConfigError

# --------------------------------------------------------------------------- Keras-style init


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
        if attention not in ("auto", "fast", "direct"):
            raise ConfigError(f"attention must be 'auto', 'fast' or 'direct', not {attention!r}")
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
        if over not in ("features", "time"):
            raise ConfigError(f"pool must be 'features' (the seed's) or 'time', not {over!r}")
        self.over = over

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=-1 if self.over == "features" else 1)


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
        if variant not in ("prenorm", "postnorm"):
            raise ConfigError(f"variant must be 'prenorm' or 'postnorm', not {variant!r}")
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


# --------------------------------------------------------------------------- registry

#: Architectures by name: a constructor taking (n_channels, n_timepoints, n_classes, **params).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"seed_transformer": SeedTransformer}

#: Presets by name: plain data.  ``model`` are constructor arguments, ``train`` are defaults
#: for :class:`tsformer.train.TrainConfig`.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": {
        "arch": "seed_transformer",
        "description": "The Keras example's 4-block encoder, reproduced exactly (93,130 "
        "parameters on FordA).",
        "model": {
            "head_size": 256, "num_heads": 4, "ff_dim": 4, "num_blocks": 4,
            "mlp_units": [128], "dropout": 0.25, "mlp_dropout": 0.4,
            "variant": "prenorm", "pool": "features", "attention": "auto",
        },
        "train": {
            "optimizer": "adam", "lr": 1e-4, "eps": 1e-7, "batch_size": 64, "epochs": 200,
            "validation_split": 0.2, "patience": 10, "schedule": "constant",
        },
    },
}


#: Data-scaled defaults, by preset name: ``f(n_channels, n_timepoints, n_train, n_classes)``
#: returns ``{"model": {...}, "train": {...}}`` values that replace the preset's static ones,
#: so one preset fits a 16-series set and a 3,000-series set without hand tuning.
DATA_SCALED: dict[str, Callable[..., dict[str, dict[str, Any]]]] = {}


def register_preset(
    name: str, arch: str, model: dict[str, Any], train: dict[str, Any] | None = None,
    description: str = "",
) -> None:
    """Add a preset (data only); ``arch`` must be a key of :data:`ARCHITECTURES`."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    PRESETS[name] = {"arch": arch, "description": description, "model": dict(model),
                     "train": dict(train or {})}


def get_preset(name: str, data: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A deep copy of a preset, so callers can't change the registry by accident.

    ``data`` (``n_channels``, ``n_timepoints``, ``n_train``, ``n_classes``) applies the
    preset's data-scaled defaults (:data:`DATA_SCALED`), where it has any.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(PRESETS)}")
    preset = copy.deepcopy(PRESETS[name])
    if data is not None and name in DATA_SCALED:
        scaled = DATA_SCALED[name](**{k: int(data[k]) for k in _DATA_KEYS})
        preset["model"].update(scaled.get("model", {}))
        preset["train"].update(scaled.get("train", {}))
    return preset


_DATA_KEYS = ("n_channels", "n_timepoints", "n_train", "n_classes")


def data_shape(X: Any, n_classes: int) -> dict[str, int]:
    """The sizes data-scaled presets use, from training data ``(n, C, T)``."""
    n, c, t = X.shape
    return {"n_channels": c, "n_timepoints": t, "n_train": n, "n_classes": n_classes}


def resolve_model_params(name: str, overrides: dict[str, Any] | None = None,
                         data: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The preset's model hyperparameters with ``overrides`` applied and checked."""
    params = get_preset(name, data)["model"]
    for key, value in (overrides or {}).items():
        if key not in params:
            raise ConfigError(
                f"preset {name!r} has no model option {key!r}; options: {', '.join(params)}"
            )
        params[key] = value
    return params


def create_model(
    name: str, *, n_channels: int, n_timepoints: int, n_classes: int, **overrides: Any
) -> nn.Module:
    """Build preset ``name`` for data of the given shape, with model options overridden."""
    preset = get_preset(name)
    params = resolve_model_params(name, overrides)
    return ARCHITECTURES[preset["arch"]](n_channels, n_timepoints, n_classes, **params)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- summary

_KERAS_NAMES = {
    nn.LayerNorm: "LayerNormalization", KerasMultiHeadAttention: "MultiHeadAttention",
    nn.Dropout: "Dropout", Pointwise: "Conv1D", GlobalAveragePool: "GlobalAveragePooling1D",
    nn.Linear: "Dense", nn.ReLU: "ReLU",
}


def summary(model: nn.Module, n_channels: int, n_timepoints: int) -> str:
    """A layer table like Keras' ``model.summary()``: layer, output shape, parameters."""
    rows: list[tuple[str, str, int]] = []
    leaves = (KerasMultiHeadAttention, Pointwise)

    def hook(name: str):
        def fn(mod: nn.Module, _inp: Any, out: Tensor) -> None:
            shape = "(None, " + ", ".join(str(s) for s in out.shape[1:]) + ")"
            kind = _KERAS_NAMES.get(type(mod), type(mod).__name__)
            rows.append((f"{name} ({kind})", shape, sum(p.numel() for p in mod.parameters())))
        return fn

    handles = []
    for name, mod in model.named_modules():
        inside_leaf = any(
            name.startswith(n + ".") for n, m in model.named_modules() if isinstance(m, leaves)
        )
        if name and not inside_leaf and (isinstance(mod, leaves) or not list(mod.children())):
            handles.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, n_channels, n_timepoints))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    total = count_parameters(model)
    w1 = max(len("Layer (type)"), *(len(r[0]) for r in rows)) + 2
    w2 = max(len("Output Shape"), *(len(r[1]) for r in rows)) + 2
    line = "-" * (w1 + w2 + 12)
    out = [line, f"{'Layer (type)':<{w1}}{'Output Shape':<{w2}}{'Param #':>10}", "=" * len(line)]
    out.append(f"{'input (InputLayer)':<{w1}}{f'(None, {n_channels}, {n_timepoints})':<{w2}}"
               f"{0:>10,}")
    out += [f"{a:<{w1}}{b:<{w2}}{c:>10,}" for a, b, c in rows]
    out += ["=" * len(line), f"Total params: {total:,}", f"Trainable params: {total:,}",
            "Non-trainable params: 0", line]
    return "\n".join(out)


from . import patchformer  # noqa: E402,F401  (registers the preset)
