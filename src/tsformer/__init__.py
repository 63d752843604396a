"""tsformer: transformer classifiers for time series on PyTorch.

The names below load on first use (PEP 562), so ``import tsformer`` and the ``tsformer``
command start without importing torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import ConfigError, DataError, ModelDirError, TrainingError, TsformerError

#: Public name -> the module that defines it.
_LAZY = {
    "TransformerClassifier": "estimator", "load": "estimator",
    "RunConfig": "config", "resolve": "config", "create_model": "pipeline",
    "register_model": "registry", "register_preset": "registry",
}

__all__ = ["ConfigError", "DataError", "ModelDirError", "TrainingError", "TsformerError",
           "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'tsformer' has no attribute {name!r}")
