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

from .patches import is_exporting, patch_padding

#: Points (series x length) whose kernel outputs set the rocket stem's thresholds.
QUANTILE_POINTS = 8192
#: Series whose features are computed together (more spills the kernel outputs from cache).
FEATURE_CHUNK = 32


def minirocket_kernels() -> Tensor:
    """MiniRocket's 84 fixed 9-tap kernels: -1 everywhere, 2 at three of the nine taps
    (every choice of three), so each sums to zero and sees shape, not level."""
    idx = torch.combinations(torch.arange(9), 3)
    w = torch.full((len(idx), 9), -1.0)
    w.scatter_(1, idx, 2.0)
    return w


def rocket_dilations(n_timepoints: int, max_dilations: int = 8) -> list[int]:
    """MiniRocket's dilations: up to ``max_dilations``, exponentially spaced, so the 9-tap
    kernel spans at most the whole series."""
    top = math.log2(max(1.0, (n_timepoints - 1) / 8))
    return sorted({int(2 ** e) for e in np.linspace(0, top, max_dilations)})


def n_rocket_features(n_timepoints: int, n_biases: int = 4) -> int:
    """Features per patch of :class:`RocketTokens` (kernels x dilations x thresholds)."""
    return len(rocket_dilations(n_timepoints)) * 84 * n_biases


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
        self.dilations = rocket_dilations(n_timepoints, max_dilations)
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
        #: ``tau`` x each feature's spread in the series instead, so gradients reach the
        #: input (gradient attributions set it for the duration of an explanation; see
        #: :func:`relaxed_thresholds`).
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
        """PPV per patch, ``(batch, tokens, features)``; no gradient unless :attr:`soft`."""
        if not self._primed:  # not primed by `fit`: the first input sets the thresholds
            self.fit_biases(x)
        if self.soft is not None:
            return self._features(x)
        with torch.no_grad():  # in chunks: the kernel outputs stay in cache (2x on a CPU)
            if len(x) <= FEATURE_CHUNK:
                return self._features(x)
            return torch.cat([self._features(c) for c in x.split(FEATURE_CHUNK)])

    def _features(self, x: Tensor) -> Tensor:
        """One dilation at a time (bounds the memory): kernel outputs, padded once, compared
        with all of that dilation's thresholds at once, then averaged per patch."""
        nb, k = self.n_biases, self.weight.shape[1]
        out = []
        for i, (w, d) in enumerate(zip(self.weight, self.dilations, strict=True)):
            h = F.conv1d(x, w.to(x.dtype), padding=4 * d, dilation=d)  # (B, 84, T)
            b = self.bias[i * k:(i + 1) * k].to(h.dtype)[None, :, :, None]  # (1, 84, nb, 1)
            if self.soft is None:  # comparing into a float tensor: 6x faster than .float()
                ppv = torch.empty(*h.shape[:2], nb, h.shape[-1], dtype=x.dtype,
                                  device=x.device)
                torch.gt(h[:, :, None, :], b, out=ppv)
            else:
                # each series' own spread: an explanation must not depend on its batch
                spread = h.detach().std(dim=2).clamp_min(1e-6)[:, :, None, None]
                ppv = torch.sigmoid((h[:, :, None, :] - b) / (spread * self.soft))
            out.append(self._patch_mean(ppv.flatten(1, 2)))  # (B, 84 * nb, tokens)
        # (B, tokens, features), features in the bias table's order: the layout the token
        # projection reads as one matrix (written once, shared by an ensemble's members)
        return torch.cat(out, 1).transpose(1, 2).contiguous()

    def _patch_mean(self, ppv: Tensor) -> Tensor:
        """Each patch's mean of ``ppv`` (the series' length), as ``avg_pool1d`` of it
        right-padded by repeating its last point.  A patch a whole number of strides long is a
        run of stride-long blocks (the automatic patching's are two): the blocks are summed by
        one matrix-vector product, the padding counted into the last block rather than
        copied, and a few adds make the patches; equal to the pooling bit for bit (the values
        are 0 and 1, so every partial sum is exact) and several times faster on a CPU."""
        p, s, pad = self.patch_len, self.stride, self.pad
        if p % s:
            if pad:
                ppv = F.pad(ppv, (0, pad), mode="replicate")
            return F.avg_pool1d(ppv, p, s)
        k, full = p // s, ppv.shape[-1] // s  # full: blocks wholly inside the series
        runs = ppv[..., :full * s].reshape(-1, full, s)
        if is_exporting():  # onnxruntime's MatMul with an inner size of a few
            blocks = runs.sum(-1)           # points is ~70x slower than its ReduceSum
        else:
            blocks = runs @ torch.ones(s, dtype=ppv.dtype, device=ppv.device)
        blocks = blocks.view(*ppv.shape[:-1], full)
        if pad:  # the last block: its points, and the last point once per padded place
            last = ppv[..., full * s:].sum(-1) + pad * ppv[..., -1]
            blocks = torch.cat([blocks, last[..., None]], -1)
        n = blocks.shape[-1] - k + 1
        counts = blocks[..., :n]
        for i in range(1, k):
            counts = counts + blocks[..., i:i + n]
        return counts / p

    def project(self, f: Tensor) -> Tensor:
        """Tokens ``(batch, d_out, tokens)`` from :meth:`features`' output (the learned part)."""
        # The 1x1 convolution as one matrix product over the features as they lie (no
        # transposed copy; Conv1d's path for a kernel of one is 3x slower on a CPU), with
        # the BatchNorm folded into it at inference (no pass over the features).
        w, b, bn = self.proj.weight[:, :, 0], self.proj.bias, self.norm
        rows = f.reshape(-1, f.shape[-1])  # (batch x tokens, features): a view
        if bn.training or bn.running_mean is None:
            rows = bn(rows)
        else:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            b = b + w @ (bn.bias - bn.running_mean * scale)
            w = w * scale
        out = torch.addmm(b.to(f.dtype), rows, w.to(f.dtype).T)
        return out.view(f.shape[0], f.shape[1], -1).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.features(x))


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
