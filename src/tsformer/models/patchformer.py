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
from .patches import patch_padding, resolve_patching, resolve_stem_kernel
from .rocket import RocketTokens


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
            k = self.stem_kernel
            self.stem = nn.Sequential(
                nn.Conv1d(n_channels, stem_width, k, padding="same", bias=False),
                nn.BatchNorm1d(stem_width), nn.GELU(),
                nn.Conv1d(stem_width, stem_width, k, padding="same", bias=False),
                nn.BatchNorm1d(stem_width), nn.GELU(),
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

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(self.norm_in(x))
        if self.pad:
            x = F.pad(x, (0, self.pad), mode="replicate")
        x = self.drop(self.patch(x).transpose(1, 2))  # (B, tokens, d)
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

#: Optimiser steps a run aims for, before the epoch bounds below; sets the compute budget.
TARGET_STEPS = 2500
MIN_EPOCHS, MAX_EPOCHS = 30, 400
#: A single run's compute cap (training series x points x epochs), reached only by big
#: sets: FordA's 20 epochs (3,240 x 500 x 20).  On FordA 20 epochs scored what 49 did.
MAX_COST = 3240 * 500 * 20
MIN_CAPPED_EPOCHS = 10  # the cap never cuts a run below this
#: Training sets below this many series get no validation split (every series trains), the
#: rocket stem, window warping, mixup and an ensemble.
SMALL_DATA = 500
#: Mixup's Beta(a, a) below SMALL_DATA series.
SMALL_DATA_MIXUP = 0.2
#: Stem width for data small enough to afford it (2-2.5x the cost of 32), used only when the
#: run at WIDE_COST_FACTOR times its cost still fits :data:`MAX_COST`.
WIDE_STEM, WIDE_COST_FACTOR = 64, 2.5
#: The rocket stem costs about twice the 32-wide conv stem; the ensemble's bound counts it.
SMALL_STEM_COST_FACTOR = 2.0
#: Ensemble members below SMALL_DATA series, fewer where each would cost more than one
#: FordA run, so no ensemble costs more than SMALL_DATA_MEMBERS FordA runs.
SMALL_DATA_MEMBERS = 3


def auto_params(shape: DataShape) -> dict[str, Any]:
    """Model and training options and ensemble members for data of this shape.

    Only sizes enter, never a dataset's name.  Why each rule:

    * patching and stem kernel: "auto" (:meth:`PatchFormerOptions.resolved`): ~64
      half-overlapping patches whatever the length, kernel ``16 * stride - 1`` in [7, 63];
    * validation split: 10% once there are >= :data:`SMALL_DATA` series (enough to pick the
      best epoch on); below that every series trains, and the schedule's final weights are
      kept (with mixup and augmentation the best training-loss epoch is a lottery);
    * augmentation: below :data:`SMALL_DATA` series window warping joins, and mixup;
    * batch: about n/8, a power of two in [8, 64]; the learning rate follows its square root;
    * epochs: about :data:`TARGET_STEPS` optimiser steps within [30, 400] epochs, and at most
      :data:`MAX_COST` series x points x epochs but no fewer than 10 epochs (FordA: 20);
      warm-up is the first 5% of the run;
    * stem: below :data:`SMALL_DATA` series the rocket stem, above the conv stem,
      :data:`WIDE_STEM` wide when that run still fits MAX_COST, else 32;
    * members: below :data:`SMALL_DATA` series :data:`SMALL_DATA_MEMBERS`, fewer where a
      member costs more than one FordA run; one network otherwise.
    """
    n_train, n_timepoints = int(shape.n_train or 0), shape.n_timepoints
    small = n_train < SMALL_DATA
    val = 0.0 if small else 0.1
    n_fit = max(1, n_train - math.ceil(n_train * val))
    batch = int(min(64, max(8, 2 ** math.floor(math.log2(max(1, n_fit / 8))))))
    steps = math.ceil(n_fit / batch)
    epochs = int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(TARGET_STEPS / steps))))
    epoch_cost = n_fit * max(n_timepoints, 64)  # series x points, the unit of MAX_COST
    epochs = min(epochs, max(MIN_CAPPED_EPOCHS, MAX_COST // epoch_cost))
    cost = epoch_cost * epochs
    wide = cost * WIDE_COST_FACTOR <= MAX_COST
    stem, width, factor = (("rocket", 32, SMALL_STEM_COST_FACTOR) if small
                           else ("conv", WIDE_STEM, WIDE_COST_FACTOR) if wide
                           else ("conv", 32, 1.0))
    members = 1
    if small:  # as many members as fit SMALL_DATA_MEMBERS FordA runs, at most that many
        members = min(SMALL_DATA_MEMBERS, max(1, int(SMALL_DATA_MEMBERS * MAX_COST
                                                     // (cost * factor))))
    train = {
        "augment": list(TRAIN_DEFAULTS["augment"]) + ["warp"] * small,
        "lr": 1e-3 * math.sqrt(batch / 64), "batch_size": batch, "epochs": epochs,
        "validation_split": val, "mixup": SMALL_DATA_MIXUP if small else 0.0,
        "restore_best": not small,
    }
    return {"model": {"stem": stem, "stem_width": width}, "train": train, "members": members}


register_preset(
    "patchformer", arch="patchformer", model=PatchFormerOptions().to_dict(),
    train={**TRAIN_DEFAULTS, "lr": 1e-3, "batch_size": 64, "epochs": 60,
           "validation_split": 0.1},
    scale=auto_params,
    description="Accurate preset: conv or MiniRocket-feature stem + patch tokens, pre-norm "
    "transformer, AdamW one-cycle, label smoothing, augmentation; options scale with the "
    "training data's size (patchformer.auto_params).",
)
