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

from .patches import is_exporting

#: Series an ensemble with a shared fixed stem predicts together.
SHARED_CHUNK = 32


class Ensemble(nn.Module):
    """``members`` networks of one architecture; returns the log of their mean probabilities
    (a valid logit vector, so the softmax of the output is the averaged distribution)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        #: Whether a graph exported from this ensemble computes the shared stem once: set by
        #: :meth:`prepare_export` before tracing, where comparing weights cannot run.
        self.export_shares_stem = False

    def prepare_export(self) -> None:
        """Decide, eagerly, whether the exported graph may share the fixed stem."""
        self.export_shares_stem = self._shares_stem()

    def forward(self, x: Tensor) -> Tensor:
        if not self._shares_stem():
            return self._average([net(x) for net in self.members])
        if torch.is_grad_enabled() or is_exporting() or len(x) <= SHARED_CHUNK:
            return self._average_shared(x)
        # Inference in chunks: features and heads of a few series stay in cache (1.4x).
        return torch.cat([self._average_shared(c) for c in x.split(SHARED_CHUNK)])

    def _average(self, outs: list[Tensor]) -> Tensor:
        probs = sum(o.float().softmax(-1) for o in outs) / len(self.members)
        return probs.clamp_min(1e-12).log()

    def _average_shared(self, x: Tensor) -> Tensor:
        f = self.members[0].fixed_features(x)
        return self._average([net.forward_features(f) for net in self.members])

    def _shares_stem(self) -> bool:
        """Whether every member has the same fixed stem (the rocket stem: same kernels,
        thresholds from the same training series), whose output is then computed once."""
        if is_exporting():  # comparing weights is not traceable: decided
            return self.export_shares_stem  # before the trace (prepare_export)
        if not all(callable(getattr(m, "fixed_state", None)) for m in self.members):
            return False
        state = self.members[0].fixed_state()
        return bool(state) and all(
            len(m.fixed_state()) == len(state) and all(
                torch.equal(a, b) for a, b in zip(m.fixed_state(), state, strict=True))
            for m in self.members[1:])
