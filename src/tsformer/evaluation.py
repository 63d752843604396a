"""Evaluation: accuracy, loss, confusion matrix and per-class scores (scikit-learn's metrics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .inference import predict_logits, refuse_non_finite


def evaluate(model: nn.Module, X: np.ndarray, y: np.ndarray, classes: list[Any], *,
             batch_size: int = 256, amp: str = "auto") -> dict[str, Any]:
    """Accuracy, loss (= ``nll``), confusion matrix, per-class precision/recall/F1 and the
    calibration of the probabilities (``ece`` on 15 bins and the reliability diagram's
    bins) on codes ``y``; ``amp``: the precision of the forward pass
    (:func:`tsformer.device.autocast`)."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    from .calibration import expected_calibration_error, reliability

    logits = refuse_non_finite(predict_logits(model, X, batch_size=batch_size, amp=amp), X)
    y_t = torch.as_tensor(np.asarray(y, dtype=np.int64))
    pred = logits.argmax(1).numpy()
    labels = list(range(len(classes)))
    names = [str(c) for c in classes]
    proba = torch.softmax(logits.double(), 1).numpy()
    report = classification_report(y, pred, labels=labels, target_names=names,
                                   output_dict=True, zero_division=0)
    loss = float(F.cross_entropy(logits, y_t).item())
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "loss": loss,
        "nll": loss,
        "ece": expected_calibration_error(proba, y),
        "n_samples": int(len(y)),
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "per_class": {n: report[n] for n in names},
        "macro_avg": report["macro avg"],
        "reliability": reliability(proba, y),
    }


def format_metrics(m: dict[str, Any], classes: list[Any]) -> str:
    """Accuracy, loss and a per-class table for the terminal."""
    ece = f"  ECE {m['ece']:.4f}" if "ece" in m else ""
    lines = [f"accuracy {m['accuracy']:.4f}  loss {m['loss']:.4f}{ece}  (n={m['n_samples']})",
             f"{'class':>10} {'precision':>10} {'recall':>10} {'f1':>10} {'support':>8}"]
    for c in classes:
        r = m["per_class"][str(c)]
        lines.append(f"{c!s:>10} {r['precision']:>10.4f} {r['recall']:>10.4f} "
                     f"{r['f1-score']:>10.4f} {int(r['support']):>8}")
    lines.append("confusion matrix (rows: true, columns: predicted):")
    lines += ["  " + " ".join(f"{v:>6}" for v in row) for row in m["confusion_matrix"]]
    return "\n".join(lines)
