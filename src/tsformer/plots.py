"""The plots of a run directory: training curves and the test confusion matrix (PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .training import History


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(histories: Sequence[History], path: str | Path, title: str = "") -> None:
    """Loss and accuracy per epoch, training and validation, as a PNG (one line per
    ensemble member); ``title`` names the run (dataset, preset, test accuracy)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if title:
        fig.suptitle(title)
    for m, history in enumerate(histories):
        rows = history.rows
        ep = [r["epoch"] for r in rows]
        who = f" (member {m + 1})" if len(histories) > 1 else ""
        for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
            ax.plot(ep, [r[key] for r in rows], label=f"train {key}{who}")
            if rows and f"val_{key}" in rows[0]:
                ax.plot(ep, [r[f"val_{key}"] for r in rows], label=f"validation {key}{who}")
            if history.best_epoch and "val_loss" in (rows[0] if rows else {}):
                ax.axvline(history.best_epoch, color="grey", ls="--", lw=0.8,
                           label=f"best epoch{who}")
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(key)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(cm: list[list[int]], classes: list[Any], path: str | Path,
                   title: str = "test confusion matrix") -> None:
    """The test confusion matrix as a PNG."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * n + 3), max(4, 0.5 * n + 3)))
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=[str(c) for c in classes]).plot(
        ax=ax, colorbar=False, include_values=n <= 20)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
