"""PatchFormer: the accurate preset (``patchformer``).

A small pre-norm transformer over patch tokens, built from what works for time series:

* per-series normalisation inside the model (an option, so it travels with saved weights
  and a raw series can be fed as it is);
* a convolutional stem at full resolution with long kernels (a quarter of the series, up to
  63 points: they act as learned frequency filters, the largest gain measured on FordA),
  then a strided convolution that turns overlapping patches into tokens (patching keeps
  attention cheap); below 500 training series, fixed MiniRocket features per patch instead
  (:mod:`tsformer.models.rocket`: a few dozen series are too few to learn a stem from);
* no positional embedding (the tokens carry local order through the stem and the patches,
  so the network is a shift-tolerant bag of patches), pre-norm blocks with stochastic depth,
  mean and max pooling over the tokens (the max says whether a shape occurs anywhere);
* trained with AdamW, warm-up + one-cycle cosine, label smoothing and light augmentation,
  plus window warping and mixup on small training sets;
* below 500 training series, a deep ensemble of three networks trained independently
  (:class:`tsformer.models.ensemble.Ensemble`): one network's accuracy swings by up to 5
  points with its seed there.

Nothing is set per dataset: :func:`auto_params` derives the options from the data's sizes.
The ablations behind each rule are summarised in docs/results.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..options import Options, option
from ..registry import DataShape, register_model, register_preset
from .normalization import InstanceNorm
from .patches import MAX_KERNEL, patch_padding, resolve_patching, resolve_stem_kernel
from .rocket import RocketTokens, n_rocket_features


@dataclass
class PatchFormerOptions(Options):
    """Options of the ``patchformer`` architecture."""

    group = "model option"

    d_model: int = option(64, "token width", low=1, high=8192)
    depth: int = option(3, "transformer blocks", low=1, high=64)
    n_heads: int = option(4, "attention heads (must divide d_model)", low=1, high=256)
    mlp_ratio: float = option(2.0, "feed-forward width as a multiple of d_model", low=0.0,
                              high=64.0, low_open=True)
    patch_len: Literal["auto"] | int = option(
        "auto", "points per patch token (auto: twice the stride)", low=1, high=1_000_000)
    stride: Literal["auto"] | int = option(
        "auto", "points between patch starts (auto: about 64 tokens)", low=1, high=1_000_000)
    stem: Literal["conv", "rocket"] = option(
        "conv", "conv: two learned long-kernel convolutions; rocket: MiniRocket's fixed "
        "features per patch")
    stem_width: int = option(32, "channels of the conv stem", low=1, high=4096)
    stem_kernel: Literal["auto"] | int = option(
        "auto", "conv stem kernel (auto: 16 x stride - 1 within [7, 63])", low=1, high=100_001)
    dropout: float = option(0.1, "dropout in the blocks", low=0.0, high=1.0, high_open=True)
    drop_path: float = option(0.1, "stochastic depth of the last block (linear from 0)",
                              low=0.0, high=1.0, high_open=True)
    instance_norm: bool = option(True, "z-normalise each series and channel inside the model")

    def check(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(f"model option d_model ({self.d_model}) must be divisible by "
                              f"n_heads ({self.n_heads})")

    def resolved(self, n_channels: int, n_timepoints: int) -> PatchFormerOptions:
        # Longer than the series, a stride or kernel sees mostly padding; the automatic
        # kernel (at most MAX_KERNEL, which a saved config repeats) always passes, and the
        # rocket stem has no learned kernel.
        checks = [("stride", self.stride, n_timepoints)]
        if self.stem == "conv":
            checks.append(("stem_kernel", self.stem_kernel, max(n_timepoints, MAX_KERNEL)))
        for name, v, most in checks:
            if v != "auto" and int(v) > most:
                raise ConfigError(f"model option {name} ({v}) is longer than the series "
                                  f"({n_timepoints} points); use at most {most} or 'auto'")
        patch_len, stride = resolve_patching(n_timepoints, self.patch_len, self.stride)
        return self.replace(patch_len=patch_len, stride=stride,
                            stem_kernel=resolve_stem_kernel(stride, self.stem_kernel))


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample (regularises small data)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= self.p
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Pre-norm transformer block; attention through the fused SDPA kernel (no attention
    dropout, which would force the slow unfused path on CPU)."""

    def __init__(self, d: int, heads: int, mlp_ratio: float, dropout: float, drop_path: float
                 ) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        hidden = int(d * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, d))
        self.drop = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2))
        x = x + self.drop_path(self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d))))
        return x + self.drop_path(self.drop(self.mlp(self.norm2(x))))


@register_model("patchformer", options=PatchFormerOptions)
class PatchFormerNet(nn.Module):
    """One network.  Input ``(batch, C, T)`` -> logits ``(batch, n_classes)``.

    ``stem="conv"``: two same-length convolutions, then a strided convolution per patch;
    ``stem="rocket"``: fixed MiniRocket features per patch are the tokens
    (:class:`~tsformer.models.rocket.RocketTokens`; ``stem_width``/``stem_kernel`` unused).
    """

    def __init__(
        self, n_channels: int, n_timepoints: int, n_classes: int, *,
        d_model: int = 64, depth: int = 3, n_heads: int = 4, mlp_ratio: float = 2.0,
        patch_len: int | str = "auto", stride: int | str = "auto", stem: str = "conv",
        stem_width: int = 32, stem_kernel: int | str = "auto", dropout: float = 0.1,
        drop_path: float = 0.1, instance_norm: bool = True,
    ) -> None:
        super().__init__()
        self.patch_len, self.stride = resolve_patching(n_timepoints, patch_len, stride)
        self.n_timepoints = n_timepoints
        self.pad, self.n_tokens = patch_padding(n_timepoints, self.patch_len, self.stride)
        self.norm_in = InstanceNorm() if instance_norm else nn.Identity()
        self.stem_kernel = resolve_stem_kernel(self.stride, stem_kernel)
        self.stem: nn.Module = nn.Identity()
        if stem == "rocket":  # fixed features per patch are the tokens: no learned patcher
            self.patch: nn.Module = RocketTokens(n_channels, n_timepoints, self.patch_len,
                                                 self.stride, d_model)
            self.pad = 0  # the rocket tokens pad their own features
        else:
            k, w = self.stem_kernel, stem_width
            self.stem = nn.Sequential(
                nn.Conv1d(n_channels, w, k, padding="same", bias=False),
                nn.BatchNorm1d(w), nn.GELU(),
                nn.Conv1d(w, w, k, padding="same", bias=False),
                nn.BatchNorm1d(w), nn.GELU(),
            )
            self.patch = nn.Conv1d(stem_width, d_model, self.patch_len, stride=self.stride)
        self.drop = nn.Dropout(dropout)
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(d_model, n_heads, mlp_ratio, dropout, r) for r in rates)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model * 2, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def init_from_data(self, x: Tensor) -> None:
        """Data-dependent initialisation before training (the rocket stem's thresholds),
        once: a trained network trained further keeps the thresholds its weights fit."""
        if isinstance(self.patch, RocketTokens) and not self.patch.primed:
            self.patch.fit_biases(self.norm_in(x))

    def fixed_features(self, x: Tensor) -> Tensor | None:
        """The rocket stem's features of ``x`` (nothing learned: computable once per series,
        :class:`~tsformer.models.FixedStem`); None for the learned conv stem."""
        if not isinstance(self.patch, RocketTokens):
            return None
        return self.patch.features(self.norm_in(x))

    def forward_features(self, f: Tensor) -> Tensor:
        """Logits from :meth:`fixed_features`' output."""
        assert isinstance(self.patch, RocketTokens)
        return self._tokens(self.patch.project(f))

    def fixed_state(self) -> list[Tensor]:
        """What the fixed stage computes with: members with equal state share its output
        (none before its thresholds are set: each member sets its own on its first input)."""
        if not isinstance(self.patch, RocketTokens) or not self.patch.primed:
            return []
        return [self.patch.weight, self.patch.bias]

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(self.norm_in(x))
        if self.pad:
            x = F.pad(x, (0, self.pad), mode="replicate")
        return self._tokens(self.patch(x))

    def _tokens(self, x: Tensor) -> Tensor:
        """Patch embeddings ``(B, d, tokens)`` -> logits."""
        x = self.drop(x.transpose(1, 2))  # (B, tokens, d)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.head(torch.cat([x.mean(1), x.amax(1)], -1))


# --------------------------------------------------------------------------- the preset rule

#: Training options that do not depend on the data (the rest come from :func:`auto_params`).
TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw", "eps": 1e-8, "weight_decay": 0.05, "schedule": "onecycle",
    "label_smoothing": 0.1, "grad_clip": 1.0, "augment": ["scale", "shift", "jitter"],
    "patience": None, "restore_best": True, "warmup": 0.05,
}

#: Optimiser steps a run aims for, within [MIN_EPOCHS, MAX_EPOCHS] epochs, before the
#: compute budget below trims it.
TARGET_STEPS = 2500
MIN_EPOCHS, MAX_EPOCHS = 30, 400
#: Training sets below this many series get no validation split (every series trains), the
#: rocket stem, a pool of augmented copies with window warping, mixup and an ensemble.
SMALL_DATA = 500
#: Mixup's Beta(a, a) below SMALL_DATA series.
SMALL_DATA_MIXUP = 0.2
#: Augmented copies of each series below SMALL_DATA series (their rocket features are
#: computed once), fewer where the feature pool would pass FEATURE_POOL_BYTES.
AUGMENT_VIEWS, FEATURE_POOL_BYTES = 7, 1024**3
#: Ensemble members below SMALL_DATA series, as many as the budget gives each at least
#: MIN_MEMBER_EPOCHS (one network's accuracy swings with its seed on a few dozen series).
SMALL_DATA_MEMBERS, MIN_MEMBER_EPOCHS = 3, 100
#: Dense-stem width where the run still gets all its epochs within the budget, else 32.
WIDE_STEM = 64

# The cost model.  A training step costs each series its forward pass's multiply-adds over
# MACS_PER_SECOND (forward, backward and optimiser together, as measured on one core of a
# 2-core x86 server CPU), plus STEP_SECONDS a step; the rocket features cost
# FEATURE_OPS multiply-add equivalents per kernel output, once per series and copy.
MACS_PER_SECOND = 6e9
STEP_SECONDS = 0.005
FEATURE_OPS = 60
#: The training budget on that core: BUDGET_SECONDS up to BUDGET_SERIES training series;
#: above, BUDGET_PER_VALUE seconds per training series x point, at most LARGE_BUDGET_SECONDS
#: (FordA's 3,601 x 500 reach it).  Prediction and evaluation come on top: on the 38
#: development sets a 90 s plan measured 69-114 CPU-s of training and up to 24 s of
#: prediction (CinCECGTorso's 1,380 long test series), so 75 s keeps fit + predict <= 120.
BUDGET_SECONDS, BUDGET_SERIES = 75.0, 1000
BUDGET_PER_VALUE, LARGE_BUDGET_SECONDS = 1e-4, 180.0
#: Share of a user's time limit the plan spends on training (see :func:`auto_params`).
TIME_LIMIT_SHARE = 0.8
#: The budget never cuts a run below this many epochs.
MIN_BUDGET_EPOCHS = 2


def forward_macs(o: PatchFormerOptions, n_channels: int, n_timepoints: int) -> float:
    """Multiply-adds of one series' forward pass through the learned part of a network with
    resolved options ``o`` (the rocket stem's fixed features excluded: computed once)."""
    patch_len, stride = int(o.patch_len), int(o.stride)
    tokens = patch_padding(n_timepoints, patch_len, stride)[1]
    d, hidden = o.d_model, int(o.d_model * o.mlp_ratio)
    blocks = o.depth * (tokens * (4 * d * d + 2 * d * hidden) + 2 * tokens * tokens * d)
    if o.stem == "rocket":
        return blocks + n_rocket_features(n_timepoints) * d * tokens
    k, w = int(o.stem_kernel), o.stem_width
    return blocks + (n_channels * w * k + w * w * k) * n_timepoints + w * d * patch_len * tokens


def fitted_series(n_train: int, validation_split: float) -> int:
    """Series a run trains on: the training set less its validation split."""
    return max(1, n_train - math.ceil(n_train * validation_split))


def epoch_seconds(o: PatchFormerOptions, n_channels: int, n_timepoints: int, n_fit: int,
                  batch_size: int) -> float:
    """One network's epoch on the cost model's core (see :func:`forward_macs`)."""
    steps = math.ceil(n_fit / batch_size)
    return (n_fit * forward_macs(o, n_channels, n_timepoints) / MACS_PER_SECOND
            + steps * STEP_SECONDS)


def budget_seconds(n_train: int, n_timepoints: int) -> float:
    """The training budget of a set of this size on the cost model's core."""
    if n_train <= BUDGET_SERIES:
        return BUDGET_SECONDS
    return min(LARGE_BUDGET_SECONDS, BUDGET_PER_VALUE * n_train * n_timepoints)


def auto_params(shape: DataShape, time_limit: float | None = None) -> dict[str, Any]:
    """Model and training options and ensemble members for data of this shape.

    Only sizes enter, never a dataset's name.  Why each rule:

    * patching and stem kernel: "auto" (:meth:`PatchFormerOptions.resolved`): ~64
      half-overlapping patches whatever the length, kernel ``16 * stride - 1`` in [7, 63];
    * validation split: 10% once there are >= :data:`SMALL_DATA` series (enough to pick the
      best epoch on); below that every series trains, and the schedule's final weights are
      kept (with mixup and augmentation the best training-loss epoch is a lottery);
    * below :data:`SMALL_DATA` series: the rocket stem (fixed MiniRocket features per patch;
      a few dozen series are too few to learn a stem from), window warping among the
      augmentations, drawn once as :data:`AUGMENT_VIEWS` copies of each series so the
      features are computed once, mixup, and an ensemble;
    * batch: about n/8, a power of two in [8, 64]; the learning rate follows its square root;
    * epochs: about :data:`TARGET_STEPS` optimiser steps within [30, 400] epochs, then as
      many as fit :func:`budget_seconds` under the cost model (:func:`forward_macs`), at
      least :data:`MIN_BUDGET_EPOCHS`; the members of an ensemble share the budget, and there
      are as many (up to :data:`SMALL_DATA_MEMBERS`) as get :data:`MIN_MEMBER_EPOCHS` each;
    * dense stem (>= :data:`SMALL_DATA` series): :data:`WIDE_STEM` wide where that run still
      gets all its epochs within the budget, else 32;
    * ``time_limit`` (seconds): :data:`TIME_LIMIT_SHARE` of it is the budget instead (the
      rest is for prediction and the cost model's error); the loop then holds the run to the
      limit on the machine it runs on.
    """
    n_train, c, t = int(shape.n_train or 0), shape.n_channels, shape.n_timepoints
    small = n_train < SMALL_DATA
    val = 0.0 if small else 0.1
    n_fit = fitted_series(n_train, val)
    batch = int(min(64, max(8, 2 ** math.floor(math.log2(max(1, n_fit / 8))))))
    steps = math.ceil(n_fit / batch)
    wanted = int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(TARGET_STEPS / steps))))
    budget = (budget_seconds(n_train, t) if time_limit is None
              else TIME_LIMIT_SHARE * float(time_limit))
    views = 0
    if small:
        model = {"stem": "rocket", "stem_width": 32}
        opts = PatchFormerOptions.from_dict(model).resolved(c, t)
        tokens = patch_padding(t, int(opts.patch_len), int(opts.stride))[1]
        per_series = n_rocket_features(t) * tokens * 4  # bytes of one series' features
        views = int(max(0, min(AUGMENT_VIEWS, FEATURE_POOL_BYTES // (n_fit * per_series) - 1)))
        dilations = n_rocket_features(t) // (84 * 4)
        feature_s = n_fit * (views + 1) * dilations * 84 * c * t * FEATURE_OPS / MACS_PER_SECOND
        budget = max(0.0, budget - feature_s)
    else:
        model = {"stem": "conv", "stem_width": WIDE_STEM}
        opts = PatchFormerOptions.from_dict(model).resolved(c, t)
    epoch_s = epoch_seconds(opts, c, t, n_fit, batch)
    if not small and wanted * epoch_s > budget:  # the wide stem does not fit: narrow it
        model["stem_width"] = 32
        opts = opts.replace(stem_width=32)
        epoch_s = epoch_seconds(opts, c, t, n_fit, batch)
    affordable = budget / epoch_s  # member-epochs
    members = 1
    if small:
        members = int(min(SMALL_DATA_MEMBERS, max(1, affordable // MIN_MEMBER_EPOCHS)))
    epochs = int(max(MIN_BUDGET_EPOCHS, min(wanted, affordable // members)))
    train = {
        "augment": list(TRAIN_DEFAULTS["augment"]) + ["warp"] * small,
        "augment_views": views,
        "lr": 1e-3 * math.sqrt(batch / 64), "batch_size": batch, "epochs": epochs,
        "validation_split": val, "mixup": SMALL_DATA_MIXUP if small else 0.0,
        "restore_best": not small,
    }
    return {"model": model, "train": train, "members": members}


#: A run of fewer optimiser steps than this (a network's epochs x steps an epoch) is short.
SHORT_RUN_STEPS = 200
#: What a short run drops unless the user set it: regularisation and warm-up are for long
#: runs; a short one needs every step to fit (ArrowHead at 10 epochs: 0.70 with them, 0.81
#: without).
SHORT_RUN = {"mixup": 0.0, "augment": [], "augment_views": 0, "label_smoothing": 0.0,
             "warmup": 0.0}


def finish_train(shape: DataShape, train: dict[str, Any], explicit: set[str]
                 ) -> dict[str, Any]:
    """The training options once the user's overrides are in: a short run (fewer than
    :data:`SHORT_RUN_STEPS` optimiser steps a network, e.g. ``--epochs 10`` on a small set)
    drops :data:`SHORT_RUN`'s regularisation and warm-up, except what the user set."""
    n_fit = fitted_series(int(shape.n_train or 0), float(train["validation_split"]))
    steps = int(train["epochs"]) * math.ceil(n_fit / int(train["batch_size"]))
    if steps >= SHORT_RUN_STEPS:
        return train
    return {**train, **{k: v for k, v in SHORT_RUN.items() if k not in explicit}}


register_preset(
    "patchformer", arch="patchformer", model=PatchFormerOptions().to_dict(),
    train={**TRAIN_DEFAULTS, "lr": 1e-3, "batch_size": 64, "epochs": 60,
           "validation_split": 0.1},
    scale=auto_params, finish=finish_train,
    description="Accurate preset: conv or MiniRocket-feature stem + patch tokens, pre-norm "
    "transformer, AdamW one-cycle, label smoothing, augmentation; options scale with the "
    "training data's size (patchformer.auto_params).",
)
