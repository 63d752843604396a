"""Training one network: the options (:class:`TrainConfig`), the loop (:func:`fit`), its
augmentations and the data-parallel helpers for ``torchrun``."""

from .augment import AUGMENTATIONS
from .config import TrainConfig
from .loop import History, fit, keras_validation_split, seed_everything

__all__ = ["AUGMENTATIONS", "History", "TrainConfig", "fit", "keras_validation_split",
           "seed_everything"]
