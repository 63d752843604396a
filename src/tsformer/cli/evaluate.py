"""``tsformer evaluate``: a saved model's scores on a test split or a labelled file."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..errors import DataError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a saved model on a test split or labelled file",
                       description="Accuracy, loss, confusion matrix and per-class "
                       "precision/recall/F1 of a saved model.")
    p.add_argument("run_dir", help="model or run directory (tsformer train's --out)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dataset", help="score on this dataset's test split (default: the one the "
                   "model was trained on)")
    g.add_argument("--file", help="score on this labelled file instead")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--reliability", metavar="PNG",
                   help="also draw the reliability diagram (accuracy against confidence, 15 "
                   "bins; its ECE is printed with the metrics) into this PNG file")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..data import codes_for, load_dataset
    from ..evaluation import format_metrics
    from ..pipeline import evaluate, load
    from .reading import read_for_model

    if args.reliability is not None:
        _check_png(args.reliability)
    model, cfg = load(args.run_dir, device="cpu")
    n_ch, n_t = cfg.n_channels, cfg.n_timepoints
    if args.file:
        X, y = read_for_model(args.file, n_ch, n_t, cfg.classes, evaluating=True)
        if y is None:
            raise DataError(f"{args.file} has no label column; evaluation needs labels")
        what = args.file
    else:
        name = args.dataset or cfg.data.get("name")
        if not name or (not args.dataset and cfg.data.get("source") == "file"):
            raise DataError("this model was trained on a file; pass --dataset NAME or --file FILE")
        splits = load_dataset(name)
        X, y, what = splits.X_test, splits.y_test, f"{splits.name} test split"
        if X.shape[1:] != (n_ch, n_t):
            raise DataError(f"{what} is {X.shape[1]} x {X.shape[2]} but the model expects "
                            f"{n_ch} x {n_t}")
    m = evaluate(model, cfg, X, codes_for(y, cfg.classes, what))
    if args.reliability is not None:
        _plot(m, args.reliability, f"{cfg.preset} on {what}")
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        print(f"{what}: " + format_metrics(m, cfg.classes))
    return 0


def _check_png(path: str) -> None:
    """Refuse a diagram path that cannot be written, before any work."""
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise DataError(f"--reliability {path}: give a .png file name")
    if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise DataError(f"--reliability {path}: cannot write there (its folder must exist "
                        "and be writable)")


def _plot(m: dict, path: str, title: str) -> None:
    """The diagram into a temporary sibling, renamed into place (never half-written)."""
    from ..plots import plot_reliability

    out = Path(path)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.png")
    try:
        plot_reliability(m["reliability"], tmp, title)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {out} ({e.strerror or e})") from None
