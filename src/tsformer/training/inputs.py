"""What a training step reads, prepared once before the first epoch.

Two things can be done once instead of at every step:

* **a pool of augmented copies** (``augment_views=N``): each series and ``N`` augmented
  copies of it, made once; every epoch reads the series or one of its copies, drawn at
  random (offline augmentation).  Without it the augmentations are drawn afresh each step.
* **a fixed stem's features** (:class:`~tsformer.models.FixedStem`, the rocket stem): its
  output for every series (and copy) in the pool, so a step runs only the learned part.
  Mixup is linear, so it blends features as it would blend series.

With fresh augmentations and a fixed stem the features are computed at every step, as the
network's forward pass does: correct, and several times slower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..models import FixedStem
from .augment import AUGMENTATIONS
from .config import TrainConfig

#: Largest feature pool (bytes): above it, the features are computed at every step.
MAX_FEATURE_POOL = 2 * 1024**3
#: Kernel-output values one feature chunk may hold (bounds the memory of computing the pool).
CHUNK_VALUES = 2**27


class FromFeatures(nn.Module):
    """A fixed-stem network seen from its features: ``forward(f) = net.forward_features(f)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, f: Tensor) -> Tensor:
        return self.net.forward_features(f)


@dataclass
class Inputs:
    """The training inputs: ``pool`` ``(V, n, ...)`` read through ``net``, with ``augs``
    still to apply to each batch (empty when the pool holds augmented copies)."""

    pool: Tensor
    net: nn.Module
    augs: list[Callable[[Tensor, torch.Generator], Tensor]]
    gen: torch.Generator

    def __len__(self) -> int:
        return self.pool.shape[1]

    def batch(self, idx: Tensor, aug_gen: torch.Generator) -> Tensor:
        """The inputs of series ``idx``: one copy each from the pool, then fresh augmentations."""
        if len(self.pool) == 1:
            xb = self.pool[0, idx]
        else:
            view = torch.randint(len(self.pool), (len(idx),), generator=self.gen)
            xb = self.pool[view.to(idx.device), idx]
        for aug in self.augs:
            xb = aug(xb, aug_gen)
        return xb


@torch.no_grad()
def fixed_features(model: nn.Module, X: Tensor) -> Tensor | None:
    """The fixed stem's output for every series of ``X``, or None where the model has no fixed
    stem or the result would be over :data:`MAX_FEATURE_POOL` bytes."""
    if not isinstance(model, FixedStem) or not len(X):
        return None
    was = model.training
    model.eval()
    try:
        probe = model.fixed_features(X[:1])
        if probe is None or probe.numel() * probe.element_size() * len(X) > MAX_FEATURE_POOL:
            return None
        out = probe.new_empty((len(X), *probe.shape[1:]))
        chunk = max(1, CHUNK_VALUES // max(1, probe.numel() * 4))
        for i in range(0, len(X), chunk):
            out[i:i + chunk] = model.fixed_features(X[i:i + chunk])
        return out
    finally:
        model.train(was)


def prepare_inputs(model: nn.Module, train_model: nn.Module, X: Tensor, cfg: TrainConfig,
                   aug_gen: torch.Generator, *, distributed: bool) -> Inputs:
    """The pool of series (and augmented copies) a step draws from, as features where the
    network has a fixed stem and nothing is drawn afresh per step."""
    augs = [AUGMENTATIONS[name] for name in cfg.augment]
    gen = torch.Generator(device="cpu")
    gen.manual_seed((cfg.seed or 0) + 3)
    views = [X]
    if augs and cfg.augment_views:
        for _ in range(cfg.augment_views):
            xv = X
            for aug in augs:
                xv = aug(xv, aug_gen)
            views.append(xv)
        augs = []
    if not augs and not distributed and not cfg.compile:
        feats = fixed_features(model, torch.cat(views))
        if feats is not None:  # the learned part trains on features computed once
            pool = feats.view(len(views), len(X), *feats.shape[1:])
            return Inputs(pool, FromFeatures(model), [], gen)
    return Inputs(torch.stack(views), train_model, augs, gen)


def validation_inputs(model: nn.Module, inputs: Inputs, Xv: Tensor | None
                      ) -> tuple[nn.Module, Tensor | None]:
    """The network and inputs validation runs on: features of ``Xv`` when training reads
    features, so validation sees what training sees."""
    if Xv is None or not isinstance(inputs.net, FromFeatures):
        return model, Xv
    feats = fixed_features(model, Xv)
    return (inputs.net, feats) if feats is not None else (model, Xv)
