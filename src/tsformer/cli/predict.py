"""``tsformer predict``: labels and class probabilities for the series in a file."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from .common import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict labels and probabilities for the series in FILE",
                       description="Labels (in the training data's label space) and class "
                       "probabilities for each series in FILE.")
    p.add_argument("run_dir", help="model or run directory")
    p.add_argument("file", help="series to classify (.tsv, .csv, .ts, .npy, .npz)")
    p.add_argument("--format", choices=["csv", "json"], default="csv",
                   help="output format (default csv)")
    p.add_argument("--output", help="write here instead of stdout")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="series per forward pass (bounds memory; default 256)")
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=None,
                   help="whether FILE's first column is labels (default: told from the file; "
                   "for unequal-length files, labels if every value is one of the classes)")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from ..inference import predict_logits
    from ..pipeline import load
    from .reading import read_for_model

    model, cfg = load(args.run_dir, device="cpu")
    X, _ = read_for_model(args.file, cfg.n_channels, cfg.n_timepoints, cfg.classes,
                          labels=args.labels)
    proba = torch.softmax(predict_logits(model, X, batch_size=args.batch_size,
                                         amp=cfg.train.amp), 1).numpy()
    classes = cfg.classes
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
