"""Exporting a trained model to ONNX, checked against PyTorch before the file is written.

The graph is traced by PyTorch's ``torch.export``-based exporter (``torch.onnx.export(...,
dynamo=True)``, the default since PyTorch 2.9; it needs ``onnxscript``).  The older
TorchScript exporter is deprecated, warns on every use, leaves a graph about three times
larger and cannot translate the rocket stem's comparison into a preallocated tensor.  The
batch axis is ``Dim.AUTO``: a branch on the batch size (the rocket stem's chunking) keeps the
branch the trace took, which computes the same function for any batch; the parity check runs
a batch and a single series, so a graph whose batch the trace fixed is refused.  The seed's
attention traces its PyTorch path: the compiled kernel is switched off
(``TSFORMER_NATIVE=0``) while tracing; the parity check compares against the model as
``tsformer predict`` runs it, kernel included.

What the file holds is described in :mod:`tsformer.runtime`, which also runs it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._version import __version__
from .config import RunConfig
from .errors import ConfigError, ModelDirError, TsformerError
from .inference import predict_logits
from .model_dir import SAMPLE_NAME, read_json_bounded
from .models import Ensemble, count_parameters
from .pipeline import load
from .runtime import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_NAME,
    LOGITS_NAME,
    META_CLASSES,
    META_CONFIG,
    META_FORMAT,
    META_FORMAT_VERSION,
    META_INPUT,
    META_OUTPUTS,
    META_VERSION,
    ONNX_NAME,
    PROBABILITIES_NAME,
    OnnxModel,
    softmax,
)

#: Largest max-abs difference between onnxruntime's and PyTorch's probabilities accepted.
TOLERANCE = 1e-4
FORMATS = ("onnx",)
#: Random series checked when a run has no usable sample.json.
N_RANDOM = 8
MISSING_EXPORT = ("exporting to ONNX needs onnx, onnxscript and onnxruntime: pip install "
                  "'tsformer[export]'")


class ExportError(TsformerError):
    """An export that cannot be made or does not reproduce the model (nothing is written)."""


class _Outputs(nn.Module):
    """The exported function: float32 logits and their softmax, both named outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, series: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(series).float()
        return logits, torch.softmax(logits, dim=-1)


def _require_tools() -> None:
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime")
               if not _importable(m)]
    if missing:
        raise ExportError(f"{MISSING_EXPORT} ({', '.join(missing)} missing)")


def _importable(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None


def check_target(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output the file cannot be written to."""
    if str(path) == "":
        raise ExportError("the output path is empty; give a file name ending in .onnx")
    out = Path(path)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{out}: the output file name must end in .onnx")
    if out.is_dir():
        raise ExportError(f"{out} is a directory; give a file name ending in .onnx")
    if not out.parent.is_dir():
        raise ExportError(f"{out}: the directory {out.parent} does not exist; create it first")
    if not os.access(out.parent, os.W_OK):
        raise ExportError(f"{out}: {out.parent} is not writable")
    return out


@contextlib.contextmanager
def _tracing() -> Iterator[None]:
    """The PyTorch attention path (not the compiled kernel), and quiet: the exporter's
    progress lines, deprecation notes and optional-op warnings are not the user's business."""
    before = os.environ.get("TSFORMER_NATIVE")
    os.environ["TSFORMER_NATIVE"] = "0"
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                            "onnxscript")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), open(os.devnull, "w") as null, \
                contextlib.redirect_stdout(null):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
        if before is None:
            os.environ.pop("TSFORMER_NATIVE", None)
        else:
            os.environ["TSFORMER_NATIVE"] = before


def check_series(run_dir: Path | None, cfg: RunConfig) -> np.ndarray:
    """The series the parity check runs: the run's sample.json when it fits the model, else
    :data:`N_RANDOM` standard-normal series (seeded, so a check is repeatable)."""
    shape = (cfg.n_channels, cfg.n_timepoints)
    if run_dir is not None and (run_dir / SAMPLE_NAME).is_file():
        try:
            doc = read_json_bounded(run_dir / SAMPLE_NAME, "a sample", 8 << 20)
            X = np.asarray(doc["series"], dtype=np.float32)
            if X.ndim == 3 and X.shape[1:] == shape and len(X) and np.isfinite(X).all():
                return X
        except (ModelDirError, KeyError, TypeError, ValueError):
            pass  # a damaged sample is the demo page's problem; random series still check
    return np.random.default_rng(0).standard_normal((N_RANDOM, *shape)).astype(np.float32)


def _metadata(cfg: RunConfig, n_parameters: int) -> dict[str, str]:
    return {
        META_FORMAT: FORMAT, META_FORMAT_VERSION: str(FORMAT_VERSION),
        META_VERSION: __version__,
        META_CLASSES: json.dumps(list(cfg.classes)),
        META_INPUT: json.dumps({"name": INPUT_NAME, "n_channels": cfg.n_channels,
                                "n_timepoints": cfg.n_timepoints, "dtype": "float32",
                                "layout": "(batch, n_channels, n_timepoints)"}),
        META_OUTPUTS: json.dumps({LOGITS_NAME: "(batch, n_classes) float32",
                                  PROBABILITIES_NAME: "(batch, n_classes) float32, softmax "
                                  "of the logits", "classes": "in tsformer.classes order"}),
        META_CONFIG: json.dumps({**cfg.to_dict(), "tsformer_version": __version__,
                                 "n_parameters": n_parameters}),
    }


def to_onnx_bytes(model: nn.Module, cfg: RunConfig) -> bytes:
    """The serialised ONNX model of ``model`` (eval mode, on the CPU) with its metadata."""
    _require_tools()
    for m in model.modules():  # an ensemble's members share one stem in the graph too
        if isinstance(m, Ensemble):
            m.prepare_export()
    wrapped = _Outputs(model).eval()
    example = torch.zeros(2, cfg.n_channels, cfg.n_timepoints)
    try:
        with _tracing(), torch.no_grad():
            program = torch.onnx.export(
                wrapped, (example,), dynamo=True, input_names=[INPUT_NAME],
                output_names=[LOGITS_NAME, PROBABILITIES_NAME],
                dynamic_shapes={"series": {0: torch.export.Dim.AUTO}},
                optimize=True, verbose=False, external_data=False)
    except Exception as e:  # the exporter's errors are many types, with pages of detail
        cause = e
        while cause.__cause__ is not None:  # the exporter wraps the tracer's own error
            cause = cause.__cause__
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip()
        first = (text.splitlines() or [""])[0][:300]
        raise ExportError(f"PyTorch could not export this model to ONNX ({type(cause).__name__}"
                          f"{': ' + first if first else ''})") from None
    proto = program.model_proto
    del proto.metadata_props[:]
    for key, value in _metadata(cfg, count_parameters(model)).items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = (f"tsformer {cfg.preset} model ({cfg.arch}): input {INPUT_NAME} "
                        f"(batch, {cfg.n_channels}, {cfg.n_timepoints}) float32; outputs "
                        f"{LOGITS_NAME} and {PROBABILITIES_NAME} over {len(cfg.classes)} "
                        "classes (tsformer.classes)")
    return proto.SerializeToString()


def parity(session: OnnxModel, model: nn.Module, X: np.ndarray) -> float:
    """Largest absolute difference between onnxruntime's probabilities (both the graph's
    ``probabilities`` output and the softmax of its ``logits``) and PyTorch's float32 ones,
    over ``X`` as one batch and its first series alone (which exercises the batch axis)."""
    with torch.no_grad():
        ref = torch.softmax(predict_logits(model, X, amp="off").double(), 1).numpy()
    worst = 0.0
    for xs, want in ((X, ref), (X[:1], ref[:1])):
        try:
            logits, proba = session.run(xs, [LOGITS_NAME, PROBABILITIES_NAME])
        except Exception as e:  # onnxruntime's own error types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ExportError(f"the exported graph does not run on a batch of {len(xs)} "
                              f"series ({first}); the trace fixed a shape it should not "
                              "have") from None
        for got in (proba.astype(np.float64), softmax(logits)):
            if got.shape != want.shape or not np.isfinite(got).all():
                return float("inf")
            worst = max(worst, float(np.abs(got - want).max()))
    return worst


def _source(source: Any, config: RunConfig | None) -> tuple[nn.Module, RunConfig, Path | None]:
    """(model, config, run directory or None) from a run directory, a fitted
    TransformerClassifier, or a module with its ``config``."""
    if isinstance(source, str | os.PathLike):
        model, cfg = load(source, device="cpu")
        return model, cfg, Path(source)
    if isinstance(source, nn.Module):
        if not isinstance(config, RunConfig):
            raise ConfigError("exporting a module needs its RunConfig: export_onnx(model, "
                              "path, config=cfg)")
        return source, config, None
    model, cfg = getattr(source, "model_", None), getattr(source, "config_", None)
    if isinstance(model, nn.Module) and isinstance(cfg, RunConfig):
        return model, cfg, None
    raise ConfigError(f"export_onnx takes a run directory, a fitted TransformerClassifier or "
                      f"a module with config=, not {type(source).__name__}")


def export_onnx(source: Any, path: str | os.PathLike | None = None, *,
                config: RunConfig | None = None, tolerance: float = TOLERANCE,
                series: np.ndarray | None = None) -> tuple[Path, float]:
    """Export a trained model to ONNX at ``path``; returns the path and the parity found.

    ``source``: a run/model directory (``path`` defaults to ``RUN_DIR/model.onnx``), a fitted
    :class:`~tsformer.TransformerClassifier`, or an ``nn.Module`` with its ``config``.
    Before anything is written, onnxruntime runs the graph on ``series`` (default: the run's
    sample.json, else random series) and its probabilities must equal PyTorch's within
    ``tolerance`` (max abs); otherwise :class:`ExportError` and no file.  The file appears
    whole or not at all (a temporary sibling renamed into place)."""
    if not (isinstance(tolerance, int | float) and not isinstance(tolerance, bool)
            and 0 < tolerance < 1):
        raise ConfigError(f"tolerance must be a number in (0, 1), not {tolerance!r}")
    if path is None and not isinstance(source, str | os.PathLike):
        raise ConfigError("give the output path: export_onnx(model, 'model.onnx')")
    out = check_target(Path(source) / ONNX_NAME if path is None else path)
    _require_tools()
    model, cfg, run_dir = _source(source, config)
    model = model.cpu().eval()
    X = check_series(run_dir, cfg) if series is None else np.asarray(series, np.float32)
    if X.ndim != 3 or X.shape[1:] != (cfg.n_channels, cfg.n_timepoints) or not len(X):
        raise ConfigError(f"series must be (n, {cfg.n_channels}, {cfg.n_timepoints}), "
                          f"not {X.shape}")
    data = to_onnx_bytes(model, cfg)
    diff = parity(OnnxModel(data, where=out, threads=1), model, X)
    if not diff <= tolerance:
        raise ExportError(f"the exported graph does not reproduce the model: onnxruntime's "
                          f"probabilities differ from PyTorch's by up to {diff:.3g} (over "
                          f"{tolerance:g}) on {len(X)} series; nothing was written")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ExportError(f"cannot write {out} ({e.strerror or e}); nothing was left "
                              "behind") from None
        raise
    return out, diff


__all__ = ["FORMATS", "TOLERANCE", "ExportError", "check_series", "check_target",
           "export_onnx", "parity", "to_onnx_bytes"]
