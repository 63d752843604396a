"""``tsformer export``: a trained model as an ONNX graph, for onnxruntime without PyTorch."""

from __future__ import annotations

import argparse

from .common import info, say


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tolerance must be a number, not {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"tolerance must be in (0, 1), not {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a trained model to ONNX (for onnxruntime, without PyTorch)",
        description="Export the model in RUN_DIR to an ONNX graph: input 'series' (batch, "
        "n_channels, n_timepoints) float32, dynamic batch; outputs 'logits' and "
        "'probabilities' (batch, n_classes); classes and input shape in the file's metadata. "
        "onnxruntime must reproduce PyTorch's probabilities on the run's sample series "
        "within --tolerance, or nothing is written. Predict with it through "
        "'tsformer predict --runtime onnx' or 'tsformer serve --runtime onnx'.")
    p.add_argument("run_dir", help="model or run directory")
    p.add_argument("--format", choices=["onnx"], required=True,
                   help="export format (onnx)")
    p.add_argument("--out", help="output file (default RUN_DIR/model.onnx)")
    p.add_argument("--tolerance", type=_tolerance, default=1e-4,
                   help="largest difference allowed between onnxruntime's and PyTorch's "
                        "probabilities (default 1e-4)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..export import check_target, export_onnx
    from ..model_dir import read_config
    from ..runtime import ONNX_NAME

    read_config(args.run_dir)  # a missing or broken run directory: one line, before tracing
    out = check_target(args.out if args.out is not None else Path(args.run_dir) / ONNX_NAME)
    info(f"exporting {args.run_dir} to ONNX (tracing the model; this can take a minute)")
    path, diff = export_onnx(args.run_dir, out, tolerance=args.tolerance)
    info(f"onnxruntime reproduces PyTorch's probabilities within {diff:.2g} "
         f"(tolerance {args.tolerance:g})")
    say(str(path))
    return 0
