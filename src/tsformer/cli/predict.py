"""``tsformer predict``: labels and class probabilities for the series in a file."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .common import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict labels and probabilities for the series in FILE",
                       description="Labels (in the training data's label space) and class "
                       "probabilities for each series in FILE.")
    p.add_argument("run_dir", help="model or run directory (with --runtime onnx: an exported "
                   ".onnx file, or a directory holding model.onnx)")
    p.add_argument("file", help="series to classify (.tsv, .csv, .ts, .npy, .npz)")
    p.add_argument("--format", choices=["csv", "json"], default="csv",
                   help="output format (default csv)")
    p.add_argument("--output", help="write here instead of stdout")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="series per forward pass (bounds memory; default 256)")
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=None,
                   help="whether FILE's first column is labels (default: told from the file; "
                   "for unequal-length files, labels if every value is one of the classes)")
    p.add_argument("--conformal", type=_alpha, metavar="ALPHA",
                   help="also give each series' split-conformal prediction set: the labels "
                   "that, for series like the held-out ones the model was calibrated on, hold "
                   "the true one at least 1 - ALPHA of the time (e.g. 0.1); json: a \"set\" "
                   "list, csv: a 1/0 column in_CLASS per class")
    p.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                   help="torch (default): the PyTorch model; onnx: the graph 'tsformer export' "
                   "wrote, in onnxruntime, without importing torch (needs onnxruntime)")
    p.set_defaults(func=cmd_predict)


def _alpha(text: str) -> float:
    try:
        alpha = float(text)
    except ValueError:
        alpha = float("nan")
    if not 0 < alpha < 1:
        raise argparse.ArgumentTypeError(f"ALPHA must be a number in (0, 1), e.g. 0.1, not "
                                         f"{text!r}")
    return alpha


def _check_output(path: str) -> Path:
    """Refuse an output the result cannot be written to before any work is done."""
    if path == "":
        raise DataError("--output is empty; give a file name, or leave it out for stdout")
    out = Path(path)
    if out.is_dir():
        raise DataError(f"--output {out} is a directory; give a file name")
    parent = out.parent
    if not parent.is_dir():
        raise DataError(f"--output {out}: the directory {parent} does not exist; create it "
                        "first")
    if not os.access(parent, os.W_OK):
        raise DataError(f"--output {out}: {parent} is not writable")
    return out


def _write(out: Path, text: str) -> None:
    """Atomically: a temporary sibling renamed into place, removed if the write fails.  A
    symlink is written through (its target replaced, not the link); a device or FIFO
    (``/dev/stdout``, a pipe) is written into, never replaced."""
    out = out.resolve() if out.is_symlink() else out
    if out.exists() and not out.is_file():
        try:
            with open(out, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise DataError(f"cannot write {out} ({e.strerror or e})") from None
        return
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {out} ({e.strerror or e})") from None


#: What predicting needs of a model: classes, input shape, calibration (or None), and a
#: function from series to float64 probabilities.
Loaded = tuple[list[Any], int, int, Any, Callable[[np.ndarray], np.ndarray]]


def _load_torch(args: argparse.Namespace) -> Loaded:
    import torch

    from ..inference import predict_logits, refuse_non_finite
    from ..pipeline import load

    model, cfg = load(args.run_dir, device="cpu")

    def proba(X: np.ndarray) -> np.ndarray:
        logits = refuse_non_finite(predict_logits(model, X, batch_size=args.batch_size,
                                                  amp=cfg.train.amp), X)
        return torch.softmax(logits.double(), 1).numpy()

    return cfg.classes, cfg.n_channels, cfg.n_timepoints, cfg.calibration, proba


def _load_onnx(args: argparse.Namespace) -> Loaded:
    """The exported graph in onnxruntime; nothing here imports torch."""
    from ..calibration import Calibration
    from ..runtime import load_onnx

    model = load_onnx(args.run_dir)
    cal = model.info.config.get("calibration")
    return (model.classes, model.n_channels, model.n_timepoints,
            Calibration.from_dict(cal) if cal is not None else None,
            lambda X: model.predict_proba(X, args.batch_size))


def cmd_predict(args: argparse.Namespace) -> int:
    from ..calibration import prediction_sets
    from .reading import read_for_model

    out = _check_output(args.output) if args.output else None
    load = _load_onnx if args.runtime == "onnx" else _load_torch
    classes, n_channels, n_timepoints, calibration, predict_proba = load(args)
    threshold = None
    if args.conformal is not None:
        if calibration is None:
            raise ConfigError(f"{args.run_dir} has no calibration data for conformal sets; "
                              "calibrate it first (tsformer calibrate RUN_DIR --data FILE)")
        threshold = calibration.threshold(args.conformal)
    X, _ = read_for_model(args.file, n_channels, n_timepoints, classes, labels=args.labels)
    proba = predict_proba(X)
    labels = [classes[i] for i in proba.argmax(1)]
    sets = None if threshold is None else prediction_sets(proba, threshold)
    if args.format == "json":
        rows = [{"label": lab, "probabilities": {str(c): float(p) for c, p in zip(
            classes, row, strict=True)}} for lab, row in zip(labels, proba, strict=True)]
        if sets is not None:
            for r, s in zip(rows, sets, strict=True):
                r["set"] = [c for c, inside in zip(classes, s, strict=True) if inside]
        text = json.dumps(rows, indent=1) + "\n"
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["index", "label"] + [f"p_{c}" for c in classes]
                   + ([f"in_{c}" for c in classes] if sets is not None else []))
        for i, (lab, row) in enumerate(zip(labels, proba, strict=True)):
            w.writerow([i, lab] + [f"{p:.6f}" for p in row]
                       + ([int(v) for v in sets[i]] if sets is not None else []))
        text = buf.getvalue()
    if out is not None:
        _write(out, text)
    else:
        sys.stdout.write(text)
    return 0
