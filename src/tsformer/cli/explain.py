"""``tsformer explain``: which time steps each prediction rests on, as figures, arrays and a
table, with a deletion test of how faithful the attributions are."""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import info, non_negative_int, say

#: The file that marks a directory as ``tsformer explain`` output (so --overwrite may replace it).
SUMMARY_NAME = "explanations.json"


#: :data:`tsformer.explain.METHODS`, spelt out: that module imports torch, and every command's
#: parser is built at start-up (``tsformer predict --runtime onnx`` runs without torch);
#: tests/test_export.py checks that the two agree.
METHODS = ("integrated_gradients", "occlusion")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain", help="attributions of the predictions for the series in FILE",
        description="Attributions of each prediction to every time step and channel (Captum; "
        "needs the 'explain' extra): a PNG per series (the series over a coloured band, red "
        "where it raises the explained class's probability), attributions.npy (n, C, T), "
        "attributions.csv (series, channel, step, value, attribution) and explanations.json, "
        "and a deletion test: the drop in probability when the top-attributed steps are "
        "deleted, against as many random steps.")
    p.add_argument("run_dir", help="model or run directory")
    p.add_argument("file", help="series to explain (.tsv, .csv, .ts, .npy, .npz)")
    p.add_argument("--out", help="output directory (default explain-FILE, FILE's name without "
                   "its extension)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing explanations directory")
    p.add_argument("--method", choices=METHODS, default="integrated_gradients",
                   help="integrated_gradients (default) or occlusion")
    p.add_argument("--target", help="explain this class for every series (default: each "
                   "series' predicted class)")
    p.add_argument("--limit", type=non_negative_int, default=32,
                   help="explain the first N series (default 32; 0: all)")
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=None,
                   help="whether FILE's first column is labels (default: told from the file); "
                   "given labels appear in the figures' titles")
    p.set_defaults(func=cmd_explain)


def _title(i: int, e: Any, j: int, truth: Any) -> str:
    pred, tgt = e.labels(e.predicted[j:j + 1])[0], e.labels(e.target[j:j + 1])[0]
    text = f"series {i}: predicted {pred} (p={e.probability[j]:.2f})"
    if truth is not None:
        text += f", true {truth}"
    if tgt != pred:
        text += f"; explaining class {tgt} (p={e.target_probability[j]:.2f})"
    return f"{text}\n{e.method.replace('_', ' ')}"


def _table(X: np.ndarray, A: np.ndarray) -> str:
    """Long format: one row per series, channel and step."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["series", "channel", "step", "value", "attribution"])
    n, c, t = X.shape
    for i in range(n):
        for k in range(c):
            w.writerows(zip([i] * t, [k] * t, range(t), (f"{v:.7g}" for v in X[i, k]),
                            (f"{a:.7g}" for a in A[i, k]), strict=True))
    return buf.getvalue()


def _summary(e: Any, y: np.ndarray | None, args: argparse.Namespace) -> str:
    truth = [None] * len(e.target) if y is None else [str(v) for v in y]
    doc = {
        "method": e.method, "baseline": e.baseline, "file": str(args.file),
        "model": str(args.run_dir), "classes": list(e.classes or ()),
        "attribution_unit": "probability of the explained class",
        "deletion": [d.to_dict() for d in e.deletion],
        "series": [{"index": i, "predicted": p, "probability": float(e.probability[i]),
                    "explained": t, "explained_probability": float(e.target_probability[i]),
                    "true": truth[i]}
                   for i, (p, t) in enumerate(zip(e.labels(e.predicted), e.labels(e.target),
                                                  strict=True))],
    }
    return json.dumps(doc, indent=1, default=str) + "\n"


def cmd_explain(args: argparse.Namespace) -> int:
    from ..explain import explain, require_captum, target_code
    from ..model_dir import check_writable_target, write_dir_atomic
    from ..pipeline import load
    from ..plots import plot_explanation
    from .reading import read_for_model

    out = Path(args.out if args.out is not None else f"explain-{Path(args.file).stem}")
    kind = {"marker": SUMMARY_NAME, "kind": "explanations directory"}
    check_writable_target(out, args.overwrite, **kind)
    require_captum()
    model, cfg = load(args.run_dir, device="cpu")
    code = None if args.target is None else target_code(args.target, cfg.classes)
    X, y = read_for_model(args.file, cfg.n_channels, cfg.n_timepoints, cfg.classes,
                          labels=args.labels)
    if args.limit:
        X, y = X[:args.limit], None if y is None else y[:args.limit]
    t0 = time.perf_counter()
    info(f"explaining {len(X)} series with {args.method.replace('_', ' ')}...")
    e = explain(model, X, method=args.method, target=code, classes=cfg.classes)
    how = f" ({e.baseline} baseline)" if e.baseline else ""
    say(f"explained {len(X)} series of {args.file} with {args.method}{how} in "
        f"{time.perf_counter() - t0:.1f} s")
    for d in e.deletion:
        say(f"deletion test: {d}")

    def png(i: int) -> Any:
        truth = None if y is None else y[i]
        return lambda p: plot_explanation(X[i], e.attributions[i], p, _title(i, e, i, truth))

    files: dict[str, Any] = {SUMMARY_NAME: _summary(e, y, args),
                             "attributions.npy": lambda p: np.save(p, e.attributions),
                             "attributions.csv": _table(X, e.attributions)}
    width = max(4, len(str(len(X) - 1)))
    files.update({f"series-{i:0{width}d}.png": png(i) for i in range(len(X))})
    write_dir_atomic(out, files, overwrite=args.overwrite, **kind)
    say(f"wrote {out}/ ({len(X)} figures, attributions.npy, attributions.csv, {SUMMARY_NAME})")
    return 0
