"""The registry of architectures and presets: a leaf that imports nothing of tsformer's but
its errors, so any module can register into it without an import cycle (timm's pattern).

* An **architecture** is an ``nn.Module`` class taking ``(n_channels, n_timepoints,
  n_classes, **options)`` and its :class:`~tsformer.options.Options` record; register it with
  ``@register_model("name", options=MyOptions)`` beside the class.
* A **preset** is an architecture with defaults: model options, training options, the number
  of ensemble members, and optionally a data-scaled rule ``scale(shape) -> {"model": ...,
  "train": ..., "members": ...}`` that adjusts them to the training data's size (called as
  ``scale(shape, time_limit=seconds)`` when a run has a time limit to plan for), and a
  ``finish(shape, train, explicit)`` rule that adjusts the training options the user left
  alone once the user's overrides are known (e.g. a run shortened by ``epochs``).  Register
  it with :func:`register_preset`.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = ["ARCHITECTURES", "PRESETS", "Architecture", "DataShape", "Preset", "get_architecture",
           "get_preset", "register_model", "register_preset"]


@dataclass(frozen=True)
class DataShape:
    """The sizes a preset scales with.  ``n_train`` None: unknown (the preset's size-free
    defaults, as for a large training set)."""

    n_channels: int
    n_timepoints: int
    n_classes: int
    n_train: int | None = None

    @classmethod
    def of(cls, X: Any, n_classes: int) -> DataShape:
        """The shape of training data ``X (n_cases, n_channels, n_timepoints)``."""
        n, c, t = X.shape
        return cls(int(c), int(t), int(n_classes), int(n))


@dataclass(frozen=True)
class Architecture:
    name: str
    cls: Callable[..., Any]
    options: type  # an Options subclass


ValuesRule = Callable[[DataShape], Mapping[str, Any]]
#: ``finish(shape, train, explicit) -> train``: the training options once the user's overrides
#: are in (``explicit``: the names the user set, which it must leave alone).
FinishRule = Callable[[DataShape, dict[str, Any], set[str]], dict[str, Any]]


@dataclass(frozen=True)
class Preset:
    """Defaults for one architecture.  :meth:`values` gives them for data of a shape."""

    name: str
    arch: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    members: int = 1
    normalize: str = "none"
    description: str = ""
    scale: ValuesRule | None = None
    finish: FinishRule | None = None

    def values(self, shape: DataShape | None = None, time_limit: float | None = None
               ) -> dict[str, Any]:
        """``{"model", "train", "members", "normalize"}``: the static defaults, with the
        data-scaled rule's values on top when the training-set size is known (planned for
        ``time_limit`` seconds where one is given)."""
        out = {"model": copy.deepcopy(self.model), "train": copy.deepcopy(self.train),
               "members": self.members, "normalize": self.normalize}
        if self.scale is not None and shape is not None and shape.n_train is not None:
            scaled = (self.scale(shape) if time_limit is None
                      else self.scale(shape, time_limit=time_limit))
            out["model"].update(scaled.get("model", {}))
            out["train"].update(scaled.get("train", {}))
            out["members"] = scaled.get("members", out["members"])
        return out


ARCHITECTURES: dict[str, Architecture] = {}
PRESETS: dict[str, Preset] = {}


def _builtin() -> None:
    """The built-in architectures and presets register when :mod:`tsformer.models` is
    imported; a caller of the registry alone gets them on first use.  (A leaf cannot import
    the models statically: they import it.)"""
    if "seed" not in PRESETS:
        importlib.import_module("tsformer.models")


def register_model(name: str, *, options: type) -> Callable[[type], type]:
    """Class decorator: ``@register_model("seed_transformer", options=SeedOptions)``."""

    def add(cls: type) -> type:
        ARCHITECTURES[name] = Architecture(name, cls, options)
        return cls

    return add


def register_preset(name: str, *, arch: str, model: Mapping[str, Any] | None = None,
                    train: Mapping[str, Any] | None = None, members: int = 1,
                    normalize: str = "none", description: str = "",
                    scale: ValuesRule | None = None, finish: FinishRule | None = None
                    ) -> Preset:
    """Add (or replace) a preset.  Its options are checked when it is first resolved."""
    _builtin()
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    ARCHITECTURES[arch].options.check_names(model or {})
    preset = Preset(name, arch, dict(model or {}), dict(train or {}), members, normalize,
                    description, scale, finish)
    PRESETS[name] = preset
    return preset


def get_preset(name: str) -> Preset:
    _builtin()
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def get_architecture(name: str) -> Architecture:
    _builtin()
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]
