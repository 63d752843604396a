"""The one run configuration: preset + data shape + overrides -> a validated, versioned record.

:func:`resolve` is the only place where a preset's defaults, its data-scaled rule and the
user's overrides meet, in that order; the CLI, the estimator, ``tune``, ``benchmark`` and the
server all go through it.  :class:`RunConfig` *is* the ``config.json`` schema of a model
directory (``to_dict``/``from_dict``), so a saved model says exactly what was built and a
saved config trains the same model again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .calibration import Calibration
from .errors import ConfigError
from .models import Ensemble, ZNormalized, build_network
from .models.calibrated import TemperatureScaled
from .options import Options
from .registry import DataShape, get_architecture, get_preset
from .training.config import TrainConfig

FORMAT = "tsformer"
FORMAT_VERSION = 2
#: Upper bounds on what a config may ask to build, so a corrupt or hostile file fails on
#: reading, not in a huge allocation.
MAX_CHANNELS, MAX_TIMEPOINTS, MAX_CLASSES, MAX_MEMBERS = 10_000, 1_000_000, 100_000, 64
#: Values in one series (channels x points): 40 MB of float32.
MAX_SERIES_VALUES = 10_000_000
#: Keys that a config file holds besides the ones :class:`RunConfig` reads (written for
#: people and tools: they never change what is built).
INFORMATIONAL_KEYS = ("format", "format_version", "tsformer_version", "n_parameters")

__all__ = ["FORMAT", "FORMAT_VERSION", "DataShape", "RunConfig", "check_overrides", "resolve"]


def _int_in(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} must be a whole number in [{low:,}, {high:,}], "
                          f"not {value!r}")
    return value


#: Overrides beside the model and training options: ensemble members and normalisation.
TOP_LEVEL = ("members", "normalize")
NORMALIZATIONS = ("none", "zscore")


def _check_normalize(value: Any) -> None:
    if value not in NORMALIZATIONS:
        raise ConfigError(f"normalize must be 'none' or 'zscore' (each series and channel to "
                          f"zero mean and unit variance, inside the model), not {value!r}")


def _check_classes(classes: Any) -> list[Any]:
    if not isinstance(classes, list) or len(classes) < 2:
        raise ConfigError("classes must list at least two labels")
    classes = [c.item() if hasattr(c, "item") and hasattr(c, "dtype") else c for c in classes]
    for c in classes:
        if not isinstance(c, (str, int, float, bool)) or (isinstance(c, float)
                                                          and not math.isfinite(c)):
            raise ConfigError(f"classes must be strings or finite numbers, not {c!r}")
    if len({str(c) for c in classes}) != len(classes):  # predictions are keyed by str(class)
        raise ConfigError(f"classes must be distinct, not {classes!r}")
    if len(classes) > MAX_CLASSES:
        raise ConfigError(f"at most {MAX_CLASSES:,} classes are supported, not {len(classes):,}")
    return classes


@dataclass
class RunConfig:
    """Everything that defines a trained model, validated on construction."""

    preset: str
    arch: str
    model: Options
    train: TrainConfig
    n_channels: int
    n_timepoints: int
    classes: list[Any]
    members: int = 1
    normalize: str = "none"
    data: dict[str, Any] = field(default_factory=dict)
    #: Temperature and conformal scores fitted on held-out series (None: not calibrated).
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        arch = get_architecture(self.arch)
        if not isinstance(self.model, arch.options):
            raise ConfigError(f"model options of architecture {self.arch!r} must be "
                              f"{arch.options.__name__}")
        _int_in("input n_channels", self.n_channels, 1, MAX_CHANNELS)
        _int_in("input n_timepoints", self.n_timepoints, 1, MAX_TIMEPOINTS)
        _int_in("members", self.members, 1, MAX_MEMBERS)
        _check_normalize(self.normalize)
        if self.n_channels * self.n_timepoints > MAX_SERIES_VALUES:
            raise ConfigError(f"a series of {self.n_channels:,} channels x "
                              f"{self.n_timepoints:,} points is over the limit of "
                              f"{MAX_SERIES_VALUES:,} values per series")
        self.classes = _check_classes(self.classes)
        if not isinstance(self.data, dict):
            raise ConfigError("data must be an object (name, source)")
        if self.calibration is not None and not isinstance(self.calibration, Calibration):
            raise ConfigError("calibration must be a tsformer.calibration.Calibration")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def build_network(self) -> nn.Module:
        """One untrained network (one ensemble member) of this configuration, behind the
        per-series normalisation when ``normalize`` asks for it (so it is saved with the
        weights and applied at prediction time)."""
        net = build_network(self.arch, self.model, self.n_channels, self.n_timepoints,
                            self.n_classes)
        return ZNormalized(net) if self.normalize == "zscore" else net

    def build(self) -> nn.Module:
        """The untrained model: one network, or an :class:`Ensemble` of ``members``; behind
        the fitted temperature when the config is calibrated with one (T != 1)."""
        model = (self.build_network() if self.members == 1 else
                 Ensemble([self.build_network() for _ in range(self.members)]))
        return self.calibrated(model)

    def calibrated(self, model: nn.Module) -> nn.Module:
        """``model`` (an uncalibrated network or ensemble of this config) behind this
        config's temperature, or as it is when there is none."""
        t = self.calibration.temperature if self.calibration is not None else 1.0
        return TemperatureScaled(model, t) if t != 1.0 else model

    @property
    def shape(self) -> DataShape:
        return DataShape(self.n_channels, self.n_timepoints, self.n_classes)

    def to_dict(self) -> dict[str, Any]:
        from ._version import __version__

        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "tsformer_version": __version__,
            "preset": self.preset, "arch": self.arch, "members": self.members,
            "normalize": self.normalize,
            "model": self.model.to_dict(), "train": self.train.to_dict(),
            "input": {"n_channels": self.n_channels, "n_timepoints": self.n_timepoints,
                      "layout": "(n_cases, n_channels, n_timepoints)"},
            "classes": list(self.classes), "data": dict(self.data),
            **({"calibration": self.calibration.to_dict()} if self.calibration else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """A config as :meth:`to_dict` writes it; every field checked, one line per fault."""
        if not isinstance(d, Mapping):
            raise ConfigError("a config must be a JSON object")
        if d.get("format") != FORMAT:
            raise ConfigError('not a tsformer config (missing "format": "tsformer")')
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            if isinstance(version, int) and not isinstance(version, bool) \
                    and version > FORMAT_VERSION:
                raise ConfigError(f"saved by a newer tsformer (format {version}); "
                                  "upgrade tsformer")
            raise ConfigError(f"format_version {version!r} is not supported (this tsformer "
                              f"reads {FORMAT_VERSION}); retrain the model with this version")
        known = {"preset", "arch", "members", "normalize", "model", "train", "input", "classes",
                 "data", "calibration",
                 *INFORMATIONAL_KEYS}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}")
        for key in ("preset", "arch", "model", "train", "input", "classes"):
            if key not in d:
                raise ConfigError(f"config lacks {key!r}")
        shape = d["input"]
        if not isinstance(shape, Mapping):
            raise ConfigError("config input must be an object with n_channels and n_timepoints")
        arch = get_architecture(d["arch"])
        if not isinstance(d["preset"], str):
            raise ConfigError(f"config preset must be a name, not {d['preset']!r}")
        return cls(
            preset=d["preset"], arch=d["arch"], model=arch.options.from_dict(d["model"]),
            train=TrainConfig.from_dict(d["train"]), n_channels=shape.get("n_channels"),
            n_timepoints=shape.get("n_timepoints"), classes=d["classes"],
            members=d.get("members", 1), normalize=d.get("normalize", "none"),
            data=d.get("data", {}),
            calibration=Calibration.from_dict(d["calibration"]) if d.get("calibration")
            is not None else None,
        )


def check_overrides(preset: str, overrides: Mapping[str, Any] | None) -> None:
    """Each override alone against its option's type and range, before any data is read:
    ``{"model": {...}, "train": {...}, "members": M, "normalize": N}``."""
    p = get_preset(preset)
    over = _split_overrides(overrides)
    get_architecture(p.arch).options.check_values(over["model"])
    TrainConfig.check_values(over["train"])
    if over["members"] is not None:
        _int_in("members", over["members"], 1, MAX_MEMBERS)
    if over["normalize"] is not None:
        _check_normalize(over["normalize"])


def _split_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    over = dict(overrides or {})
    unknown = sorted(set(over) - {"model", "train", *TOP_LEVEL})
    if unknown:
        raise ConfigError(f"unknown override group(s) {', '.join(unknown)}; use model, train, "
                          f"{' or '.join(TOP_LEVEL)}")
    for key in ("model", "train"):
        if not isinstance(over.get(key) or {}, Mapping):
            raise ConfigError(f"{key} overrides must be an object of name: value")
    return {"model": dict(over.get("model") or {}), "train": dict(over.get("train") or {}),
            **{k: over.get(k) for k in TOP_LEVEL}}


def resolve(preset: str, shape: DataShape, overrides: Mapping[str, Any] | None = None, *,
            classes: list[Any] | None = None, data: Mapping[str, Any] | None = None
            ) -> RunConfig:
    """Preset defaults < the preset's data-scaled values < ``overrides``, validated.

    ``overrides``: ``{"model": {...}, "train": {...}, "members": M, "normalize": N}``.
    ``classes`` default to ``0..n_classes-1`` (a model built without labels, e.g. for
    ``summary``)."""
    p = get_preset(preset)
    arch = get_architecture(p.arch)
    if not isinstance(shape, DataShape):
        raise ConfigError(f"shape must be a DataShape (DataShape.of(X, n_classes)), not "
                          f"{type(shape).__name__}")
    _int_in("n_channels", shape.n_channels, 1, MAX_CHANNELS)
    _int_in("n_timepoints", shape.n_timepoints, 1, MAX_TIMEPOINTS)
    _int_in("n_classes", shape.n_classes, 2, MAX_CLASSES)  # before a list of that size
    if shape.n_train is not None:
        _int_in("n_train", shape.n_train, 1, 10**9)
    over = _split_overrides(overrides)
    values = p.values(shape, time_limit=over["train"].get("time_limit"))
    model = arch.options.from_dict({**values["model"], **over["model"]})
    model = model.resolved(shape.n_channels, shape.n_timepoints)
    train = TrainConfig.from_dict({**values["train"], **over["train"]})
    if p.finish is not None and shape.n_train is not None:  # on checked values
        train = TrainConfig.from_dict(p.finish(shape, train.to_dict(), set(over["train"])))
    members = over["members"] if over["members"] is not None else values["members"]
    normalize = over["normalize"] if over["normalize"] is not None else values["normalize"]
    return RunConfig(preset=p.name, arch=p.arch, model=model, train=train,
                     n_channels=shape.n_channels, n_timepoints=shape.n_timepoints,
                     classes=list(classes) if classes is not None else
                     list(range(shape.n_classes)),
                     members=members, normalize=normalize, data=dict(data or {}))
