"""tsformer: transformer classifiers for time series on PyTorch."""

from ._version import __version__
from .errors import ConfigError, DataError, ModelDirError, TsformerError  # noqa: E402
from .pipeline import RunConfig, create_model, resolve  # noqa: E402
from .registry import register_model, register_preset  # noqa: E402

__all__ = [
    "ConfigError", "DataError", "ModelDirError", "RunConfig", "TransformerClassifier",
    "TsformerError", "__version__", "create_model", "load", "register_model", "register_preset",
    "resolve",
]


def __getattr__(name: str) -> object:
    """``TransformerClassifier`` and ``load`` import scikit-learn, so only on first use."""
    if name in ("TransformerClassifier", "load"):
        from . import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'tsformer' has no attribute {name!r}")
