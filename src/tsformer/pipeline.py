"""The one path: preset + data + overrides -> config -> model -> train -> evaluate -> save.

The CLI, the scikit-learn estimator, ``tune``, ``benchmark`` and the server are thin shells
over these functions; none of them merges options or builds a model on its own.

>>> cfg = resolve("patchformer", DataShape.of(X, n_classes=2), {"train": {"epochs": 5}})
>>> result = train(cfg, X, y_codes)
>>> metrics = evaluate(result.model, result.config, X_test, y_test_codes)
>>> save_run("runs/mine", result, test_metrics=metrics)
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import DataShape, RunConfig, check_overrides, resolve
from .device import resolve_device
from .errors import ConfigError, ModelDirError
from .evaluation import evaluate as _evaluate
from .inference import predict_logits
from .model_dir import (
    SAMPLE_NAME,
    FileContent,
    demo_sample,
    load_model_dir,
    model_card,
    read_history,
    save_model_dir,
)
from .models import Ensemble, count_parameters, looks_unnormalized
from .models.calibrated import uncalibrated
from .training import History, fit
from .training.loop import keras_validation_split

__all__ = ["DataShape", "RunConfig", "TrainResult", "calibrate", "check_overrides", "create_model",
           "evaluate", "load", "member_seed", "predict_logits", "resolve", "resume", "save_run",
           "train"]


#: Share of a time limit kept for what follows the training loop (calibration, wrapping up).
TIME_LIMIT_RESERVE = 0.05


def create_model(name: str, *, n_channels: int, n_timepoints: int, n_classes: int,
                 n_train: int | None = None, **overrides: Any) -> nn.Module:
    """Build preset ``name`` for data of this shape, exactly as training would (untrained).

    ``n_train``: the training-set size, which data-scaled presets (patchformer) scale with;
    omitted, their size-free defaults.  ``overrides``: model options, and ``members``."""
    members = overrides.pop("members", None)
    shape = DataShape(n_channels, n_timepoints, n_classes, n_train)
    return resolve(name, shape, {"model": overrides, "members": members}).build()


def member_seed(seed: int, i: int) -> int:
    """Seed of ensemble member ``i``: member 0 is the run's own seed (so a one-network run
    and member 0 are the same run); the others are drawn independent by SeedSequence."""
    if i == 0:
        return seed
    return int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint32)[0])


@dataclass
class TrainResult:
    """A trained model, the config it was trained with (the seed made concrete) and the
    history of each member."""

    model: nn.Module
    config: RunConfig
    histories: list[History]

    @property
    def interrupted(self) -> bool:
        return any(h.interrupted for h in self.histories)

    def summary(self) -> dict[str, Any]:
        """``metrics.json``'s training part: one history's summary, or each member's."""
        if len(self.histories) == 1:
            return self.histories[0].summary()
        members = [h.summary() for h in self.histories]
        return {"members": members, "interrupted": self.interrupted,
                "train_seconds": round(sum(m["train_seconds"] for m in members), 2)}

    def history_csv(self) -> str:
        if len(self.histories) == 1:
            return self.histories[0].to_csv()
        rows = [{"member": m, **r} for m, h in enumerate(self.histories) for r in h.rows]
        return History(rows=rows).to_csv()


def train(cfg: RunConfig, X: np.ndarray, y: np.ndarray, *,
          validation_data: tuple[np.ndarray, np.ndarray] | None = None,
          on_epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train the model ``cfg`` describes on ``X (n, C, T)`` and integer codes ``y``.

    Each ensemble member is an independent run: built and trained under its own seed
    (:func:`member_seed`) by the one training loop.  The caller's global random state is
    left as it was.  Ctrl-C (or SIGTERM, where the CLI maps it) keeps what was trained: the
    interrupted member's best weights, and no further members."""
    _warn_if_unnormalized(cfg, X)
    seed = cfg.train.seed
    if seed is None:  # scikit-learn's meaning of None: a fresh draw, recorded in the config
        seed = int(np.random.randint(np.iinfo(np.int32).max))
    cfg = replace(cfg, train=cfg.train.replace(seed=seed), calibration=None)
    device = resolve_device(cfg.train.device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    np_state = np.random.get_state()
    nets: list[nn.Module] = []
    histories: list[History] = []
    try:
        with torch.random.fork_rng(devices=cuda):
            limit, t0 = cfg.train.time_limit, time.perf_counter()
            if limit is not None and cfg.train.verbose and log is not None:
                log(f"time limit {limit:g} s: planned {cfg.members} network"
                    f"{'s' * (cfg.members > 1)} x {cfg.train.epochs} epochs; the run ends "
                    "at the limit with the model so far")
            for i in range(cfg.members):
                member_cfg = cfg.train.replace(seed=member_seed(seed, i))
                torch.manual_seed(member_cfg.seed)
                deadline = None
                if limit is not None:  # each member an equal share of the time left
                    left = t0 + (1 - TIME_LIMIT_RESERVE) * limit - time.perf_counter()
                    if nets and left <= 0:
                        break
                    deadline = time.perf_counter() + left / (cfg.members - i)
                net = cfg.build_network()
                if cfg.members > 1 and cfg.train.verbose and log is not None:
                    log(f"ensemble member {i + 1}/{cfg.members}")
                history = fit(net, X, y, member_cfg, validation_data=validation_data,
                              on_epoch_end=on_epoch_end, log=log, deadline=deadline)
                nets.append(net.eval())
                histories.append(history)
                if history.interrupted:
                    break
    finally:
        np.random.set_state(np_state)
    if len(nets) < cfg.members:
        if log is not None:
            why = "interrupted" if nets and histories[-1].interrupted else "time limit"
            log(f"{why}: keeping {len(nets)} of {cfg.members} ensemble members")
        cfg = replace(cfg, members=len(nets))
    model = nets[0] if len(nets) == 1 else Ensemble(nets)
    model, cfg = _calibrate_on_held_out(model.eval(), cfg, X, y, validation_data, log)
    return TrainResult(model.eval(), cfg, histories)


def calibrate(model: nn.Module, cfg: RunConfig, X: np.ndarray, y: np.ndarray, *,
              fitted_on: str = "user data", batch_size: int = 256
              ) -> tuple[nn.Module, RunConfig]:
    """Fit the temperature and conformal scores on held-out series ``X`` and codes ``y``
    (never seen in training), replacing any earlier calibration: the model behind the new
    temperature, and the config that records it (``config.json``'s ``"calibration"``)."""
    from .calibration import fit_calibration
    from .inference import refuse_non_finite

    if len(X) != len(y) or len(y) == 0:
        raise ConfigError(f"calibration needs series with one label each; got {len(X)} "
                          f"series and {len(y)} labels")
    net = uncalibrated(model)
    logits = refuse_non_finite(predict_logits(net, X, batch_size=batch_size,
                                              amp=cfg.train.amp), X)
    cal = fit_calibration(logits.numpy(), np.asarray(y), fitted_on)
    cfg = replace(cfg, calibration=cal)
    return cfg.calibrated(net).eval(), cfg


def held_out_rows(n: int, cfg: RunConfig) -> np.ndarray:
    """The training rows no network of ``cfg`` trained on: the validation split the training
    loop cuts (the same seeded shuffle), for an ensemble the rows in every member's split."""
    t = cfg.train
    if t.validation_split <= 0:
        return np.arange(0)
    rows: np.ndarray | None = None
    for i in range(cfg.members):
        rng = np.random.default_rng(member_seed(t.seed, i))
        idx = rng.permutation(n) if t.shuffle_before_split else np.arange(n)
        val = idx[keras_validation_split(n, t.validation_split):]
        rows = val if rows is None else np.intersect1d(rows, val)
    return np.sort(rows)


def _calibrate_on_held_out(model: nn.Module, cfg: RunConfig, X: np.ndarray, y: np.ndarray,
                           validation_data: tuple[np.ndarray, np.ndarray] | None,
                           log: Callable[[str], None] | None) -> tuple[nn.Module, RunConfig]:
    """After training: calibrate on the validation series when the run has some; else say
    so (cross-fitted held-out folds would cost training more networks)."""
    say = log if log is not None and cfg.train.verbose >= 1 else (lambda _msg: None)
    if validation_data is not None:
        Xv, yv, where = validation_data[0], validation_data[1], "validation"
    else:
        rows = held_out_rows(len(X), cfg)
        Xv, yv, where = np.asarray(X)[rows], np.asarray(y)[rows], "validation"
        if cfg.train.validation_split > 0 and cfg.members > 1:
            where = "validation (rows held out from every member)"
    if len(yv) == 0:
        say("calibration: no held-out series (validation_split=0), probabilities are not "
            "calibrated; fit a temperature on series kept out of training with tsformer "
            "calibrate RUN_DIR --data FILE (or clf.calibrate(X, y))")
        return model, cfg
    model, cfg = calibrate(model, cfg, Xv, yv, fitted_on=where)
    c = cfg.calibration
    say(f"calibration on {c.n} held-out series: temperature {c.temperature:.3g}, ECE "
        f"{c.ece_before:.4f} -> {c.ece_after:.4f}, NLL {c.nll_before:.4f} -> "
        f"{c.nll_after:.4f}" + (f" ({c.reason})" if c.reason else ""))
    return model, cfg


class NotNormalizedWarning(UserWarning):
    """Training data far from z-normalised for a model that does not normalise its input."""


def _warn_if_unnormalized(cfg: RunConfig, X: np.ndarray) -> None:
    if cfg.normalize != "none" or cfg.model.to_dict().get("instance_norm"):
        return
    why = looks_unnormalized(np.asarray(X))
    if why:
        warnings.warn(f"the training series are not z-normalised ({why}); the {cfg.preset} "
                      "model takes them as they are: consider normalize='zscore' (--set "
                      "normalize=zscore), which the model then applies to every input",
                      NotNormalizedWarning, stacklevel=3)


def resume(path: str | os.PathLike, X: np.ndarray, y: np.ndarray, *,
           epochs: int | None = None, log: Callable[[str], None] | None = None
           ) -> TrainResult:
    """Go on training the network saved in run directory ``path`` (an interrupted run, or one
    to extend to ``epochs``) on the same data: from the epoch after its last, the schedule
    where it stopped (see :func:`tsformer.training.fit`'s ``resume``)."""
    model, cfg = load_model_dir(path, device="cpu")
    model, cfg = uncalibrated(model), replace(cfg, calibration=None)  # refitted after
    if cfg.members > 1:
        raise ConfigError(f"{path} holds an ensemble of {cfg.members} networks; resuming is "
                          "for one network (train the ensemble again with --config)")
    history = read_history(path)
    if not history.rows:
        raise ModelDirError(f"{path} has no training history (history.csv) to resume from")
    if epochs is not None:
        cfg = replace(cfg, train=cfg.train.replace(epochs=epochs))
    if len(history.rows) >= cfg.train.epochs:
        raise ConfigError(f"{path} already trained {len(history.rows)} of {cfg.train.epochs} "
                          "epochs; ask for more (--epochs N)")
    model.train()
    new = fit(model, X, y, cfg.train, log=log, resume=history)
    model, cfg = _calibrate_on_held_out(model.eval(), cfg, X, y, None, log)
    return TrainResult(model.eval(), cfg, [new])


def evaluate(model: nn.Module, cfg: RunConfig, X: np.ndarray, y: np.ndarray, *,
             batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, loss, confusion matrix and per-class scores on codes ``y``, in the
    precision the model trained in.  Outputs that are not finite are refused (one DataError
    naming the series), so metrics are always valid JSON."""
    return _evaluate(model, X, y, cfg.classes, batch_size=batch_size, amp=cfg.train.amp)


def save_run(path: str | os.PathLike, result: TrainResult, *,
             test_metrics: dict[str, Any] | None = None, test_data: tuple[Any, Any] | None = None,
             plots: bool = True, overwrite: bool = False) -> Path:
    """Write a run directory: the model directory (config.json, model.safetensors, README.md)
    plus metrics.json, history.csv and, with ``plots``, training_curves.png; with test
    metrics a confusion_matrix.png, and with ``test_data`` (series, labels) the demo page's
    sample.json.  Atomic: nothing half-written is ever left."""
    from .plots import plot_confusion, plot_history, plot_reliability

    cfg, model = result.config, result.model
    metrics: dict[str, Any] = {"dataset": cfg.data.get("name"), "preset": cfg.preset,
                               **result.summary()}
    if cfg.calibration is not None:
        metrics["calibration"] = cfg.calibration.summary()
    card_metrics = None
    if test_metrics is not None:
        metrics["test"] = test_metrics
        card_metrics = dict(test_metrics, split="test")
    elif "val_accuracy" in metrics:
        card_metrics = {"accuracy": metrics["val_accuracy"], "loss": metrics["val_loss"],
                        "split": "validation (held out from the training data)"}
    extra: dict[str, FileContent] = {
        "metrics.json": json.dumps(metrics, indent=2) + "\n",
        "history.csv": result.history_csv(),
    }
    if plots:
        title = " - ".join(filter(None, [cfg.data.get("name"), cfg.preset] + (
            [f"test accuracy {test_metrics['accuracy']:.4f}"] if test_metrics else [])))
        extra["training_curves.png"] = lambda p: plot_history(result.histories, p, title)
        if test_metrics is not None:
            extra["confusion_matrix.png"] = lambda p: plot_confusion(
                test_metrics["confusion_matrix"], cfg.classes, p, f"{title}: test confusion "
                "matrix")
            if "reliability" in test_metrics:
                extra["reliability.png"] = lambda p: plot_reliability(
                    test_metrics["reliability"], p, f"{title}: test reliability")
    if test_data is not None:
        extra[SAMPLE_NAME] = demo_sample(*test_data)
    card = model_card(cfg, count_parameters(model), card_metrics)
    return save_model_dir(path, model, cfg, card=card, extra_files=extra, overwrite=overwrite)


def load(path: str | os.PathLike, *, device: str = "auto") -> tuple[nn.Module, RunConfig]:
    """A trained model (eval mode, on ``device``) and its config from a model directory."""
    return load_model_dir(path, device=resolve_device(device))


def default_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
