"""tsformer: transformer classifiers for time series on PyTorch."""

__version__ = "0.1.0"

from .errors import ConfigError, DataError, ModelDirError, TsformerError  # noqa: E402
from .models import create_model, register_preset  # noqa: E402

__all__ = [
    "ConfigError", "DataError", "ModelDirError", "TransformerClassifier", "TsformerError",
    "__version__", "create_model", "load", "register_preset",
]


def __getattr__(name: str) -> object:
    """``TransformerClassifier`` and ``load`` import scikit-learn, so only on first use."""
    if name in ("TransformerClassifier", "load"):
        from . import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'tsformer' has no attribute {name!r}")
