"""The networks.  Each architecture lives in its own module and registers itself beside its
class (``@register_model``), with its preset (``register_preset``); importing this package
registers the built-in ones.  Public models take ``(batch, n_channels, n_timepoints)`` float32
and return logits ``(batch, n_classes)``.

To add an architecture: a module here with an :class:`~tsformer.options.Options` record, the
``nn.Module`` decorated with ``@register_model``, a ``register_preset`` call, and an import
line below (see docs/architecture.md).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from ..options import Options
from ..registry import get_architecture
from . import patchformer, seed  # noqa: F401  (register the built-in architectures and presets)
from .ensemble import Ensemble
from .normalization import InstanceNorm, ZNormalized, looks_unnormalized
from .summary import count_parameters, summary

__all__ = ["DataDependentInit", "Ensemble", "FixedStem", "InstanceNorm", "ZNormalized",
           "build_network", "count_parameters", "looks_unnormalized", "summary"]


@runtime_checkable
class DataDependentInit(Protocol):
    """A network with a data-dependent initialisation (e.g. the rocket stem's thresholds):
    the training loop calls ``init_from_data(x)`` with training series spread over the set
    before the first step.  Must do nothing when already initialised (a loaded model)."""

    def init_from_data(self, x: Tensor) -> None: ...


@runtime_checkable
class FixedStem(Protocol):
    """A network whose first stage learns nothing (the rocket stem's features): training
    computes ``fixed_features`` once per series instead of once per step when nothing changes
    the input between epochs, and an ensemble of members that share the stage computes it once
    per input.  ``fixed_features`` returns None where the network has no such stage."""

    def fixed_features(self, x: Tensor) -> Tensor | None: ...

    def forward_features(self, f: Tensor) -> Tensor: ...

    def fixed_state(self) -> list[Tensor]: ...


def build_network(arch: str, options: Options, n_channels: int, n_timepoints: int,
                  n_classes: int) -> nn.Module:
    """One untrained network of architecture ``arch`` with validated ``options``."""
    return get_architecture(arch).cls(n_channels, n_timepoints, n_classes, **options.to_dict())
