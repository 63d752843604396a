"""Predicting with an exported model through onnxruntime, without PyTorch.

``tsformer export RUN_DIR --format onnx`` writes ``model.onnx`` (:mod:`tsformer.export`):
one graph, input ``series`` ``(batch, n_channels, n_timepoints)`` float32 with a dynamic
batch axis, outputs ``logits`` and ``probabilities`` ``(batch, n_classes)``.  Everything the
model does to an input (normalisation, ensemble averaging, a calibration temperature) is
inside the graph; what a caller needs besides it (the class names, the input shape, the run's
config) is in the file's ``metadata_props`` under ``tsformer.*`` keys.

This module imports only numpy and onnxruntime, so a deployment that predicts with an
exported model needs neither torch nor the rest of tsformer's training stack; ``tsformer
predict --runtime onnx`` and ``tsformer serve --runtime onnx`` run through it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, ModelDirError, TsformerError

#: The file name ``tsformer export`` writes into a run directory, and looks for in one.
ONNX_NAME = "model.onnx"
INPUT_NAME = "series"
LOGITS_NAME, PROBABILITIES_NAME = "logits", "probabilities"
#: ``metadata_props`` keys (values are strings; JSON where they hold lists or objects).
META_FORMAT = "tsformer.format"
META_FORMAT_VERSION = "tsformer.format_version"
META_VERSION = "tsformer.version"
META_CLASSES = "tsformer.classes"
META_INPUT = "tsformer.input"
META_OUTPUTS = "tsformer.outputs"
META_CONFIG = "tsformer.config"
FORMAT, FORMAT_VERSION = "tsformer-onnx", 1

MISSING_RUNTIME = ("the onnx runtime needs onnxruntime: pip install 'tsformer[onnx]' "
                   "(or pip install onnxruntime numpy beside tsformer)")


def onnx_file(target: str | os.PathLike) -> Path:
    """The ONNX file ``target`` names: a ``.onnx`` file itself, or a directory holding
    :data:`ONNX_NAME` (a run directory after ``tsformer export``)."""
    p = Path(target)
    if p.is_dir():
        f = p / ONNX_NAME
        if not f.is_file():
            raise ModelDirError(f"{p} has no {ONNX_NAME}; export it first (tsformer export {p} "
                                "--format onnx) or give the .onnx file")
        return f
    if not p.exists():
        raise ModelDirError(f"{p} does not exist; give an exported .onnx file or a run "
                            f"directory holding {ONNX_NAME}")
    if p.suffix.lower() != ".onnx":
        raise ModelDirError(f"{p} is not an .onnx file; give an exported .onnx file or a run "
                            f"directory holding {ONNX_NAME}")
    return p


def _json(meta: dict[str, str], key: str, where: Path) -> Any:
    try:
        return json.loads(meta[key])
    except KeyError:
        raise ModelDirError(f"{where} has no {key} metadata; it was not exported by tsformer "
                            "(tsformer export RUN_DIR --format onnx)") from None
    except (ValueError, RecursionError):
        raise ModelDirError(f"{where}: its {key} metadata is not valid JSON; the file is "
                            "corrupt; export it again") from None


@dataclass(frozen=True)
class OnnxModelInfo:
    """What an exported model's metadata says: classes, input shape, the run's config."""

    classes: list[Any]
    n_channels: int
    n_timepoints: int
    tsformer_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: dict[str, str], where: Path) -> OnnxModelInfo:
        if meta.get(META_FORMAT) != FORMAT:
            raise ModelDirError(f"{where} is not a tsformer export (no {META_FORMAT} "
                                f"metadata); export the run with tsformer export")
        if meta.get(META_FORMAT_VERSION) != str(FORMAT_VERSION):
            raise ModelDirError(f"{where} is export format {meta.get(META_FORMAT_VERSION)!r}; "
                                f"this tsformer reads {FORMAT_VERSION}: export it again")
        classes, shape = _json(meta, META_CLASSES, where), _json(meta, META_INPUT, where)
        config = _json(meta, META_CONFIG, where) if META_CONFIG in meta else {}
        ok_classes = isinstance(classes, list) and len(classes) >= 2 and all(
            isinstance(c, str | int | float) and not isinstance(c, bool) for c in classes)
        dims = [shape.get(k) if isinstance(shape, dict) else None
                for k in ("n_channels", "n_timepoints")]
        if not ok_classes or not all(isinstance(d, int) and d > 0 for d in dims):
            raise ModelDirError(f"{where}: its class or input-shape metadata is malformed; "
                                "the file is corrupt; export it again")
        return cls(classes, dims[0], dims[1], str(meta.get(META_VERSION, "")),
                   config if isinstance(config, dict) else {})


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities in float64 from logits (as ``tsformer predict`` computes them)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def refuse_non_finite(logits: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``logits`` if all finite, else one DataError naming the first series whose outputs
    are NaN/inf (the torch path's :func:`tsformer.inference.refuse_non_finite`)."""
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        peak = float(np.abs(X[i]).max())
        raise DataError(f"the model's outputs for series {i} are not finite: its values (up to "
                        f"{peak:.3g} in magnitude) overflow the model; rescale the series "
                        "(e.g. z-normalise each one)")
    return logits


class OnnxModel:
    """An exported model in an onnxruntime session, with its metadata.

    ``threads``: onnxruntime's intra-op threads (None: its default, every core)."""

    def __init__(self, source: str | os.PathLike | bytes, *, threads: int | None = None,
                 where: str | os.PathLike | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise TsformerError(f"{MISSING_RUNTIME} ({e})") from None
        self.path = Path(where if where is not None else (
            "<bytes>" if isinstance(source, bytes) else source))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: its warnings are not the user's business
        opts.inter_op_num_threads = 1
        if threads is not None:
            opts.intra_op_num_threads = threads
        model = source if isinstance(source, bytes) else str(source)
        try:
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ModelDirError(f"{self.path} is not a loadable ONNX model ({first}); export "
                                "it again") from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = OnnxModelInfo.from_metadata(meta, self.path)
        inputs = self.session.get_inputs()
        outputs = {o.name for o in self.session.get_outputs()}
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        if (len(inputs) != 1 or inputs[0].name != INPUT_NAME or LOGITS_NAME not in outputs
                or shape[1:] != [self.info.n_channels, self.info.n_timepoints]):
            raise ModelDirError(f"{self.path}: its graph does not take {INPUT_NAME} (batch, "
                                f"{self.info.n_channels}, {self.info.n_timepoints}) to "
                                f"{LOGITS_NAME} as its metadata says; export it again")

    @property
    def classes(self) -> list[Any]:
        return self.info.classes

    @property
    def n_channels(self) -> int:
        return self.info.n_channels

    @property
    def n_timepoints(self) -> int:
        return self.info.n_timepoints

    def run(self, X: np.ndarray, names: list[str] | None = None) -> list[np.ndarray]:
        """The graph's outputs (``names``, default all) for one batch ``X (n, C, T)``."""
        x = np.ascontiguousarray(X, dtype=np.float32)
        return self.session.run(names, {INPUT_NAME: x})

    def logits(self, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Float32 logits ``(n, n_classes)``, ``batch_size`` series per run (bounds memory)."""
        out = [self.run(X[i:i + batch_size], [LOGITS_NAME])[0]
               for i in range(0, len(X), batch_size)]
        if not out:
            return np.empty((0, len(self.classes)), np.float32)
        return np.concatenate(out)

    def predict_proba(self, X: np.ndarray, batch_size: int = 256, *,
                      finite_only: bool = True) -> np.ndarray:
        """Float64 class probabilities.  NaN/inf outputs are refused (one DataError), unless
        ``finite_only`` is False (the server reports them per series itself)."""
        logits = self.logits(X, batch_size)
        return softmax(refuse_non_finite(logits, X) if finite_only else logits)


def load_onnx(target: str | os.PathLike, *, threads: int | None = None) -> OnnxModel:
    """An exported model from a ``.onnx`` file or a run directory holding ``model.onnx``."""
    return OnnxModel(onnx_file(target), threads=threads)


__all__ = ["INPUT_NAME", "LOGITS_NAME", "ONNX_NAME", "PROBABILITIES_NAME", "OnnxModel",
           "OnnxModelInfo", "load_onnx", "onnx_file", "refuse_non_finite", "softmax"]
