"""tsformer: transformer classifiers for time series on PyTorch."""

__version__ = "0.1.0"

from .errors import ConfigError, DataError, ModelDirError, TsformerError  # noqa: E402
from .models import create_model, register_preset  # noqa: E402

__all__ = [
    "ConfigError", "DataError", "ModelDirError", "TsformerError", "__version__", "create_model",
    "register_preset",
]
