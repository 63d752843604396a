"""Validation of in-memory arrays: series to float32 ``(n, channels, timepoints)``, labels.

Everything a model cannot use (ragged, non-numeric, NaN/inf, empty, wrong rank, one class) is
one :class:`~tsformer.errors.DataError` here rather than an obscure failure later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from .labels import _normalize_labels


def check_X(X: Any, *, what: str = "X") -> np.ndarray:
    """Validate series and return them float32 ``(n_cases, n_channels, n_timepoints)``.

    2-D input ``(n, t)`` is univariate.  Everything a model cannot use (ragged, non-numeric,
    NaN/inf, empty, wrong rank) is one DataError here rather than an obscure failure later.
    """
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor, without importing torch
        X = X.detach().cpu().numpy()
    try:
        arr = np.asarray(X)
    except ValueError:
        raise DataError(
            f"{what} is ragged: its series have different lengths; resample them to one "
            "length first, e.g. tsformer.data.resample(series, length)"
        ) from None
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "c":
            raise DataError(f"{what} is complex; pass real values (e.g. np.abs or .real)")
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError):
            if any(
                isinstance(v, (Sequence, np.ndarray)) and not isinstance(v, str) for v in arr.flat
            ):
                raise DataError(
                    f"{what} is ragged: its series have different lengths; resample them to "
                    "one length first, e.g. tsformer.data.resample(series, length)"
                ) from None
            bad = next((v for v in arr.flat if not _is_number_like(v)), None)
            bad = bad.item() if isinstance(bad, np.generic) else bad
            raise DataError(
                f"{what} has non-numeric values (e.g. {bad!r}); series values must be numbers"
            ) from None
    if arr.ndim == 2:
        arr = arr[:, None, :]
    elif arr.ndim != 3:
        raise DataError(
            f"{what} must be 2-D (n_cases, n_timepoints) or 3-D (n_cases, n_channels, "
            f"n_timepoints); got {arr.ndim}-D with shape {arr.shape}"
            + ("; for one series use X[None, :]" if arr.ndim == 1 else "")
        )
    if arr.size == 0:
        raise DataError(
            f"{what} is empty (shape {arr.shape}); it needs at least one series with one value"
        )
    if not np.isfinite(arr).all():
        i, c, t = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(
            f"{what} has NaN or infinite values (first at case {i}, channel {c}, timepoint {t}); "
            "missing values are not supported yet: fill or drop those series"
        )
    if arr.dtype.itemsize > 4 and np.abs(arr).max() > np.finfo(np.float32).max:
        raise DataError(f"{what} has values too large for float32 (beyond ±3.4e38); rescale it")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _is_number_like(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def check_Xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`check_X` plus labels: 1-D, one per series, no missing ones, at least 2 classes."""
    X = check_X(X)
    if y is None:
        raise DataError("y is missing; training needs one class label per series")
    if hasattr(y, "detach") and hasattr(y, "cpu"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(
            f"y must be 1-D (one label per series); got shape {y.shape}"
            + ("; use y.ravel()" if y.ndim == 2 and 1 in y.shape else "")
        )
    if len(y) != len(X):
        raise DataError(f"X has {len(X)} series but y has {len(y)} labels; give one per series")
    y = _normalize_labels(y, what="y")
    if len(np.unique(y)) < 2:
        raise DataError(
            f"y has a single class ({y[0].item()!r}); a classifier needs at least two classes"
        )
    return X, y
