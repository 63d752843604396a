"""Per-series z-normalisation inside a model, so a saved model applies it to whatever it is
given: the UCR archive's series are z-normalised, raw sensor data usually is not."""

from __future__ import annotations

from torch import Tensor, nn


class InstanceNorm(nn.Module):
    """Each series and channel to zero mean, unit variance: scale and offset carry no signal
    in most benchmarks, and it lets a model take unnormalised input safely."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True, unbiased=False)
        return (x - mean) / (std + self.eps)


class ZNormalized(nn.Module):
    """A network behind :class:`InstanceNorm` (``normalize="zscore"`` in a run config)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.norm = InstanceNorm()
        self.net = net

    def init_from_data(self, x: Tensor) -> None:
        init = getattr(self.net, "init_from_data", None)
        if init is not None:
            init(self.norm(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.norm(x))

    # The wrapped network's fixed stem, if any, behind the normalisation (models.FixedStem).
    def fixed_features(self, x: Tensor) -> Tensor | None:
        inner = getattr(self.net, "fixed_features", None)
        return inner(self.norm(x)) if inner is not None else None

    def forward_features(self, f: Tensor) -> Tensor:
        return self.net.forward_features(f)

    def fixed_state(self) -> list[Tensor]:
        inner = getattr(self.net, "fixed_state", None)
        return inner() if inner is not None else []


def looks_unnormalized(X) -> str | None:  # noqa: ANN001 - numpy array (n, C, T)
    """Why training data ``X`` looks far from per-series z-normalised, or None: the median
    series' mean more than 0.5 standard deviations from zero, or its standard deviation
    outside [0.5, 2] (Chinatown's raw counts: mean ~ 800)."""
    import numpy as np

    if X.size == 0:
        return None
    mean = np.median(np.abs(X.mean(-1)))
    std = np.median(X.std(-1))
    if std > 0 and (mean > 0.5 * std or not 0.5 <= std <= 2.0):
        return f"the median series has mean {mean:.3g} and standard deviation {std:.3g}"
    return None
