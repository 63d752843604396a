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


def plot_reliability(rel: dict[str, list], path: str | Path,
                     title: str = "test reliability") -> None:
    """The reliability diagram as a PNG: accuracy against mean confidence per bin of
    top-class confidence (bars), the diagonal of perfect calibration, and the bins' counts."""
    plt = _pyplot()
    edges = np.asarray(rel["edges"], dtype=float)
    width = np.diff(edges)
    count = np.asarray(rel["count"], dtype=float)
    acc = np.asarray([np.nan if a is None else a for a in rel["accuracy"]], dtype=float)
    conf = np.asarray([np.nan if c is None else c for c in rel["confidence"]], dtype=float)
    n = max(1.0, count.sum())
    ece = float(np.nansum(count / n * np.abs(acc - conf)))
    fig, (ax, hx) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(edges[:-1], np.nan_to_num(acc), width=width, align="edge", edgecolor="black",
           label="accuracy")
    ax.bar(edges[:-1], np.nan_to_num(np.abs(conf - acc)), bottom=np.nan_to_num(
        np.minimum(acc, conf)), width=width, align="edge", color="tab:red", alpha=0.3,
        label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}\nECE {ece:.4f}" if title else f"ECE {ece:.4f}", fontsize="medium")
    ax.legend(fontsize="small", loc="upper left")
    hx.bar(edges[:-1], count, width=width, align="edge", edgecolor="black")
    hx.set_xlabel("confidence (top-class probability)")
    hx.set_ylabel("series")
    hx.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: Channels drawn in one explanation figure; the attributions of all are in the .npy/.csv.
MAX_PLOTTED_CHANNELS = 8


def plot_explanation(series: np.ndarray, attribution: np.ndarray, path: str | Path,
                     title: str = "") -> None:
    """One series ``(C, T)`` as a line per channel over its attribution as a coloured band
    behind it (red: raises the explained class's probability, blue: lowers it; the scale is
    symmetric around zero so white means no effect), as a PNG."""
    plt = _pyplot()
    n_ch = min(len(series), MAX_PLOTTED_CHANNELS)
    height = 1.2 + 1.8 * n_ch
    fig, axes = plt.subplots(n_ch, 1, figsize=(9, height), sharex=True, squeeze=False)
    # a fixed layout: matplotlib's constrained layout doubles the time of a figure
    fig.subplots_adjust(left=0.08, right=0.86, bottom=0.55 / height, top=1 - 0.7 / height,
                        hspace=0.15)
    peak = float(np.abs(attribution[:n_ch]).max()) or 1.0
    t = np.arange(series.shape[-1])
    for c, ax in enumerate(axes[:, 0]):
        lo, hi = float(series[c].min()), float(series[c].max())
        pad = 0.05 * (hi - lo or 1.0)
        im = ax.imshow(attribution[c][None, :], aspect="auto", cmap="RdBu_r", vmin=-peak,
                       vmax=peak, extent=(-0.5, len(t) - 0.5, lo - pad, hi + pad),
                       interpolation="nearest", alpha=0.6)
        ax.plot(t, series[c], color="black", lw=1)
        ax.set_ylabel(f"channel {c}" if len(series) > 1 else "value")
    axes[-1, 0].set_xlabel("time step")
    fig.colorbar(im, cax=fig.add_axes((0.88, 0.55 / height, 0.015, 1 - 1.25 / height)),
                 label="attribution")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.savefig(path, dpi=80)
    plt.close(fig)
