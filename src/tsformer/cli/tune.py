"""``tsformer tune``: Optuna search on the validation split (see :mod:`tsformer.tune`)."""

from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path

from ..errors import ConfigError, DataError
from .common import non_negative_int, positive_int, positive_seconds


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..tune import DEFAULT_DB

    p = sub.add_parser("tune", help="hyperparameter search with Optuna (validation split only)")
    p.add_argument("--dataset", help="dataset name (default FordA) or path; training split only")
    p.add_argument("--train", dest="train_file", help="labelled training file instead")
    p.add_argument("--preset", default="seed", help="preset whose search space to use")
    p.add_argument("--trials", type=positive_int, required=True,
                   help="finished (complete or pruned) trials the study should hold in "
                   "total, all workers together")
    p.add_argument("--storage", help=f"Optuna storage URL (default sqlite:///OUT/{DEFAULT_DB}); "
                   "postgresql://user:pw@host/db lets workers on many machines share a study")
    p.add_argument("--study", help="study name (default DATASET-PRESET); workers join by name")
    p.add_argument("--epochs", type=positive_int, default=20,
                   help="max epochs per trial (default 20)")
    p.add_argument("--validation-split", type=float, default=0.2,
                   help="fraction of the training data that scores trials (default 0.2)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="data split and weight-init seed")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--timeout", type=positive_seconds,
                   help="stop starting trials after this many seconds")
    p.add_argument("--out", help="output directory (default tune/DATASET-PRESET)")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from ..config import check_overrides
    from ..data import check_Xy, encode_labels, load_dataset, load_file
    from ..model_dir import check_creatable
    from ..tune import (
        DEFAULT_DB,
        best_config,
        plot_summary,
        run_tune,
        safe_url,
        trials_csv,
        write_atomic,
    )

    if args.study is not None and not args.study.strip():
        raise ConfigError("--study is empty; give the study a name (or leave it out)")
    if not 0.0 < args.validation_split < 1.0:
        raise ConfigError(f"--validation-split must be above 0 and below 1, not "
                          f"{args.validation_split}")
    check_overrides(args.preset, {"train": {"epochs": args.epochs, "seed": args.seed,
                                            "device": args.device or "auto"}})
    if args.out is not None:
        check_creatable(args.out)
    if args.dataset and args.train_file:
        raise DataError("give either --dataset NAME or --train FILE, not both")
    if args.train_file:
        X, y = load_file(args.train_file)
        name = Path(args.train_file).stem
        if y is None:
            raise DataError(f"{args.train_file} has no labels; tuning needs a label column")
    else:
        splits = load_dataset(args.dataset or "FordA")
        X, y, name = splits.X_train, splits.y_train, splits.name
        del splits  # the test split plays no part in tuning
    X, y = check_Xy(X, y)
    codes, _classes = encode_labels(y)
    out = Path(args.out or f"tune/{name}-{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{(out / DEFAULT_DB).resolve()}"
    study_name = args.study or f"{name}-{args.preset}"
    study = run_tune(X, codes, preset=args.preset, n_trials=args.trials, storage=storage,
                     study_name=study_name, epochs=args.epochs,
                     validation_split=args.validation_split, seed=args.seed,
                     device=args.device or "auto", timeout=args.timeout)
    write_atomic(out / "trials.csv", lambda p: p.write_text(trials_csv(study), "utf-8"))
    write_atomic(out / "summary.png", lambda p: plot_summary(study, p))
    print(f"study {study_name!r} in {safe_url(storage)}: {len(study.trials)} trials")
    try:
        config = best_config(study, args.preset)
    except ConfigError as e:
        print(f"summary plot: {out / 'summary.png'}")
        raise ConfigError(f"{e}; no best configuration written") from e
    text = json.dumps(config, indent=2) + "\n"
    write_atomic(out / "best.json", lambda p: p.write_text(text, "utf-8"))
    best = study.best_trial
    acc = best.user_attrs.get("val_accuracy", math.nan)
    print(f"best trial {best.number}: val_loss {best.value:.4f}, val_accuracy {acc:.4f}")
    data_flag = (f"--train {shlex.quote(args.train_file)}" if args.train_file
                 else f"--dataset {shlex.quote(args.dataset or 'FordA')}")
    print(f"best configuration: {out / 'best.json'}  (tsformer train --config "
          f"{shlex.quote(str(out / 'best.json'))} {data_flag} --full)")
    print(f"summary plot: {out / 'summary.png'}")
    return 0
