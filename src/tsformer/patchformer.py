"""PatchFormer: the accurate preset (``patchformer``).

A small pre-norm transformer over patch tokens, built from what works for time series:

* per-series normalisation inside the model (a model option, so it travels with saved
  weights and a raw series can be fed as it is);
* a convolutional stem at full resolution with long kernels (a quarter of the series, up to
  63 points: they act as learned frequency filters, the largest gain measured on FordA),
  then a strided convolution that turns overlapping patches into tokens (patching keeps
  attention cheap); below 500 training series, fixed MiniRocket features per patch instead
  (a few dozen series are too few to learn a stem from without fitting shortcuts: +2 points
  on the small development sets);
* no positional embedding by default (the tokens carry local order through the stem and
  the patches; without absolute positions the network is a shift-tolerant bag of patches:
  equal on the development-set mean, better where shapes move, e.g. Car +5 points),
  pre-norm blocks with stochastic depth; mean and max pooling over the tokens (the max
  says whether a shape occurs anywhere: +5 points on FiftyWords, +3 on CricketY);
* trained with AdamW, warm-up + one-cycle cosine, label smoothing and light augmentation,
  plus window warping (a tenth of each series stretched or squeezed 2x: large gains on shape
  and motion data, a loss on FordA's engine noise) and mixup on small training sets;
* below 500 training series, a deep ensemble of three such networks, each trained on its
  own data stream (a single network's accuracy swings by up to 5 points with its seed
  there; three independently trained networks averaged gained +0.6 points over their
  mean on the 14 small development sets); at three times the cost.  With no validation
  data there, the schedule's final weights are kept.

Nothing is set per dataset.  Shape-dependent model options default to ``"auto"`` and are
resolved here from the series length; training options (epochs, batch size, learning rate,
validation split) depend on the training-set size and come from :func:`auto_params`, the
preset's rule in ``models.DATA_SCALED`` (``train``, the estimator, ``tune`` and ``benchmark``
all use it).  The justifying ablations are in
docs/benchmarks.md, section "Accurate preset".
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .amp import bf16_values
from .errors import ConfigError
from .models import ARCHITECTURES, DATA_SCALED, register_preset

#: Tokens the patcher aims for: attention is quadratic in it, and ~64 covers every length.
TARGET_TOKENS = 64


def resolve_patching(n_timepoints: int, patch_len: int | str = "auto",
                     stride: int | str = "auto", target: int = TARGET_TOKENS
                     ) -> tuple[int, int]:
    """Patch length and stride: about ``target`` half-overlapping patches."""
    if stride == "auto":
        stride = max(1, round(n_timepoints / target))
    if patch_len == "auto":
        patch_len = 2 * int(stride)
    patch_len, stride = int(patch_len), int(stride)
    if patch_len < 1 or stride < 1:
        raise ConfigError(f"patch_len and stride must be >= 1, not {patch_len} and {stride}")
    return min(patch_len, n_timepoints), stride


#: Bounds of the automatic stem kernel (see :func:`resolve_stem_kernel`).
MIN_KERNEL, MAX_KERNEL = 7, 63


def resolve_stem_kernel(stride: int, stem_kernel: int | str = "auto") -> int:
    """Stem kernel: ``16 * stride - 1`` within [7, 63] unless given.

    Tied to the token stride, so the kernel is a fixed share of the series (about a quarter)
    up to the cap that bounds the cost, which grows linearly with it.  Long kernels act as
    learned frequency filters: on FordA (stride 8) kernels 7, 15, 31, 63 reached 0.934,
    0.939, 0.947, 0.955, and the small sets gained too (docs/benchmarks.md)."""
    if stem_kernel == "auto":
        return int(min(MAX_KERNEL, max(MIN_KERNEL, 16 * stride - 1)))
    if int(stem_kernel) < 1:
        raise ConfigError(f"stem_kernel must be >= 1, not {stem_kernel}")
    return int(stem_kernel)


def _padding(n: int, patch_len: int, stride: int) -> tuple[int, int]:
    """Right padding so the last points fall in a patch, and the number of patches."""
    pad = (stride - (n - patch_len) % stride) % stride
    return pad, (n + pad - patch_len) // stride + 1


class InstanceNorm(nn.Module):
    """Each series and channel to zero mean, unit variance: scale/offset carry no signal
    in most benchmarks, and it lets the model take unnormalised input safely."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True, unbiased=False)
        return (x - mean) / (std + self.eps)


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
        if d % heads:
            raise ConfigError(f"d_model ({d}) must be divisible by n_heads ({heads})")
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


class DilatedConv(nn.Module):
    """Parallel 9-tap convolutions with dilations 1, 2, 4, ... up to the span ``kernel``
    (MiniRocket's and InceptionTime's multi-scale bias): the receptive field of a long dense
    kernel with a seventh of its weights."""

    def __init__(self, c_in: int, c_out: int, kernel: int, taps: int = 9) -> None:
        super().__init__()
        dil = [1]
        while (taps - 1) * dil[-1] * 2 + 1 <= kernel + 2:
            dil.append(dil[-1] * 2)
        outs = [c_out // len(dil) + (i < c_out % len(dil)) for i in range(len(dil))]
        self.branches = nn.ModuleList(
            nn.Conv1d(c_in, o, taps, padding="same", dilation=d, bias=False)
            for o, d in zip(outs, dil, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


#: Points (series x length) whose kernel outputs set the rocket stem's thresholds.
QUANTILE_POINTS = 8192


def minirocket_kernels() -> Tensor:
    """MiniRocket's 84 fixed 9-tap kernels: -1 everywhere, 2 at three of the nine taps
    (every choice of three), so each sums to zero and sees shape, not level."""
    idx = torch.combinations(torch.arange(9), 3)
    w = torch.full((len(idx), 9), -1.0)
    w.scatter_(1, idx, 2.0)
    return w


STEM_PRECISIONS = ("fp32", "bf16")


def _checked_precision(precision: str) -> str:
    if precision not in STEM_PRECISIONS:
        raise ConfigError(f"stem_precision must be one of {', '.join(STEM_PRECISIONS)}, "
                          f"not {precision!r}")
    return precision


class RocketTokens(nn.Module):
    """Tokens from fixed MiniRocket features: the 84 kernels at dilations up to a ninth of
    the series, each output thresholded at ``n_biases`` quantiles of its own training
    values, and the proportion of positive values (PPV) in each patch is a feature; a
    BatchNorm and a linear map turn the features of a patch into its token.

    Nothing before the linear map is learned, so on a few dozen series the network starts
    from the features a ridge fit on MiniRocket finds enough; mean-pooling the tokens is a
    linear function of MiniRocket's own (whole-series) PPV features.  The thresholds are a
    data-dependent initialisation, saved with the weights: ``fit`` sets them from training
    series before the first step (:meth:`PatchFormer.prime`), else the first input does.

    ``precision="bf16"`` rounds the input, the kernel outputs and the thresholds to bfloat16
    before comparing, on every device: what CUDA's bf16 autocast did to this stem, which
    took FreezerSmallTrain from 0.97-0.98 to 0.997 (docs/benchmarks.md, ablation 30).
    The input's rounding is what mattered there (one seed); a guess at why: it flattens
    noise-level wiggles, so more outputs land exactly on zero, which ``>`` counts as negative.
    ``"fp32"`` (the default, so models saved before the option load unchanged) keeps full
    precision.
    """

    def __init__(self, c_in: int, n_timepoints: int, patch_len: int, stride: int, d_out: int,
                 n_biases: int = 4, max_dilations: int = 8, precision: str = "fp32") -> None:
        super().__init__()
        self.precision = _checked_precision(precision)
        top = math.log2(max(1.0, (n_timepoints - 1) / 8))
        self.dilations = sorted({int(2 ** e) for e in np.linspace(0, top, max_dilations)})
        k = minirocket_kernels()
        gen = torch.Generator().manual_seed(0)
        # Multivariate: each kernel and dilation sums a random subset of the channels, as
        # MiniRocket's multivariate version does (all of one channel when univariate).
        ws = []
        for _ in self.dilations:
            mask = torch.zeros(len(k), c_in)
            for i in range(len(k)):
                n = min(c_in, int(2 ** (torch.rand(1, generator=gen).item()
                                        * math.log2(min(c_in, 9) + 1))))
                mask[i, torch.randperm(c_in, generator=gen)[:max(1, n)]] = 1.0
            ws.append(k[:, None, :] * mask[:, :, None])
        self.register_buffer("weight", torch.stack(ws))  # (dilations, 84, C, 9)
        n_feat = len(self.dilations) * len(k)
        self.n_biases = n_biases
        self.register_buffer("bias", torch.zeros(n_feat, n_biases))
        self.register_buffer("ready", torch.tensor(False))
        # A host-side copy of `ready`, read on every forward pass: reading the buffer itself
        # there would wait for the device once a step (a host sync on a GPU).
        self._primed = False
        self.patch_len, self.stride = patch_len, stride
        self.pad = _padding(n_timepoints, patch_len, stride)[0]
        self.norm = nn.BatchNorm1d(n_feat * n_biases)
        self.proj = nn.Conv1d(n_feat * n_biases, d_out, 1)

    def _conv(self, x: Tensor) -> Tensor:
        return torch.cat([F.conv1d(x, w.to(x.dtype), padding=4 * d, dilation=d)
                          for w, d in zip(self.weight, self.dilations, strict=True)], 1)

    @torch.no_grad()
    def fit_biases(self, x: Tensor) -> None:
        """Thresholds at evenly spaced quantiles of each kernel's outputs on ``x`` (training
        series, as the model sees them): MiniRocket's bias rule, without which a fixed
        threshold would say nothing about most kernels."""
        x = x[:max(1, QUANTILE_POINTS // x.shape[-1])]  # bounds torch.quantile's input
        h = self._conv(x).transpose(0, 1).reshape(self.bias.shape[0], -1).float()
        q = torch.linspace(0, 1, self.n_biases + 2, device=x.device)[1:-1]
        self.bias.copy_(torch.quantile(h, q, dim=1).T)
        self.ready.fill_(True)
        self._primed = True

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._primed = bool(self.ready)  # loaded weights bring their thresholds

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """PPV per patch, ``(batch, features, tokens)``."""
        if not self._primed:  # not primed by `fit`: the first input sets the thresholds
            self.fit_biases(x)
        bias = self.bias
        if self.precision == "bf16":  # the same rounding with or without CUDA autocast
            h = bf16_values(self._conv(bf16_values(x)))
            bias = bf16_values(bias)
        else:
            h = self._conv(x)
        out = []
        for j in range(self.n_biases):  # one threshold at a time bounds the memory
            ppv = (h > bias[None, :, j, None].to(h.dtype)).to(x.dtype)
            if self.pad:
                ppv = F.pad(ppv, (0, self.pad), mode="replicate")
            out.append(self._patch_mean(ppv))
        return torch.stack(out, 2).flatten(1, 2)  # feature-major, as the bias table

    def _patch_mean(self, ppv: Tensor) -> Tensor:
        """Each patch's mean of ``ppv``.  A patch a whole number of strides long is a run of
        stride-long blocks (the automatic patching's are two): one pass sums the blocks, then a
        few adds make the patches.  Equal to ``avg_pool1d`` bit for bit (the values are 0 and
        1, so every partial sum is exact) and faster on the CPU: 3x for the features at
        stride 1 (DistalPhalanxTW's training step 1.22x), 1.0-1.6x elsewhere
        (``benchmarks/rocket_stem_speed.py``)."""
        p, s = self.patch_len, self.stride
        if p % s:
            return F.avg_pool1d(ppv, p, s)
        k = p // s
        n = (ppv.shape[-1] - p) // s + 1
        blocks = ppv[..., :(n - 1 + k) * s].unflatten(-1, (n - 1 + k, s)).sum(-1)
        counts = blocks[..., :n]
        for i in range(1, k):
            counts = counts + blocks[..., i:i + n]
        return counts / p

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.norm(self.features(x)))


class PatchFormerNet(nn.Module):
    """One network.  Input ``(batch, C, T)`` -> logits ``(batch, n_classes)``.

    ``stem``: ``"conv"`` (two same-length convolutions before patching), ``"dilated"`` (the
    same, each a set of dilated 9-tap convolutions, :class:`DilatedConv`), ``"rocket"``
    (fixed MiniRocket features per patch as the tokens, :class:`RocketTokens`; ``stem_width``
    and ``stem_kernel`` unused) or ``"patch"`` (linear patch embedding only).
    ``pos``: ``"none"`` (default) or ``"learned"``
    (absolute positional embeddings: equal on average, worse on the sets with shifted shapes).
    ``pool``: ``"meanmax"`` (default: mean and max over tokens, concatenated), ``"mean"`` or
    ``"cls"`` (a class token).  ``spectral``: add
    log-magnitude spectrum patches as tokens (measured not to pay; off by default).
    ``stem_precision``: the rocket stem's arithmetic, ``"fp32"`` or ``"bf16"`` (the preset's;
    see :class:`RocketTokens`).
    """

    def __init__(
        self, n_channels: int, n_timepoints: int, n_classes: int, *,
        d_model: int = 64, depth: int = 3, n_heads: int = 4, mlp_ratio: float = 2.0,
        patch_len: int | str = "auto", stride: int | str = "auto", stem: str = "conv",
        stem_width: int = 32, stem_kernel: int | str = "auto", dropout: float = 0.1,
        drop_path: float = 0.1, pos: str = "none", pool: str = "meanmax",
        instance_norm: bool = True, spectral: bool = False, diff: bool = False,
        stem_precision: str = "fp32",
    ) -> None:
        super().__init__()
        if stem not in ("conv", "dilated", "patch", "rocket"):
            raise ConfigError(f"stem must be 'conv', 'dilated', 'patch' or 'rocket', "
                              f"not {stem!r}")
        if pos not in ("learned", "none"):
            raise ConfigError(f"pos must be 'learned' or 'none', not {pos!r}")
        if pool not in ("mean", "meanmax", "cls"):
            raise ConfigError(f"pool must be 'mean', 'meanmax' or 'cls', not {pool!r}")
        _checked_precision(stem_precision)  # used by the rocket stem; checked for every stem
        for name, flag in (("instance_norm", instance_norm), ("spectral", spectral),
                           ("diff", diff)):
            if not isinstance(flag, bool | np.bool_):  # "--set model.diff=abc" reads as true
                raise ConfigError(f"{name} must be true or false, not {flag!r}")
        self.patch_len, self.stride = resolve_patching(n_timepoints, patch_len, stride)
        self.n_timepoints = n_timepoints
        self.pad, self.n_tokens = _padding(n_timepoints, self.patch_len, self.stride)
        self.norm_in = InstanceNorm() if instance_norm else nn.Identity()
        self.stem_kernel = resolve_stem_kernel(self.stride, stem_kernel)
        # The first difference as extra channels: slopes and turning points of a shape,
        # which a ridge on MultiRocket's difference features also finds worth having.
        self.diff_norm = InstanceNorm() if diff else None
        n_channels = n_channels * (2 if diff else 1)
        self.stem: nn.Module = nn.Identity()
        patch_in = n_channels
        if stem in ("conv", "dilated"):
            k = self.stem_kernel

            def conv(c_in: int) -> nn.Module:
                if stem == "dilated":
                    return DilatedConv(c_in, stem_width, k)
                return nn.Conv1d(c_in, stem_width, k, padding="same", bias=False)

            self.stem = nn.Sequential(
                conv(n_channels), nn.BatchNorm1d(stem_width), nn.GELU(),
                conv(stem_width), nn.BatchNorm1d(stem_width), nn.GELU(),
            )
            patch_in = stem_width
        if stem == "rocket":  # fixed features per patch are the tokens: no learned patcher
            self.patch: nn.Module = RocketTokens(n_channels, n_timepoints, self.patch_len,
                                                 self.stride, d_model,
                                                 precision=stem_precision)
            self.pad = 0  # the rocket tokens pad their own features
        else:
            self.patch = nn.Conv1d(patch_in, d_model, self.patch_len, stride=self.stride)
        self.spectral = spectral
        n_spec = 0
        if spectral:
            # Log-magnitude spectrum tokens: shift-invariant evidence that time patches only
            # see piecewise (a linear model on it alone reaches 0.92 on FordA).
            n_freq = n_timepoints // 2 + 1
            self.spec_len, self.spec_stride = resolve_patching(n_freq, target=TARGET_TOKENS // 2)
            self.spec_pad, n_spec = _padding(n_freq, self.spec_len, self.spec_stride)
            self.spec_norm = nn.BatchNorm1d(n_channels)
            self.spec_patch = nn.Conv1d(n_channels, d_model, self.spec_len,
                                        stride=self.spec_stride)
            self.n_tokens += n_spec
        self.pool = pool
        n_pos = self.n_tokens + (pool == "cls")
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pool == "cls" else None
        self.pos = nn.Parameter(torch.zeros(1, n_pos, d_model)) if pos == "learned" else None
        self.drop = nn.Dropout(dropout)
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(d_model, n_heads, mlp_ratio, dropout, r) for r in rates)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model * (2 if pool == "meanmax" else 1), n_classes)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for p in (self.pos, self.cls):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def _inputs(self, x: Tensor) -> Tensor:
        x = self.norm_in(x)
        if self.diff_norm is not None:
            d = torch.diff(x, dim=-1, prepend=x[..., :1])
            x = torch.cat([x, self.diff_norm(d)], 1)
        return x

    def prime(self, x: Tensor) -> None:
        """Data-dependent initialisation before training (the rocket stem's thresholds),
        once: a trained network trained further keeps the thresholds its weights fit."""
        if isinstance(self.patch, RocketTokens) and not self.patch._primed:
            self.patch.fit_biases(self._inputs(x))

    def forward(self, x: Tensor) -> Tensor:
        x = self._inputs(x)
        spec = None
        if self.spectral:
            spec = self.spec_norm(torch.log1p(torch.fft.rfft(x.float(), dim=-1).abs()))
            if self.spec_pad:
                spec = F.pad(spec, (0, self.spec_pad), mode="replicate")
            spec = self.spec_patch(spec.to(x.dtype)).transpose(1, 2)
        x = self.stem(x)
        if self.pad:
            x = F.pad(x, (0, self.pad), mode="replicate")
        x = self.patch(x).transpose(1, 2)  # (B, tokens, d)
        if spec is not None:
            x = torch.cat([x, spec], 1)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        if self.pos is not None:
            x = x + self.pos
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.pool == "cls":
            x = x[:, 0]
        elif self.pool == "meanmax":
            x = torch.cat([x.mean(1), x.amax(1)], -1)
        else:
            x = x.mean(1)
        return self.head(x)


class PatchFormer(nn.Module):
    """The ``patchformer`` architecture: ``members`` independent :class:`PatchFormerNet`.

    A deep ensemble inside one module, so it trains with :func:`tsformer.train.fit` and
    saves as one model.  In training the batch holds one equal share per member (``fit``
    lays out each member's own shuffle, augmentation and mixup pairs, share after share; a
    step's mixup weight is shared); each member
    returns the logits of its share, stacked ``(members, share, classes)``, and the trainer
    gives each its own loss and its own gradient clipping (:meth:`clip_groups`).  So the
    members train as independent runs would, in lockstep, at ``members`` times the cost.
    (Two earlier designs lost: a bagged split of one batch starved each member's BatchNorm,
    13-15 points down on two sets; one shared stream for all members made them too alike to
    gain.)  At inference the members' class probabilities are averaged; the output is their
    log, a valid logit vector.
    Other keyword options go to every member (see :class:`PatchFormerNet`).
    """

    def __init__(self, n_channels: int, n_timepoints: int, n_classes: int, *, members: int = 1,
                 **params: Any) -> None:
        super().__init__()
        if isinstance(members, bool) or not isinstance(members, numbers.Integral) or members < 1:
            raise ConfigError(f"members must be a whole number >= 1, not {members!r}")
        self.nets = nn.ModuleList(PatchFormerNet(n_channels, n_timepoints, n_classes, **params)
                                  for _ in range(members))
        self.n_tokens = self.nets[0].n_tokens

    @property
    def n_members(self) -> int:
        """Members, each trained on its own share of a batch (``fit`` reads it)."""
        return len(self.nets)

    def resolved_options(self) -> dict[str, int]:
        """The ``"auto"`` options as built, so a saved config never depends on the rule."""
        net = self.nets[0]
        return {"patch_len": net.patch_len, "stride": net.stride, "stem_kernel": net.stem_kernel}

    def prime(self, x: Tensor) -> None:
        """Data-dependent initialisation from training series; ``fit`` calls it first, on
        every rank the same series, so distributed replicas start equal."""
        for net in self.nets:
            net.prime(x)

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """Parameter groups whose gradient norms are clipped apart: one per member."""
        return [list(net.parameters()) for net in self.nets]

    def forward(self, x: Tensor) -> Tensor:
        m = self.n_members
        if m == 1:
            return self.nets[0](x)
        if self.training:
            if x.shape[0] % m:
                raise ValueError(f"an ensemble trains on one equal share of the batch per "
                                 f"member: {x.shape[0]} series for {m} members")
            return torch.stack([net(s) for net, s in zip(self.nets, x.chunk(m), strict=True)])
        probs = torch.stack([net(x).softmax(-1) for net in self.nets]).mean(0)
        return probs.clamp_min(1e-12).log()


# --------------------------------------------------------------------------- defaults

#: The preset's model options; shape-dependent ones are "auto" and resolved from the length.
MODEL_DEFAULTS: dict[str, Any] = {
    "d_model": 64, "depth": 3, "n_heads": 4, "mlp_ratio": 2.0, "patch_len": "auto",
    "stride": "auto", "stem": "conv", "stem_width": 32, "stem_kernel": "auto", "dropout": 0.1,
    "drop_path": 0.1, "pos": "none", "pool": "meanmax", "instance_norm": True, "members": 1,
    "spectral": False, "diff": False, "stem_precision": "bf16",
}

#: Training options that do not depend on the data (the rest come from :func:`auto_params`).
TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw", "eps": 1e-8, "weight_decay": 0.05, "schedule": "onecycle",
    "label_smoothing": 0.1, "grad_clip": 1.0, "augment": ["scale", "shift", "jitter"],
    "patience": None, "restore_best": True,
}

#: Optimiser steps a run aims for, before the epoch bounds below; sets the compute budget.
TARGET_STEPS = 2500
MIN_EPOCHS, MAX_EPOCHS = 30, 400
#: A single run's compute cap (training series x points x epochs), reached only by big
#: sets: FordA's 20 epochs (3,240 x 500 x 20), ~420 CPU-s (7 min on one idle core).  On FordA 20
#: epochs scored what 49 did (0.9341 both, seed 0), so the steps above 20 were wasted.
MAX_COST = 3240 * 500 * 20
MIN_CAPPED_EPOCHS = 10  # the cap never cuts a run below this
#: Training sets below this many series get no validation split (every series trains) and
#: window warping.  Warping gained 6-8 points on FreezerSmallTrain and Car and 2-3 on
#: FiftyWords and CricketY, but cost FordA (3,601 series) 2.5 points (docs/benchmarks.md).
SMALL_DATA = 500
#: Mixup's Beta(a, a) below SMALL_DATA series.  On top of warping: +0.8 points on the mean of
#: the 14 small dev sets, nearly all of it on BeetleFly and Beef (20 and 30 test series);
#: neutral, within +-2 points, on the sets with large test sets (docs/benchmarks.md).
SMALL_DATA_MIXUP = 0.2
#: Stem width for data small enough to afford it: a 64-channel stem costs 2-2.5x the default
#: 32 (measured), so it is used only when the run at WIDE_COST_FACTOR times its cost still fits
#: :data:`MAX_COST`.  FordA and the largest sets keep 32 (and their time budget).
WIDE_STEM, WIDE_COST_FACTOR = 64, 2.5
#: The stem below SMALL_DATA series: fixed MiniRocket features per patch as the tokens
#: (:class:`RocketTokens`).  On a few dozen series a learned stem fits shortcuts that do not
#: hold on the test data; the fixed features gained +2.0 points over the learned stems on the
#: 14 small development sets (one network: BeetleFly +15, ArrowHead +6.3, Diatom +4.3, Car
#: +3.3; ECGFiveDays -1.7, DistalPhalanxTW -1.4; docs/benchmarks.md, ablation 29).  A run
#: costs about twice the 32-wide dense stem's (up to 6x on short series, where every point
#: is a token), which the ensemble's cost bound counts.
SMALL_STEM, SMALL_STEM_COST_FACTOR = "rocket", 2.0
#: Ensemble members below SMALL_DATA series, where one network's result swings most with
#: its seed (Car 0.85-0.90, ECGFiveDays 0.947-0.986 over three seeds): a deep ensemble of
#: independently trained members averages the swing away (docs/benchmarks.md, ablations 19
#: and 21: three networks averaged, +0.57 points over their own mean on 14 small sets).
#: Fewer members where each would cost more than one FordA run (:data:`MAX_COST`), so no
#: ensemble costs more than SMALL_DATA_MEMBERS FordA runs; FordA-size sets keep one network.
SMALL_DATA_MEMBERS = 3


def auto_params(n_channels: int, n_timepoints: int, n_train: int, n_classes: int, *,
                members: int | None = None) -> dict[str, dict[str, Any]]:
    """Model and training options for data of this shape: ``{"model": ..., "train": ...}``.

    Only sizes enter, never a dataset's name.  Why each rule:

    * patching (model): ~64 half-overlapping patches whatever the length, so cost and
      attention span stay flat from 20 to 2,000 points;
    * stem kernel (model): ``16 * stride - 1`` in [7, 63] (:func:`resolve_stem_kernel`);
    * validation split: 10% of the training data once there are >= :data:`SMALL_DATA`
      series (enough to pick the best epoch on); below that every series is worth more as
      training data, the full schedule runs and its final weights are kept (no
      ``restore_best``: with mixup and augmentation the training loss of an epoch mostly
      reflects that epoch's random draws, so the "best" one was a lottery, ablation 21);
    * augmentation: below :data:`SMALL_DATA` series, window warping (``"warp"``) joins the
      defaults and mixup (:data:`SMALL_DATA_MIXUP`) blends pairs of series, where the model
      must learn invariance to local speed, and smooth boundaries, from few examples;
    * batch: about n/8, a power of two in [8, 64], so tiny sets still get several steps an
      epoch; the learning rate follows the square root of the batch;
    * epochs: about :data:`TARGET_STEPS` optimiser steps, within [30, 400] epochs, and at
      most :data:`MAX_COST` series x points x epochs, but no fewer than 10 epochs (only big
      sets reach the cap: FordA gets 20);
      warm-up is the first 5% of them;
    * stem (model): below :data:`SMALL_DATA` series the fixed MiniRocket features
      (:data:`SMALL_STEM`, ablation 29); above, the dense stem, :data:`WIDE_STEM` (64) wide
      when that run still fits MAX_COST, else 32 wide (docs/benchmarks.md, ablation 10);
    * members (``None``: auto): below :data:`SMALL_DATA` series a deep ensemble of
      :data:`SMALL_DATA_MEMBERS`, fewer where a member costs more than one FordA run; one
      network otherwise.  Each member gets the single network's schedule, so an ensemble
      costs ``members`` times as much (an explicit ``members=M`` likewise).
    """
    del n_channels, n_classes  # same rules for any channel or class count (kept for the API)
    patch_len, stride = resolve_patching(n_timepoints)
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
    stem, width, factor = ((SMALL_STEM, MODEL_DEFAULTS["stem_width"], SMALL_STEM_COST_FACTOR)
                           if small else ("conv", WIDE_STEM, WIDE_COST_FACTOR) if wide
                           else ("conv", MODEL_DEFAULTS["stem_width"], 1.0))
    if members is None:
        members = 1
        if small:  # as many members as fit SMALL_DATA_MEMBERS FordA runs, at most that many
            run_cost = cost * factor
            fit_in = int(SMALL_DATA_MEMBERS * MAX_COST // run_cost)
            members = min(SMALL_DATA_MEMBERS, max(1, fit_in))
    train = {
        **TRAIN_DEFAULTS, "augment": list(TRAIN_DEFAULTS["augment"]) + ["warp"] * small,
        "lr": 1e-3 * math.sqrt(batch / 64), "batch_size": batch,
        "epochs": epochs, "warmup_epochs": max(1.0, 0.05 * epochs),
        "validation_split": val, "mixup": SMALL_DATA_MIXUP if small else 0.0,
        "restore_best": not small,  # no validation data: the schedule's end, not a lottery
    }
    model = {**MODEL_DEFAULTS, "patch_len": patch_len, "stride": stride,
             "stem_kernel": resolve_stem_kernel(stride), "members": members,
             "stem": stem, "stem_width": width}
    return {"model": model, "train": train}


ARCHITECTURES["patchformer"] = PatchFormer
DATA_SCALED["patchformer"] = auto_params
register_preset(
    "patchformer", "patchformer", model=MODEL_DEFAULTS,
    train={**TRAIN_DEFAULTS, "lr": 1e-3, "batch_size": 64, "epochs": 60, "warmup_epochs": 3.0,
           "validation_split": 0.1},
    description="Accurate preset: conv or MiniRocket-feature stem + patch tokens, pre-norm "
    "transformer, AdamW one-cycle, label smoothing, augmentation.  "
    "Data-scaled options: patchformer.auto_params.",
)
