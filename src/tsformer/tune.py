"""Hyperparameter search on Optuna: ``tsformer tune --dataset NAME --preset P --trials N``.

Search spaces are plain data (:data:`SEARCH_SPACES`), one per preset, split into ``model``
options (constructor arguments of the preset) and ``train`` options (:class:`TrainConfig`
fields).  A preset without an entry is searched over :data:`GENERIC_TRAIN_SPACE` only, so a
new preset is tunable the day it is registered; its author adds a ``model`` space here (or at
run time with :func:`register_search_space`) to search its architecture too.

Trials are scored on a validation split carved out of the *training* data (the test split is
never touched), pruned by Optuna's ``MedianPruner`` from the per-epoch validation loss, and
stored in an RDB: a SQLite file by default, or any Optuna storage URL (PostgreSQL, MySQL) that
lets many workers on many machines share one study (``docs/scaling.md``).
"""

from __future__ import annotations

import csv
import io
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, DataError

if TYPE_CHECKING:
    import optuna

#: One parameter: ``{"type": "float", "low": 1e-5, "high": 1e-2, "log": True}``,
#: ``{"type": "int", "low": 1, "high": 6}`` (optional ``"step"``/``"log"``) or
#: ``{"type": "categorical", "choices": [...]}`` (JSON scalars only).
ParamSpec = dict[str, Any]

#: Training options worth searching for any preset (TrainConfig field -> spec).
GENERIC_TRAIN_SPACE: dict[str, ParamSpec] = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "optimizer": {"type": "categorical", "choices": ["adam", "adamw"]},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    "schedule": {"type": "categorical", "choices": ["constant", "cosine", "onecycle"]},
    "label_smoothing": {"type": "float", "low": 0.0, "high": 0.2},
}

#: Search spaces by preset: ``{"model": {option: spec}, "train": {option: spec}}``.  A missing
#: ``train`` section means :data:`GENERIC_TRAIN_SPACE`; a missing ``model`` section, none.
SEARCH_SPACES: dict[str, dict[str, dict[str, ParamSpec]]] = {
    "seed": {
        "model": {
            "head_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256]},
            "num_heads": {"type": "categorical", "choices": [1, 2, 4, 8]},
            "ff_dim": {"type": "categorical", "choices": [2, 4, 8, 16, 32]},
            "num_blocks": {"type": "int", "low": 1, "high": 6},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5},
            "mlp_dropout": {"type": "float", "low": 0.0, "high": 0.6},
        },
        "train": {
            "lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
            "schedule": {"type": "categorical", "choices": ["constant", "cosine", "onecycle"]},
            "label_smoothing": {"type": "float", "low": 0.0, "high": 0.2},
        },
    },
}

DEFAULT_DB = "tsformer-tune.db"


def register_search_space(preset: str, model: Mapping[str, ParamSpec] | None = None,
                          train: Mapping[str, ParamSpec] | None = None) -> None:
    """Declare (or replace) the search space of ``preset``; checked when a search starts."""
    space: dict[str, dict[str, ParamSpec]] = {}
    if model is not None:
        space["model"] = dict(model)
    if train is not None:
        space["train"] = dict(train)
    SEARCH_SPACES[preset] = space


def search_space(preset: str) -> dict[str, dict[str, ParamSpec]]:
    """The space searched for ``preset``, with defaults filled in and every entry checked."""
    from .registry import get_architecture, get_preset
    from .training import TrainConfig

    spec = get_preset(preset)  # unknown preset -> ConfigError listing the presets
    declared = SEARCH_SPACES.get(preset, {})
    space = {"model": dict(declared.get("model", {})),
             "train": dict(declared.get("train", GENERIC_TRAIN_SPACE))}
    model_fields = set(get_architecture(spec.arch).options.names())
    for section, known in (("model", model_fields), ("train", set(TrainConfig.names()))):
        for name, p in space[section].items():
            if name not in known:
                raise ConfigError(f"search space of {preset!r}: {section} option {name!r} does "
                                  f"not exist; options: {', '.join(sorted(known))}")
            _check_spec(f"{preset}.{section}.{name}", p)
    clash = set(space["model"]) & set(space["train"])
    if clash:  # Optuna parameter names are flat
        raise ConfigError(f"search space of {preset!r} names {', '.join(sorted(clash))} in "
                          "both model and train")
    return space


def _check_spec(where: str, p: ParamSpec) -> None:
    kind = p.get("type")
    if kind == "categorical":
        choices = p.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: a categorical needs a non-empty 'choices' list")
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise ConfigError(f"{where}: choices must be JSON scalars (Optuna stores them)")
    elif kind in ("float", "int"):
        low, high = p.get("low"), p.get("high")
        if low is None or high is None or not low < high:
            raise ConfigError(f"{where}: needs 'low' < 'high'")
        if p.get("log") and low <= 0:
            raise ConfigError(f"{where}: a log-scale range must be positive")
    else:
        raise ConfigError(f"{where}: type must be 'float', 'int' or 'categorical', not {kind!r}")


def suggest(trial: optuna.Trial, space: dict[str, dict[str, ParamSpec]]
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Draw one configuration: ``(model_overrides, train_overrides)``."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for section, params in space.items():
        for name, p in params.items():
            if p["type"] == "categorical":
                out[section][name] = trial.suggest_categorical(name, p["choices"])
            elif p["type"] == "int":
                out[section][name] = trial.suggest_int(name, p["low"], p["high"],
                                                       step=p.get("step", 1),
                                                       log=p.get("log", False))
            else:
                out[section][name] = trial.suggest_float(name, p["low"], p["high"],
                                                         step=p.get("step"),
                                                         log=p.get("log", False))
    return out["model"], out["train"]


def split_validation(X: np.ndarray, y: np.ndarray, fraction: float = 0.2, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training data -> (X_fit, y_fit, X_val, y_val), stratified by class.

    The same split for every trial and every worker (fixed seed), so scores are comparable;
    each class with >= 2 series keeps at least one on either side.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation split must be in (0, 1), not {fraction}")
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = min(len(idx) - 1, max(1, int(round(len(idx) * fraction))))
        val.append(idx[:k])
    i_val = np.sort(np.concatenate(val))
    i_fit = np.setdiff1d(np.arange(len(X)), i_val)
    if len(i_val) == 0 or len(i_fit) == 0:
        raise DataError(f"{len(X)} training series are too few for a {fraction} validation split")
    return X[i_fit], y[i_fit], X[i_val], y[i_val]


def open_study(storage: str, study_name: str, *, pruner: optuna.pruners.BasePruner | None = None,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create or join a study; many processes may call this on one storage at once."""
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if storage.startswith("sqlite"):  # SQLite serialises writers: wait instead of failing
        engine_kwargs = {"connect_args": {"timeout": 60}}
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # A worker that dies (machine lost, kill -9) stops beating: its RUNNING trial
                # is marked FAIL after the grace period instead of counting as running forever.
                rdb = optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs,
                                                 heartbeat_interval=60, grace_period=180)
            return optuna.create_study(
                storage=rdb, study_name=study_name, direction="minimize", load_if_exists=True,
                pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5,
                                                             n_warmup_steps=2),
                sampler=sampler)
        except (ImportError, ValueError, TypeError) as e:  # a URL no driver can open
            raise ConfigError(f"cannot open the study storage {safe_url(storage)} "
                              f"({str(e).splitlines()[0][:200]}); use sqlite:///PATH or an "
                              "installed database driver's URL") from None
        except SQLAlchemyError as e:
            # Workers started together on a new database race to create its schema; the
            # loser finds it created a moment later.
            if attempt == 4:
                first = str(e).splitlines()[0][:200]
                raise ConfigError(f"cannot open the study storage {safe_url(storage)} "
                                  f"({first})") from None
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def run_tune(
    X: np.ndarray, y: np.ndarray, *, preset: str, n_trials: int, storage: str,
    study_name: str, epochs: int = 20, validation_split: float = 0.2, seed: int = 0,
    device: str = "auto", timeout: float | None = None,
    pruner: optuna.pruners.BasePruner | None = None, log: Callable[[str], None] | None = None,
) -> optuna.Study:
    """Run trials until the study holds ``n_trials`` (counting every worker's) and return it.

    ``X (n, C, T)`` and integer codes ``y`` are *training* data only; a fixed validation split
    of them scores each trial (best validation loss, minimised).
    """
    import optuna
    import torch

    from .config import DataShape, resolve
    from .pipeline import train

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    space = search_space(preset)
    Xf, yf, Xv, yv = split_validation(np.asarray(X, np.float32), np.asarray(y, np.int64),
                                      validation_split, seed)
    n_classes = int(np.max(y)) + 1
    # Trials train what the preset builds for data of this size (e.g. patchformer's
    # small-data stem), one network each: an ensemble's members share these options.
    shape = DataShape.of(Xf, n_classes)
    # Trial outcomes are reported by `announce` below, one line each; Optuna's own warnings
    # would add a traceback for every failed or interrupted trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(storage, study_name, pruner=pruner)
    for key, value in (("preset", preset), ("n_timepoints", int(X.shape[2]))):
        have = study.user_attrs.get(key)
        if have is None:
            study.set_user_attr(key, value)
        elif have != value:
            raise ConfigError(f"study {study_name!r} was started with {key} {have!r}, not "
                              f"{value!r}; use another --study name")
    full = DataShape.of(X, n_classes)
    study.set_user_attr("data", {"n_channels": full.n_channels, "n_timepoints":
                                 full.n_timepoints, "n_classes": full.n_classes,
                                 "n_train": full.n_train})  # best_config scales by it

    def objective(trial: optuna.Trial) -> float:
        model_over, train_over = suggest(trial, space)
        trial.set_user_attr("model", model_over)
        trial.set_user_attr("train", train_over)
        # same seed for every trial (the same initial draw): fairer comparisons
        cfg = resolve(preset, shape, {
            "model": model_over, "members": 1,
            "train": {**train_over, "epochs": epochs, "seed": seed, "device": device,
                      "verbose": 0}})
        pruned_at: list[int] = []

        def report(epoch: int, row: dict[str, float]) -> bool:
            trial.report(row["val_loss"], epoch)
            if trial.should_prune():
                pruned_at.append(epoch)
                return True
            return False

        result = train(cfg, Xf, yf, validation_data=(Xv, yv), on_epoch_end=report)
        history = result.histories[0]
        if history.interrupted:
            raise KeyboardInterrupt
        if pruned_at:
            raise optuna.TrialPruned(f"pruned at epoch {pruned_at[0]}")
        best = min(history.rows, key=lambda r: r["val_loss"])
        trial.set_user_attr("val_accuracy", best["val_accuracy"])
        trial.set_user_attr("best_epoch", int(best["epoch"]))
        return float(best["val_loss"])

    def announce(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        if t.state == optuna.trial.TrialState.COMPLETE:
            log(f"trial {t.number}: val_loss {t.value:.4f} val_accuracy "
                f"{t.user_attrs.get('val_accuracy', float('nan')):.4f} ({_brief(t.params)})")
        elif t.state == optuna.trial.TrialState.PRUNED:
            log(f"trial {t.number}: pruned after epoch {t.last_step}")
        else:
            log(f"trial {t.number}: {t.state.name.lower()}")

    # Trials that ran to an answer count toward the target; one interrupted (Ctrl-C) or failed
    # does not, so resuming a study still runs n_trials.  Other workers' running trials
    # count too when deciding to stop (else each would finish one more); a killed worker's
    # stops counting once its heartbeat lapses (open_study).
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=counted))
    remaining = n_trials - done
    if remaining <= 0:
        log(f"study {study_name!r} already holds {done} finished trials (target {n_trials})")
        return study
    log(f"study {study_name!r}: {done} finished trials so far, target {n_trials}; "
        f"{len(Xf)} fit / {len(Xv)} validation series, {epochs} epochs per trial")
    stop_at_target = optuna.study.MaxTrialsCallback(
        n_trials, states=(*counted, optuna.trial.TrialState.RUNNING))
    study.optimize(objective, n_trials=remaining, timeout=timeout,
                   callbacks=[announce, stop_at_target],
                   catch=(torch.cuda.OutOfMemoryError,))
    return study


def _brief(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    import optuna

    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def best_config(study: optuna.Study, preset: str) -> dict[str, Any]:
    """The best trial as a config file for ``tsformer train --config``.

    ``model`` holds every model option (not only the searched ones), so the file still means
    the same thing if the preset's defaults change; ``train`` holds the preset's training
    options with the searched values and the preset's full epoch budget (not the shorter
    one used per trial), as the preset scales them for the tuned data's size (the study
    records it); ``members`` is the preset's for that size.
    """
    from .config import DataShape, resolve

    if not _completed(study):
        raise ConfigError(f"no trial of study {study.study_name!r} has completed yet "
                          f"({len(study.trials)} pruned/failed/running); run more trials")
    best = study.best_trial
    data = study.user_attrs.get("data")
    shape = (DataShape(**data) if isinstance(data, dict)
             else DataShape(1, int(study.user_attrs.get("n_timepoints", 500)), 2))
    cfg = resolve(preset, shape, {"model": best.user_attrs.get("model", {}),
                                  "train": best.user_attrs.get("train", {})})
    train = {k: v for k, v in cfg.train.to_dict().items()
             if k not in ("seed", "device", "verbose")}
    return {"preset": preset, "members": cfg.members, "model": cfg.model.to_dict(),
            "train": train}


def plot_summary(study: optuna.Study, path: str | os.PathLike) -> None:
    """Optimisation history and parameter importances, side by side, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from matplotlib.ticker import MaxNLocator

    done = _completed(study)
    pruned = [t for t in study.trials
              if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    if done:
        xs = [t.number for t in done]
        vs = [float(t.value) for t in done]
        ax1.scatter(xs, vs, s=18, label="completed")
        ax1.step(xs, np.minimum.accumulate(vs), where="post", color="C3", label="best so far")
    if pruned:
        ax1.scatter([t.number for t in pruned],
                    [t.intermediate_values[t.last_step] for t in pruned],
                    marker="x", color="0.6", label="pruned (last report)")
    ax1.set(title=f"optimisation history ({len(study.trials)} trials)", xlabel="trial",
            ylabel="validation loss")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    if done or pruned:
        ax1.legend(fontsize=8)
    ax2.set_title("parameter importances (fANOVA)")
    importances: dict[str, float] = {}
    if len(done) >= 2:
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (RuntimeError, ValueError) as e:  # e.g. every completed trial drew one value
            ax2.text(0.5, 0.5, f"not available: {e}", ha="center", wrap=True)
    if importances:
        names = list(importances)[::-1]
        ax2.barh(names, [importances[n] for n in names])
        ax2.set_xlabel("importance")
    elif len(done) < 2:
        ax2.text(0.5, 0.5, f"needs >= 2 completed trials (have {len(done)})", ha="center",
                 va="center", transform=ax2.transAxes)
        ax2.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def trials_csv(study: optuna.Study) -> str:
    """All trials as CSV: number, state, value, then every parameter seen."""
    names = sorted({k for t in study.trials for k in t.params})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", "state", "value", "val_accuracy", "last_epoch", *names])
    for t in study.trials:
        w.writerow([t.number, t.state.name, "" if t.value is None else f"{t.value:.6g}",
                    t.user_attrs.get("val_accuracy", ""), t.last_step or "",
                    *(t.params.get(n, "") for n in names)])
    return buf.getvalue()


def write_atomic(path: Path, writer: Callable[[Path], None]) -> None:
    """Concurrent workers may finish together: each writes a private file, then renames."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- command line


def safe_url(url: str) -> str:
    """A storage URL without its password, for printing."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
