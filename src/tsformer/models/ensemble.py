"""A deep ensemble: members trained apart, their class probabilities averaged.

The members are ordinary networks, each trained by the one training loop as an independent
run would be (:func:`tsformer.pipeline.train` gives member ``i`` its own seed); this module
only averages them at inference.  Lakshminarayanan et al., "Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles", NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        probs = sum(net(x).float().softmax(-1) for net in self.members) / len(self.members)
        return probs.clamp_min(1e-12).log()
