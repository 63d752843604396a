"""A deep ensemble: members trained apart, their class probabilities averaged.

The members are ordinary networks, each trained by the one training loop as an independent
run would be (:func:`tsformer.pipeline.train` gives member ``i`` its own seed); this module
only averages them at inference.  Lakshminarayanan et al., "Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles", NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Ensemble(nn.Module):
    """``members`` networks of one architecture; returns the log of their mean probabilities
    (a valid logit vector, so the softmax of the output is the averaged distribution)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        shared = self._shared_features(x)
        outs = (net(x) if shared is None else net.forward_features(shared)
                for net in self.members)
        probs = sum(o.float().softmax(-1) for o in outs) / len(self.members)
        return probs.clamp_min(1e-12).log()

    def _shared_features(self, x: Tensor) -> Tensor | None:
        """The members' fixed stem output, computed once, when every member has the same fixed
        stem (the rocket stem: same kernels, thresholds from the same training series)."""
        first = self.members[0]
        if torch.compiler.is_exporting():  # comparing weights is not traceable: each member
            return None                     # computes its own stem in an exported graph
        if not all(callable(getattr(m, "fixed_state", None)) for m in self.members):
            return None
        state = first.fixed_state()
        if not state or any(len(m.fixed_state()) != len(state) or not all(
                torch.equal(a, b) for a, b in zip(m.fixed_state(), state, strict=True))
                for m in self.members[1:]):
            return None
        return first.fixed_features(x)
