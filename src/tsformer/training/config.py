"""The training options: one typed record, saved in ``config.json`` under ``"train"``.

Defaults reproduce the seed's ``model.fit`` (Keras semantics); presets override them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..device import parse_device
from ..options import Options, option

AugmentName = Literal["jitter", "scale", "shift", "warp"]


@dataclass
class TrainConfig(Options):
    """Everything that shapes a training run."""

    group = "training option"

    optimizer: Literal["adam", "adamw"] = option("adam", "Adam, or AdamW (decoupled decay)")
    lr: float = option(1e-4, "peak learning rate", low=0.0, high=10.0, low_open=True)
    eps: float = option(1e-7, "the optimizer's epsilon (Keras' Adam default)", low=0.0,
                        high=1.0, low_open=True)
    betas: tuple[float, float] = option((0.9, 0.999), "the optimizer's moment decays",
                                        low=0.0, high=1.0, high_open=True)
    weight_decay: float = option(0.0, "weight decay", low=0.0, high=10.0)
    batch_size: int = option(64, "series per optimiser step", low=1, high=1_000_000)
    epochs: int = option(200, "maximum passes over the training data", low=1, high=1_000_000)
    validation_split: float = option(
        0.2, "share of the training data held out for validation (taken from the end, as "
        "Keras does); 0: none", low=0.0, high=1.0, high_open=True)
    shuffle_before_split: bool = option(
        True, "shuffle the training data once before the validation split (as the seed does)")
    patience: int | None = option(
        10, "epochs without validation-loss improvement before stopping; null: never",
        low=0, high=1_000_000)
    restore_best: bool = option(True, "end with the weights of the best validation epoch")
    schedule: Literal["constant", "cosine", "onecycle"] = option(
        "constant", "learning-rate schedule after warm-up: constant, cosine to 0, or cosine "
        "to 1/1000 of the peak (onecycle)")
    warmup: float = option(0.0, "share of the run's steps spent warming the learning rate up "
                           "linearly", low=0.0, high=1.0)
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy", low=0.0,
                                    high=1.0, high_open=True)
    grad_clip: float | None = option(None, "clip the gradient norm to this; null: off",
                                     low=0.0, high=1e9, low_open=True)
    class_weight: Literal["none", "balanced"] = option(
        "none", "balanced: weight each class's loss by n / (classes x its count), for "
        "imbalanced labels (scikit-learn's rule); none: every series counts the same")
    augment: list[AugmentName] = option([], "augmentations applied to each batch, in order")
    augment_views: int = option(
        0, "0: augmentations drawn afresh at every step; N: N augmented copies of each series "
        "made once, and each epoch reads the series or one of its copies at random (with a "
        "fixed stem such as the rocket stem, its features are then computed once, not at "
        "every step)",
        low=0, high=64)
    mixup: float = option(0.0, "Beta(a, a) of mixup (pairs of series and labels blended); "
                          "0: off", low=0.0, high=1000.0)
    time_limit: float | None = option(
        None, "seconds for the whole run (all ensemble members): presets with a data-scaled "
        "rule plan epochs and members to fit it, and training ends at it with the model so "
        "far; null: none", low=0.0, high=1e8, low_open=True)
    seed: int | None = option(0, "seeds initialisation, shuffles, augmentation and dropout; "
                              "null: a fresh seed each run", low=0, high=2**63 - 1)
    device: str = option("auto", "auto (CUDA when available), cpu, cuda, cuda:N",
                         check=parse_device)
    amp: Literal["auto", "bf16", "off"] = option(
        "auto", "bfloat16 autocast: auto on CUDA only, bf16 on any device, off never")
    compile: bool = option(False, "torch.compile the network")
    verbose: int = option(1, "0 silent; 1 a line per epoch (and a progress bar on a "
                          "terminal)", low=0, high=2)
