"""Class labels: one label type per set, codes ``0..K-1`` for the models, and back.

Integers (and integral floats, and integral numbers read as text from a file) become int64;
other numbers stay float64; strings stay stripped strings.  Text is a number only in a
standard spelling (:func:`~.guards.is_standard_number`: ``1_000`` stays the text it is).
Missing labels (NaN, an empty cell, the text ``nan``) and mixed-type labels are a
:class:`~tsformer.errors.DataError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from .guards import is_standard_number

#: Label texts that mean "no label" (compared lower-case, stripped).
_MISSING_TEXT = ("", "nan", "+nan", "-nan")


def _all_integral(a: np.ndarray) -> bool:
    return bool(np.isfinite(a).all() and (a == np.round(a)).all())


def _check_text_present(y: np.ndarray, *, what: str, lines: Sequence[int] | None) -> None:
    """Refuse empty and ``nan`` labels, naming the line (or the series) of the first."""
    missing = np.isin(np.char.lower(y), _MISSING_TEXT)
    if missing.any():
        i = int(np.argmax(missing))
        where = f"line {lines[i]}" if lines is not None else f"series {i + 1}"
        text = "empty" if y[i] == "" else repr(str(y[i]))
        raise DataError(
            f"{what}: the label of {where} is missing ({text}); label every series or drop it"
        )


def _labels_from_text(
    y: np.ndarray, *, what: str, lines: Sequence[int] | None = None
) -> np.ndarray:
    """Text labels from a file: all integral numbers -> int64, otherwise the strings.

    ``lines``: the line number of each label, for the message about a missing one.
    """
    y = np.char.strip(y.astype(str))
    _check_text_present(y, what=what, lines=lines)
    try:
        num = y.astype(np.float64)
    except ValueError:
        return y
    if not all(is_standard_number(str(v)) for v in np.unique(y)):
        return y  # '1_000', Arabic-Indic digits: float() reads them, nobody means them
    return num.astype(np.int64) if _all_integral(num) else y


def _normalize_labels(y: np.ndarray, *, what: str = "y") -> np.ndarray:
    """One label type: integers (and integral floats) -> int64, strings stay strings."""
    kind = y.dtype.kind
    if kind in "iu":
        return y.astype(np.int64)
    if kind == "b":
        return y
    if kind == "f":
        if np.isnan(y).any():
            raise DataError(f"{what} has missing labels (NaN); label every series or drop it")
        return y.astype(np.int64) if _all_integral(y) else y.astype(np.float64)
    if kind == "S":
        return _labels_from_text(y, what=what)
    if kind == "U":
        y = np.char.strip(y)
        _check_text_present(y, what=what, lines=None)
        return y
    if kind == "O":
        values = list(y)
        if any(v is None or (isinstance(v, float) and v != v) for v in values):
            raise DataError(f"{what} has missing labels (None/NaN); label every series")
        if all(isinstance(v, str) for v in values):
            return _normalize_labels(np.array(values, dtype=str), what=what)
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
            return _normalize_labels(np.array(values, dtype=np.float64), what=what)
        kinds = sorted({type(v).__name__ for v in values})
        raise DataError(f"{what} mixes label types ({', '.join(kinds)}); use one type")
    raise DataError(f"{what} has unsupported label type {y.dtype}; use integers or strings")


def encode_labels(y: Any) -> tuple[np.ndarray, list]:
    """Labels -> int64 codes ``0..K-1`` and the sorted classes as JSON-ready Python scalars."""
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise DataError(f"labels must be a non-empty 1-D array; got shape {y.shape}")
    classes, codes = np.unique(_normalize_labels(y), return_inverse=True)
    return codes.astype(np.int64).reshape(-1), classes.tolist()


def codes_for(y: Any, classes: Sequence, what: str) -> np.ndarray:
    """Labels of new data (a test split, a file) as codes of a model's ``classes``.

    Labels are matched by their text (``1`` and ``"1"`` agree: the loaders turn integral
    numbers into ints first); a label the model never saw is refused rather than mapped to a
    wrong class.
    """
    index = {str(c): i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in np.asarray(y).tolist()} - set(index))
    if unknown:
        raise DataError(
            f"{what} has label(s) {', '.join(unknown[:5])} that the model was not trained on "
            f"(its classes: {', '.join(str(c) for c in classes)})"
        )
    return np.array([index[str(v)] for v in np.asarray(y).tolist()], dtype=np.int64)


def decode_labels(codes: Any, classes: Sequence) -> np.ndarray:
    """Codes from :func:`encode_labels` (or a model) back to the original labels."""
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        if codes.dtype.kind == "f" and codes.size and _all_integral(codes):
            codes = codes.astype(np.int64)
        elif codes.size:
            raise DataError(f"label codes must be integers; got {codes.dtype}")
        else:
            codes = codes.astype(np.int64)
    k = len(classes)
    if codes.size and (codes.min() < 0 or codes.max() >= k):
        raise DataError(
            f"label codes must be in 0..{k - 1} for {k} classes; got {codes.min()}..{codes.max()}"
            " (the model and the classes list do not belong together)"
        )
    return np.asarray(list(classes))[codes]
