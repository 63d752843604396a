"""One exception family for user mistakes, so the CLI and server can answer them in one line."""


class TsformerError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class DataError(TsformerError, ValueError):
    """Bad or missing input data."""


class ModelDirError(TsformerError, ValueError):
    """A model directory that is missing, corrupt or does not fit the data."""


class ConfigError(TsformerError, ValueError):
    """An unknown preset, variant or hyperparameter."""


class TrainingError(TsformerError, RuntimeError):
    """Training that cannot give a usable model (e.g. the loss diverged to NaN/inf)."""
