"""The ``tsformer`` command: a thin shell over the Python API.

Every user mistake ends in one line on stderr and exit code 2; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .errors import DataError, TsformerError

#: Epochs the CLI trains by default: a run a new user can watch finish on a laptop CPU.
QUICK_EPOCHS = 10


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (not usage + error) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fail(msg: str) -> int:
    print(f"tsformer: error: {msg}", file=sys.stderr)
    return 2


def _info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _notes_as_lines(show: Any) -> Any:
    """A ``warnings.showwarning`` that prints the data layer's notes (e.g. unequal-length
    series resampled) as one line each, and leaves other warnings to ``show``."""
    from .data import ResampledWarning

    def note(message: Any, category: type[Warning], *rest: Any, **kw: Any) -> None:
        if issubclass(category, ResampledWarning):
            _info(f"tsformer: note: {message}")
        else:
            show(message, category, *rest, **kw)

    return note


# --------------------------------------------------------------------------- helpers


def _load_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"config file {p} does not exist")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"config file {p} is not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise DataError(f"config file {p} must hold a JSON object with preset/model/train keys")
    return cfg


def _read_for_model(path: str, n_channels: int, n_timepoints: int, classes: Sequence[Any],
                    labels: bool | None = None, evaluating: bool = False
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Series from a file for a model, with labels if the file has a label column
    (``labels``: None to tell from the file, True/False to say; ``evaluating``: labels are
    needed, so an unequal-length file's first column is its labels).

    An equal-length file must have the model's length (series are never resampled
    silently).  An unequal-length file (NaN-padded rows, ``@equalLength false``) is resampled
    to it with a note; as its shape can no longer tell, its first column is taken as labels
    when every value in it is one of the model's classes, unless ``labels`` says."""
    from .data import ResampledWarning, load_file

    def read(lab: bool | None) -> tuple[np.ndarray, np.ndarray | None, list] | None:
        """The file at the model's length (equal-length files stay as they are), with the
        resampling note held back until this reading is chosen."""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResampledWarning)
                X, y = load_file(path, labels=lab, length=n_timepoints)
        except DataError:
            if lab is False and labels is None:  # only a guess: e.g. text labels as values
                return None
            raise
        return X, None if lab is False else y, [
            w for w in caught if issubclass(w.category, ResampledWarning)]

    tries = [labels] if labels is not None else [None, False]
    readings = {lab: r for lab in tries if (r := read(lab)) is not None}
    if not any(notes for _, _, notes in readings.values()):  # equal lengths: by shape
        for X, y, _ in readings.values():
            if X.shape[1:] == (n_channels, n_timepoints):
                return X, y
        X = readings[tries[0]][0]
        raise DataError(
            f"{path} holds series of {X.shape[1]} channel(s) x {X.shape[2]} points but the "
            f"model expects {n_channels} x {n_timepoints}; series are never resampled silently")
    if labels is None:  # resampled, so the shape no longer tells
        y = readings[None][1]
        labels = evaluating or (y is not None and all(str(v) in {str(c) for c in classes}
                                                      for v in y))
    lab = labels if labels in readings else (None if labels else False)
    if lab not in readings:  # the unlabelled guess failed to read: say why
        load_file(path, labels=False, length=n_timepoints)
    X, y, notes = readings[lab]
    for w in notes:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if X.shape[1:] != (n_channels, n_timepoints):
        raise DataError(f"{path} holds series of {X.shape[1]} channel(s) but the model expects "
                        f"{n_channels}")
    return X, y


# --------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    """Under ``torchrun`` every rank runs the same command; rank 0 alone prints and writes."""
    import contextlib

    from . import distributed

    device = args.device or (_load_config_file(args.config).get("train", {}).get("device")
                             if args.config else None)
    distributed.init_from_env(device or "auto")  # a no-op unless torchrun set WORLD_SIZE > 1
    try:
        if distributed.is_main():
            return _cmd_train(args)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return _cmd_train(args)  # errors still surface: main() reports them after this
    finally:
        distributed.cleanup()


def _cmd_train(args: argparse.Namespace) -> int:
    from .data import check_X, check_Xy, codes_for, encode_labels, load_dataset
    from .distributed import is_main
    from .io import check_writable_target, make_config, model_card, save_pretrained
    from .metrics import evaluate, format_metrics, plot_confusion, plot_history
    from .models import (
        count_parameters,
        create_model,
        data_shape,
        get_preset,
        resolve_model_params,
    )
    from .train import TrainConfig, fit, seed_everything

    file_cfg = _load_config_file(args.config) if args.config else {}
    preset = args.preset or file_cfg.get("preset", "seed")
    get_preset(preset)  # an unknown preset fails before any data is read

    if args.dataset and args.train_file:
        raise DataError("give either --dataset NAME or --train FILE, not both")
    if args.train_file:
        from .data import load_file

        Xtr, ytr = load_file(args.train_file)
        if args.test_file:
            Xte, yte = load_file(args.test_file, length=Xtr.shape[2])
        else:
            Xte, yte = None, None
        name = Path(args.train_file).stem
        data_info = {"name": name, "source": "file"}
    else:
        name = args.dataset or "FordA"
        splits = load_dataset(name)
        Xtr, ytr, Xte, yte = splits.X_train, splits.y_train, splits.X_test, splits.y_test
        name = splits.name
        data_info = {"name": name, "source": splits.source}
    if ytr is None:
        raise DataError(f"{args.train_file} has no labels; training needs a label column")
    Xtr, ytr = check_Xy(Xtr, ytr)
    codes, classes = encode_labels(ytr)
    if Xte is not None:
        if yte is None:
            raise DataError(f"{args.test_file} has no labels; evaluation needs a label column")
        Xte = check_X(Xte, what="the test split")
        if len(yte) != len(Xte):
            raise DataError(f"the test split has {len(Xte)} series but {len(yte)} labels")
        if Xte.shape[1:] != Xtr.shape[1:]:
            raise DataError(
                f"test series are {Xte.shape[1]} x {Xte.shape[2]} (channels x points) but "
                f"training series are {Xtr.shape[1]} x {Xtr.shape[2]}; they must match"
            )
        test_codes = codes_for(yte, classes, "the test split")
    data_sizes = data_shape(Xtr, len(classes))
    spec = get_preset(preset, data_sizes)  # with the preset's data-scaled defaults
    model_over = dict(file_cfg.get("model", {}))
    for key in ("variant", "pool", "attention"):
        if getattr(args, key) is not None:
            model_over[key] = getattr(args, key)
    params = resolve_model_params(preset, model_over, data_sizes)
    train_over = {**spec["train"], **file_cfg.get("train", {})}
    for key in ("epochs", "batch_size", "lr", "patience", "seed", "device", "validation_split"):
        if getattr(args, key) is not None:
            train_over[key] = getattr(args, key)
    if args.compile:
        train_over["compile"] = True
    capped = args.epochs is None and not args.full and train_over.get("epochs", 200) > QUICK_EPOCHS
    if capped:
        full_epochs, train_over["epochs"] = train_over.get("epochs"), QUICK_EPOCHS
    train_over["verbose"] = 0 if args.quiet else 1
    cfg = TrainConfig.from_dict(train_over)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/{name}-{preset}-{stamp}")
    check_writable_target(out, args.overwrite)

    n_ch, n_t = Xtr.shape[1], Xtr.shape[2]
    seed_everything(cfg.seed)  # the initial weights too, so --seed reproduces a run
    model = create_model(preset, n_channels=n_ch, n_timepoints=n_t, n_classes=len(classes),
                         **params)
    n_params = count_parameters(model)
    _info(f"{name}: {len(Xtr)} train / {0 if Xte is None else len(Xte)} test series, "
          f"{n_ch} channel(s) x {n_t} points, {len(classes)} classes")
    variant = f" ({params['variant']})" if params.get("variant") else ""
    stopping = (f"early stopping patience {cfg.patience}" if cfg.patience is not None
                else "no early stopping")
    _info(f"preset {preset}{variant}: {n_params:,} parameters; up to {cfg.epochs} epochs, "
          f"batch {cfg.batch_size}, {stopping}")
    if capped:
        _info(f"note: training at most {QUICK_EPOCHS} epochs for a quick first run; the full "
              f"{preset} schedule ({full_epochs} epochs, {stopping}) is --full")
    history = fit(model, Xtr, codes, cfg, log=_info)
    if not is_main():
        return 0  # rank 0 holds the same weights; it alone evaluates and writes the run
    model.cpu()
    metrics: dict[str, Any] = {"dataset": name, "preset": preset, **history.summary()}
    if Xte is not None:
        test = evaluate(model, Xte, test_codes, classes, amp=cfg.amp)
        metrics["test"] = test
        print(f"test accuracy: {test['accuracy']:.4f}")
        _info(format_metrics(test, classes))
    config = make_config(preset, params, cfg.to_dict(), n_channels=n_ch, n_timepoints=n_t,
                         classes=classes, data=data_info, n_parameters=n_params)
    extra: dict[str, Any] = {
        "metrics.json": json.dumps(metrics, indent=2) + "\n",
        "history.csv": history.to_csv(),
        "training_curves.png": lambda p: plot_history(history, p),
    }
    if Xte is not None:
        from .serve import write_demo_sample

        extra["confusion_matrix.png"] = lambda p: plot_confusion(
            metrics["test"]["confusion_matrix"], classes, p)
        write_demo_sample(extra, Xte, yte)  # examples for the demo page of 'tsformer serve'
    card_metrics = dict(metrics.get("test", {}), split="test") if Xte is not None else None
    save_pretrained(out, model, config, card=model_card(config, card_metrics),
                    extra_files=extra, overwrite=args.overwrite)
    status = " (interrupted: best model so far)" if history.interrupted else ""
    print(f"run directory: {out}{status}")
    return 130 if history.interrupted else 0


# --------------------------------------------------------------------------- evaluate / predict


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import codes_for, load_dataset
    from .io import inference_amp, load_pretrained
    from .metrics import evaluate, format_metrics

    model, cfg = load_pretrained(args.run_dir)
    n_ch, n_t = cfg["input"]["n_channels"], cfg["input"]["n_timepoints"]
    if args.file:
        X, y = _read_for_model(args.file, n_ch, n_t, cfg["classes"], evaluating=True)
        if y is None:
            raise DataError(f"{args.file} has no label column; evaluation needs labels")
        what = args.file
    else:
        name = args.dataset or cfg.get("data", {}).get("name")
        if not name or (not args.dataset and cfg.get("data", {}).get("source") == "file"):
            raise DataError("this model was trained on a file; pass --dataset NAME or --file FILE")
        splits = load_dataset(name)
        X, y, what = splits.X_test, splits.y_test, f"{splits.name} test split"
        if X.shape[1:] != (n_ch, n_t):
            raise DataError(f"{what} is {X.shape[1]} x {X.shape[2]} but the model expects "
                            f"{n_ch} x {n_t}")
    m = evaluate(model, X, codes_for(y, cfg["classes"], what), cfg["classes"],
                 amp=inference_amp(cfg))
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        print(f"{what}: " + format_metrics(m, cfg["classes"]))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from .io import inference_amp, load_pretrained
    from .train import predict_logits

    model, cfg = load_pretrained(args.run_dir)
    X, _ = _read_for_model(args.file, cfg["input"]["n_channels"], cfg["input"]["n_timepoints"],
                           cfg["classes"], labels=args.labels)
    proba = torch.softmax(predict_logits(model, X, batch_size=args.batch_size,
                                         amp=inference_amp(cfg)), 1).numpy()
    classes = cfg["classes"]
    labels = [classes[i] for i in proba.argmax(1)]
    if args.format == "json":
        text = json.dumps([
            {"label": lab, "probabilities": {str(c): float(p) for c, p in zip(classes, row,
                                                                             strict=True)}}
            for lab, row in zip(labels, proba, strict=True)], indent=1) + "\n"
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["index", "label"] + [f"p_{c}" for c in classes])
        for i, (lab, row) in enumerate(zip(labels, proba, strict=True)):
            w.writerow([i, lab] + [f"{p:.6f}" for p in row])
        text = buf.getvalue()
    if args.output:
        tmp = Path(args.output).with_name(f".{Path(args.output).name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.output)
    else:
        sys.stdout.write(text)
    return 0


# --------------------------------------------------------------------------- summary / datasets


def cmd_summary(args: argparse.Namespace) -> int:
    from .models import create_model, summary

    over = {k: getattr(args, k) for k in ("variant", "pool", "attention")
            if getattr(args, k) is not None}
    if args.dataset:
        from .data import load_dataset

        s = load_dataset(args.dataset)
        n_ch, n_t, n_cls = s.X_train.shape[1], s.X_train.shape[2], len(np.unique(s.y_train))
        title = s.name
    else:
        n_ch, n_t, n_cls, title = 1, 500, 2, "FordA-shaped input"
    model = create_model(args.preset, n_channels=n_ch, n_timepoints=n_t, n_classes=n_cls, **over)
    print(f'Model: "{args.preset}" on {title} ({n_ch} x {n_t}, {n_cls} classes)')
    print(summary(model, n_ch, n_t))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import data_dir, list_datasets

    rows = list_datasets()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<28}{'source':<14}{'train':>7}{'test':>7}{'channels':>10}{'length':>8}"
          f"{'size':>10}")
    for r in rows:
        print(f"{r['name']:<28}{r['source']:<14}{r['n_train']:>7}{r['n_test']:>7}"
              f"{r['n_channels']:>10}{r['n_timepoints']:>8}{r['size_bytes'] / 1e6:>8.1f}MB")
    print(f"{len(rows)} datasets available offline; cache: {data_dir()}")
    return 0


# --------------------------------------------------------------------------- parser


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None, help="model preset (default: seed)")
    p.add_argument("--variant", choices=["prenorm", "postnorm"], default=None,
                   help="seed variant: prenorm (2021-06-25) or postnorm (2021-08-05)")
    p.add_argument("--pool", choices=["features", "time"], default=None,
                   help="seed head pooling: 'features' (the seed's channels_first quirk) or 'time'")
    p.add_argument("--attention", choices=["auto", "fast", "direct"], default=None,
                   help="attention computation path (same function, different cost)")


#: Subcommands that live beside their feature, as (module, function adding the subparser);
#: imported when the parser is built so that ``import tsformer.cli`` stays light.
FEATURE_COMMANDS = (
    ("benchmark", "add_subcommand"), ("tune", "add_tune_command"), ("serve", "add_serve_command"),
)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="tsformer", description="Transformer classifiers for time series.")
    parser.add_argument("--version", action="version", version=f"tsformer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a preset and evaluate it on the test split")
    p.add_argument("--dataset", help="dataset name (default FordA) or path")
    p.add_argument("--train", dest="train_file", help="training file instead of a dataset name")
    p.add_argument("--test", dest="test_file", help="test file to go with --train")
    _add_model_options(p)
    p.add_argument("--config", help="JSON preset file (e.g. written by 'tsformer tune')")
    p.add_argument("--epochs", type=int, help=f"max epochs (default {QUICK_EPOCHS}, see --full)")
    p.add_argument("--full", action="store_true", help="use the preset's full schedule")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patience", type=int)
    p.add_argument("--validation-split", type=float)
    p.add_argument("--seed", type=int, help="random seed (default 0): reproducible on CPU")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--out", help="run directory (default runs/DATASET-PRESET-TIME)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a saved model on a test split or labelled file")
    p.add_argument("run_dir")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dataset")
    g.add_argument("--file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict labels and probabilities for the series in FILE")
    p.add_argument("run_dir")
    p.add_argument("file")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("--output", help="write here instead of stdout")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=None,
                   help="whether FILE's first column is labels (default: told from the file; "
                   "for unequal-length files, labels if every value is one of the classes)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("summary", help="layer table of a preset, like Keras' model.summary()")
    _add_model_options(p)
    p.add_argument("--dataset", help="take the input shape from this dataset (default FordA's)")
    p.set_defaults(func=cmd_summary, preset="seed")

    p = sub.add_parser("datasets", help="list datasets available offline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)

    for module, function in FEATURE_COMMANDS:
        getattr(importlib.import_module(f".{module}", __package__), function)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "preset", "x") is None and args.command == "summary":
        args.preset = "seed"
    try:
        with warnings.catch_warnings():  # restores the filters and showwarning after
            from .data import ResampledWarning

            warnings.simplefilter("always", ResampledWarning)  # once per file, not per place
            warnings.showwarning = _notes_as_lines(warnings.showwarning)
            return int(args.func(args) or 0)
    except TsformerError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except BrokenPipeError:
        return 0

