"""``tsformer train``: a preset on a dataset or files -> a run directory, with test scores."""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import DataError, TrainingError
from .common import (
    add_set_option,
    free_cores,
    info,
    load_config_file,
    merge_overrides,
    parse_overrides,
    positive_int,
    positive_seconds,
    say,
)

#: Epochs the CLI trains by default: a run a new user can watch finish on a laptop CPU.
QUICK_EPOCHS = 10
#: Flags that set one training option each.
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "patience", "seed", "device", "validation_split",
               "time_limit")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a preset and evaluate it on the test split",
                       description="Train a preset on a dataset (by name) or on files, evaluate "
                       "it on the test split and write a run directory.")
    p.add_argument("--dataset", help="dataset name or path (default FordA)")
    p.add_argument("--train", dest="train_file", help="labelled training file instead of a "
                   "dataset name (.tsv, .csv, .ts, .npy, .npz)")
    p.add_argument("--test", dest="test_file", help="labelled test file to go with --train")
    p.add_argument("--preset", help="model preset: seed (default) or patchformer")
    p.add_argument("--config", help="train what a config describes: a model directory, its "
                   "config.json or a 'tsformer tune' best.json (flags and --set win)")
    add_set_option(p)
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="go on training the network in RUN_DIR (an interrupted run, or one to "
                   "extend with --epochs N) on its data; written back to RUN_DIR unless --out")
    p.add_argument("--epochs", type=positive_int,
                   help=f"max epochs (default {QUICK_EPOCHS}, see --full)")
    p.add_argument("--full", action="store_true", help="use the preset's full schedule")
    p.add_argument("--time-limit", type=positive_seconds, metavar="SECONDS",
                   help="train within this many seconds: patchformer plans epochs and "
                   "ensemble members to fit, and any run ends at the limit with the model so "
                   "far (implies the full schedule)")
    p.add_argument("--batch-size", type=positive_int, help="series per optimiser step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    p.add_argument("--validation-split", type=float,
                   help="share of the training data held out for validation")
    p.add_argument("--seed", type=int, help="random seed (default 0): reproducible on CPU")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads for torch (default: the cores not busy with other "
                   "processes, from the load average)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--out", help="run directory (default runs/DATASET-PRESET-TIME)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Under ``torchrun`` every rank runs the same command; rank 0 alone prints and writes."""
    from ..training import distributed

    if args.resume:
        return _resume(args)
    plan = _plan(args)  # options checked before torch.distributed or any data
    distributed.init_from_env(plan["overrides"]["train"].get("device", "auto"))
    try:
        if distributed.is_main():
            return _train(args, plan)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return _train(args, plan)  # errors still surface: main() reports them after this
    finally:
        distributed.cleanup()


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    """Preset, overrides and output path, all checked before any data is read."""
    from ..config import check_overrides
    from ..model_dir import check_writable_target

    if args.dataset is not None and args.train_file:
        raise DataError("give either --dataset NAME or --train FILE, not both")
    if args.test_file and not args.train_file:
        raise DataError("--test goes with --train FILE; a named dataset brings its own test "
                        "split")
    if args.dataset is not None and not args.dataset.strip():
        raise DataError("--dataset is empty; give a dataset name (see 'tsformer datasets')")
    file_cfg = load_config_file(args.config) if args.config else {"overrides": {}}
    preset = args.preset or file_cfg.get("preset", "seed")
    flags: dict[str, Any] = {k: getattr(args, k) for k in TRAIN_FLAGS
                             if getattr(args, k) is not None}
    if args.compile:
        flags["compile"] = True
    flags["verbose"] = 0 if args.quiet else 1
    overrides = merge_overrides(file_cfg["overrides"], parse_overrides(args.overrides),
                                {"train": flags})
    check_overrides(preset, overrides)
    name = (Path(args.train_file).stem if args.train_file else args.dataset or "FordA")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/{Path(name).name}-{preset}-{stamp}")
    check_writable_target(out, args.overwrite)
    return {"preset": preset, "overrides": overrides, "out": out}


def _set_threads(threads: int | None) -> None:
    """``--threads``, else the free cores; said when it is fewer than the machine has."""
    import torch

    default = torch.get_num_threads()
    n = threads or min(free_cores(), default)
    torch.set_num_threads(n)
    if not threads and n < default:
        info(f"using {n} of {default} CPU threads (other processes keep the rest busy; "
             "--threads sets it)")


def _load_data(args: argparse.Namespace) -> dict[str, Any]:
    from ..data import check_X, check_Xy, codes_for, encode_labels, load_dataset, load_file

    if args.train_file:
        Xtr, ytr = load_file(args.train_file)
        if ytr is None:
            raise DataError(f"{args.train_file} has no labels; training needs a label column")
        Xte = yte = None
        if args.test_file:
            Xte, yte = load_file(args.test_file, length=Xtr.shape[2])
            if yte is None:
                raise DataError(f"{args.test_file} has no labels; evaluation needs a label "
                                "column")
        info_ = {"name": Path(args.train_file).stem, "source": "file"}
    else:
        splits = load_dataset(args.dataset or "FordA")
        Xtr, ytr, Xte, yte = splits.X_train, splits.y_train, splits.X_test, splits.y_test
        info_ = {"name": splits.name, "source": splits.source}
    Xtr, ytr = check_Xy(Xtr, ytr)
    codes, classes = encode_labels(ytr)
    test_codes = None
    if Xte is not None:
        Xte = check_X(Xte, what="the test split")
        if len(yte) != len(Xte):
            raise DataError(f"the test split has {len(Xte)} series but {len(yte)} labels")
        if Xte.shape[1:] != Xtr.shape[1:]:
            raise DataError(
                f"test series are {Xte.shape[1]} x {Xte.shape[2]} (channels x points) but "
                f"training series are {Xtr.shape[1]} x {Xtr.shape[2]}; they must match")
        test_codes = codes_for(yte, classes, "the test split")
    return {"X": Xtr, "codes": codes, "classes": classes, "X_test": Xte, "y_test": yte,
            "test_codes": test_codes, "data": info_}


def _train(args: argparse.Namespace, plan: dict[str, Any]) -> int:
    from ..models import count_parameters
    from ..pipeline import DataShape, resolve, train
    from ..training.distributed import is_main

    d = _load_data(args)
    _set_threads(args.threads)
    X, preset = d["X"], plan["preset"]
    cfg = resolve(preset, DataShape.of(X, len(d["classes"])), plan["overrides"],
                  classes=d["classes"], data=d["data"])
    full_epochs = cfg.train.epochs
    capped = (args.epochs is None and not args.full and cfg.train.time_limit is None
              and full_epochs > QUICK_EPOCHS)
    if capped:  # as if asked for: the preset adjusts its schedule to the shorter run
        quick = merge_overrides(plan["overrides"], {"train": {"epochs": QUICK_EPOCHS}})
        cfg = resolve(preset, DataShape.of(X, len(d["classes"])), quick,
                      classes=d["classes"], data=d["data"])
    n_te = 0 if d["X_test"] is None else len(d["X_test"])
    info(f"{d['data']['name']}: {len(X)} train / {n_te} test series, {X.shape[1]} channel(s) "
         f"x {X.shape[2]} points, {len(d['classes'])} classes")
    n_params = count_parameters(cfg.build())
    t = cfg.train
    stopping = (f"early stopping patience {t.patience}" if t.patience is not None
                else "no early stopping")
    ensemble = f", an ensemble of {cfg.members}" if cfg.members > 1 else ""
    info(f"preset {preset}: {n_params:,} parameters{ensemble}; up to {t.epochs} epochs, "
         f"batch {t.batch_size}, {stopping}")
    if capped:
        info(f"note: training at most {QUICK_EPOCHS} epochs for a quick first run; the full "
             f"{preset} schedule ({full_epochs} epochs, {stopping}) is --full")
    result = train(cfg, X, d["codes"], log=info)
    if not is_main():
        return 0  # rank 0 holds the same weights; it alone evaluates and writes the run
    if result.interrupted and not any(h.rows for h in result.histories):
        raise TrainingError("interrupted before the first epoch ended; no model was saved")
    return _evaluate_and_save(result, d, plan["out"], args.overwrite)


def _evaluate_and_save(result: Any, d: dict[str, Any], out: Path, overwrite: bool) -> int:
    """Score a trained run on its test split (when there is one), write the run directory,
    say where; exit code 130 for an interrupted run (it keeps its best model so far)."""
    from ..evaluation import format_metrics
    from ..pipeline import evaluate, save_run

    if result.interrupted and threading.current_thread() is threading.main_thread():
        # a second Ctrl-C/SIGTERM must not lose what the first one kept
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        info("saving the run; further interrupts are ignored until it is written")
    result.model.cpu()
    test = None
    if d["X_test"] is not None:
        test = evaluate(result.model, result.config, d["X_test"], d["test_codes"])
        say(f"test accuracy: {test['accuracy']:.4f}")
        info(format_metrics(test, result.config.classes))
    test_data = (d["X_test"], d["y_test"]) if d["X_test"] is not None else None
    save_run(out, result, test_metrics=test, test_data=test_data, overwrite=overwrite)
    status = " (interrupted: best model so far)" if result.interrupted else ""
    say(f"run directory: {out}{status}")
    return 130 if result.interrupted else 0


def _resume(args: argparse.Namespace) -> int:
    """``--resume RUN_DIR``: the saved configuration, its data, the epochs still to run."""
    from ..model_dir import check_writable_target, read_config
    from ..pipeline import resume

    clash = [f for f in ("preset", "config", "overrides", "dataset", "test_file", "batch_size",
                         "lr", "patience", "seed", "validation_split", "device")
             if getattr(args, f)]
    if clash:
        flag = {"overrides": "set", "test_file": "test", "config": "config"}.get(
            clash[0], clash[0].replace("_", "-"))
        raise DataError(f"--resume trains the saved configuration on its own data; drop "
                        f"--{flag} (only --epochs, --train FILE, --out and --threads go "
                        "with it)")
    cfg = read_config(args.resume)
    out = Path(args.out or args.resume)
    check_writable_target(out, overwrite=True if not args.out else args.overwrite)
    source = cfg.data.get("source")
    if source == "file" and not args.train_file:
        raise DataError(f"{args.resume} was trained on a file; give it again with --train FILE")
    args.dataset = None if args.train_file else cfg.data.get("name")
    d = _load_data(args)
    _set_threads(args.threads)
    if d["X"].shape[1:] != (cfg.n_channels, cfg.n_timepoints):
        raise DataError(f"the data's series are {d['X'].shape[1]} x {d['X'].shape[2]} "
                        f"(channels x points) but the model's are {cfg.n_channels} x "
                        f"{cfg.n_timepoints}")
    if list(d["classes"]) != list(cfg.classes):
        raise DataError(f"the data's classes {d['classes']} are not the model's {cfg.classes}")
    info(f"resuming {args.resume}: {cfg.preset} on {d['data']['name']}")
    result = resume(args.resume, d["X"], d["codes"], epochs=args.epochs, log=info)
    return _evaluate_and_save(result, d, out, overwrite=True)
