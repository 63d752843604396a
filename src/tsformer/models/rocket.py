"""MiniRocket's fixed features per patch, as the tokens of a transformer (the ``rocket`` stem).

On a few dozen training series a learned stem fits shortcuts that do not hold on the test
data; MiniRocket's fixed kernels with data-set thresholds need nothing learned before the
token projection.  Dempster, Schmidt & Webb, "MiniRocket", KDD 2021.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .patches import patch_padding

#: Points (series x length) whose kernel outputs set the rocket stem's thresholds.
QUANTILE_POINTS = 8192


def minirocket_kernels() -> Tensor:
    """MiniRocket's 84 fixed 9-tap kernels: -1 everywhere, 2 at three of the nine taps
    (every choice of three), so each sums to zero and sees shape, not level."""
    idx = torch.combinations(torch.arange(9), 3)
    w = torch.full((len(idx), 9), -1.0)
    w.scatter_(1, idx, 2.0)
    return w


class RocketTokens(nn.Module):
    """Tokens from fixed MiniRocket features: the 84 kernels at dilations up to a ninth of
    the series, each output thresholded at ``n_biases`` quantiles of its own training
    values, and the proportion of positive values (PPV) in each patch is a feature; a
    BatchNorm and a linear map turn the features of a patch into its token.

    Nothing before the linear map is learned, so on a few dozen series the network starts
    from the features a ridge fit on MiniRocket finds enough; mean-pooling the tokens is a
    linear function of MiniRocket's own (whole-series) PPV features.  The thresholds are a
    data-dependent initialisation, saved with the weights: ``fit`` sets them from training
    series before the first step (:meth:`PatchFormerNet.init_from_data`), else the first input does.

    """

    def __init__(self, c_in: int, n_timepoints: int, patch_len: int, stride: int, d_out: int,
                 n_biases: int = 4, max_dilations: int = 8) -> None:
        super().__init__()
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
        self.pad = patch_padding(n_timepoints, patch_len, stride)[0]
        #: None: the hard threshold (MiniRocket's PPV).  A float ``tau``: a sigmoid of width
        #: ``tau`` x each feature's spread instead, so gradients reach the input (gradient
        #: attributions set it for the duration of an explanation; see :func:`relaxed_thresholds`).
        self.soft: float | None = None
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

    @property
    def primed(self) -> bool:
        """Whether the thresholds are set (by :meth:`fit_biases` or loaded weights)."""
        return self._primed

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._primed = bool(self.ready)  # loaded weights bring their thresholds

    def features(self, x: Tensor) -> Tensor:
        """PPV per patch, ``(batch, features, tokens)``; no gradient unless :attr:`soft`."""
        if not self._primed:  # not primed by `fit`: the first input sets the thresholds
            self.fit_biases(x)
        if self.soft is None:
            with torch.no_grad():
                return self._features(x)
        return self._features(x)

    def _features(self, x: Tensor) -> Tensor:
        bias, h = self.bias, self._conv(x)
        spread = None
        if self.soft is not None:
            spread = h.detach().std(dim=(0, 2), keepdim=True).clamp_min(1e-6) * self.soft
        out = []
        for j in range(self.n_biases):  # one threshold at a time bounds the memory
            b = bias[None, :, j, None].to(h.dtype)
            ppv = (h > b).to(x.dtype) if spread is None else torch.sigmoid((h - b) / spread)
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


@contextmanager
def relaxed_thresholds(model: nn.Module, tau: float = 0.1) -> Iterator[nn.Module]:
    """Within the block, every rocket stem in ``model`` thresholds softly (a sigmoid of width
    ``tau`` x each feature's spread), so gradient-based attributions see the input; the hard
    thresholds come back after, whatever happens inside."""
    stems = [m for m in model.modules() if isinstance(m, RocketTokens)]
    before = [m.soft for m in stems]
    for m in stems:
        m.soft = tau
    try:
        yield model
    finally:
        for m, s in zip(stems, before, strict=True):
            m.soft = s
