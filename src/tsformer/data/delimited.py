"""Delimited text, UCR style: one univariate series a row, a label first, tab or comma.

One code path reads a .tsv/.csv file (through :func:`~.readers.load_file`) and text already
in memory (:func:`read_delimited_text`, for an uploaded CSV): the same header detection,
padding (trailing NaN, resampled with a warning), label typing and one-line errors.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..errors import DataError
from .labels import _all_integral, _labels_from_text, _normalize_labels
from .resampling import _check_length, _resampled
from .validation import check_X

_DELIM_NAMES = {"\t": "tab", ",": "comma"}

#: ``(X, y)``: X float32 ``(n_cases, n_channels, n_timepoints)``, y the labels or None.
XY = tuple[np.ndarray, np.ndarray | None]
#: ``(n_cases, n_channels, n_timepoints)`` of a file, each None where it cannot be told cheaply.
Shape = tuple[int | None, int | None, int | None]


def read_delimited_text(
    text: str,
    *,
    labels: bool | None = None,
    delimiter: str = ",",
    length: int | None = None,
    name: str = "the text",
) -> XY:
    """Delimited text already in memory (an uploaded CSV, say), read as :func:`load_file`
    reads a .csv/.tsv file: ``(X, y)``, X float32 ``(n, 1, timepoints)``.

    One univariate series a row, a label first unless ``labels=False``; a first row with no
    numbers is a header; rows padded with trailing NaN are resampled to ``length`` (or the
    longest) with a :class:`ResampledWarning`.  Mistakes are the file reader's one-line
    :class:`~tsformer.errors.DataError`, with ``name`` where a file's name would be
    (``"the text line 3 has 2 columns but ..."``).
    """
    if not isinstance(text, str):
        raise DataError(f"text must be a str, not {type(text).__name__}; decode bytes first")
    if (
        not isinstance(delimiter, str)
        or len(delimiter) != 1
        or delimiter in "\"\r\n.+-"
        or delimiter.isalnum()
    ):
        raise DataError(f"delimiter must be one character such as ',' or '\\t', not {delimiter!r}")
    if length is not None:
        _check_length(length)
    return _read_delimited(_text_source(text, name), delimiter, labels, length)


def is_number(cell: str) -> bool:
    """Whether a text cell reads as a number (a header row has none)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Source:
    """Delimited text that the reader goes over more than once: a file, or a str in memory."""

    name: str  # in messages about a line or cell ("a.csv line 3 ...")
    full: str  # in messages about the whole text ("/data/a.csv is empty")
    lines: Callable[[], TextIO]  # a fresh stream for the csv module (newline="", no errors)
    loadtxt_input: Callable[[], Any]  # what np.loadtxt reads: the path, or a fresh stream


def _file_source(path: Path) -> _Source:
    return _Source(
        name=path.name,
        full=str(path),
        lines=lambda: open(path, encoding="utf-8", errors="replace", newline=""),
        loadtxt_input=lambda: path,
    )


def _text_source(text: str, name: str) -> _Source:
    # newline=None on loadtxt's stream: universal newlines, as when np.loadtxt opens a path
    return _Source(
        name=name,
        full=name,
        lines=lambda: io.StringIO(text, newline=""),
        loadtxt_input=lambda: io.StringIO(text, newline=None),
    )


def _delim_name(delim: str) -> str:
    return _DELIM_NAMES.get(delim, repr(delim))


def _first_data_line(src: _Source) -> tuple[int, str] | None:
    """``(line number, text)`` of the first non-blank line, reading only the text's start."""
    with src.lines() as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                return i, line.rstrip("\r\n")
    return None


def _split_row(line: str, delim: str) -> list[str]:
    return next(csv.reader([line], delimiter=delim))


def _read_delimited_file(delim: str) -> Callable[[Path, bool | None, int | None], XY]:
    def read(path: Path, labels: bool | None, length: int | None = None) -> XY:
        return _read_delimited(_file_source(path), delim, labels, length)

    return read


def _read_delimited(
    src: _Source, delim: str, labels: bool | None, length: int | None = None
) -> XY:
    """UCR-style rows: label then values, one univariate series a row.

    ``np.loadtxt`` is the fast path (FordA's 20 MB in ~0.4 s); if it fails the text is
    re-read with the csv module only to say exactly which line and cell is wrong.
    """
    has_labels = labels is not False
    first = _first_data_line(src)
    if first is None:
        raise DataError(f"{src.full} is empty; it holds no series")
    first_no, first_line = first
    cells = _split_row(first_line, delim)
    value_cells = cells[1:] if has_labels else cells
    if not value_cells:
        raise DataError(
            f"{src.name} line {first_no} has a single {_delim_name(delim)}-separated column; "
            "each row is a label then the values (pass labels=False if there are no labels)"
        )
    header = all(not is_number(c) for c in value_cells if c.strip())
    skip = first_no if header else first_no - 1
    ncols = len(cells)
    opts: dict[str, Any] = {"delimiter": delim, "skiprows": skip, "encoding": "utf-8"}
    if delim == ",":
        opts["quotechar"] = '"'
    y: np.ndarray | None = None
    try:
        data = _loadtxt(src, dtype=np.float64, ndmin=2, **opts)
        if data.shape[0] and data.shape[1] != ncols:
            raise ValueError("column count differs from the first row")
        X = data[:, 1:] if has_labels else data
        if has_labels:
            y = data[:, 0]
            if data.shape[0] and not _all_integral(y):  # "1.5" labels stay the strings they were
                y = _loadtxt(src, dtype=str, ndmin=1, usecols=0, **opts)
    except ValueError:
        if not has_labels:
            _raise_parse_error(src, delim, skip, ncols, first_value_col=0)
        # Text labels: the values numerically, the label column as text.
        try:
            X = _loadtxt(src, dtype=np.float64, ndmin=2, usecols=range(1, ncols), **opts)
            y = _loadtxt(src, dtype=str, ndmin=1, usecols=0, **opts)
            if X.shape[0] != y.shape[0]:
                raise ValueError("row count differs") from None
        except ValueError:
            _raise_parse_error(src, delim, skip, ncols, first_value_col=1)
        # loadtxt with usecols ignores extra columns: confirm the rows are not ragged.
        _check_ragged(src, delim, skip, ncols)
    if X.shape[0] == 0:
        raise DataError(f"{src.full} has a header row but no series")
    bad = ~np.isfinite(X)
    if bad.any():
        # Trailing NaN is how the UCR archive pads shorter series; anything else is missing.
        ends = X.shape[1] - np.argmax(~bad[:, ::-1], axis=1)  # one past each last finite value
        ends[bad.all(1)] = 0
        inside = bad & (np.arange(X.shape[1])[None, :] < ends[:, None])
        if (ends == 0).any():
            r = int(np.argmax(ends == 0))
            raise DataError(f"{src.name} line {skip + r + 1} has no values, only NaN; "
                            "drop that row")
        wrong = inside | np.isinf(X)  # missing values, or infinities (never padding)
        if wrong.any():
            r, c = np.argwhere(wrong)[0]
            raise DataError(
                f"{src.name} line {skip + r + 1}, column {c + 1 + has_labels}: value "
                f"{float(X[r, c])} is missing or infinite; missing values are not supported "
                "yet (only trailing NaN, the archive's padding of shorter series): fill or "
                "drop those series"
            )
        X = _resampled([row[None, :n] for row, n in zip(X, ends, strict=True)], length, src.name)
    X = check_X(X, what=src.name)
    if y is None:
        return X, None
    what = f"labels in {src.name}"
    return X, (
        _labels_from_text(y, what=what) if y.dtype.kind == "U" else _normalize_labels(y, what=what)
    )


def _loadtxt(src: _Source, **kwargs: Any) -> np.ndarray:
    """``np.loadtxt`` without its "no data" warning: an empty result is reported as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.loadtxt(src.loadtxt_input(), **kwargs)


def _check_ragged(src: _Source, delim: str, skip: int, ncols: int) -> None:
    with src.lines() as f:
        for lineno, line in enumerate(f, 1):
            if lineno <= skip or not line.strip():
                continue
            if line.count(delim) != ncols - 1 and len(_split_row(line, delim)) != ncols:
                _raise_parse_error(src, delim, skip, ncols, first_value_col=1)


def _raise_parse_error(src: _Source, delim: str, skip: int, ncols: int, first_value_col: int):
    """Find the first bad row/cell with the csv module and raise a precise DataError."""
    with src.lines() as f:
        reader = csv.reader(f, delimiter=delim)
        for row in reader:
            lineno = reader.line_num
            if lineno <= skip or not any(c.strip() for c in row):
                continue
            if len(row) != ncols:
                raise DataError(
                    f"{src.name} line {lineno} has {len(row)} columns but the first row has "
                    f"{ncols}; give every row the same number of columns (pad shorter series "
                    "with trailing NaN: they are then resampled to one length)"
                )
            for col in range(first_value_col, len(row)):
                cell = row[col]
                if not cell.strip():
                    raise DataError(
                        f"{src.name} line {lineno}, column {col + 1} is empty; "
                        "fill in the value or remove the stray delimiter"
                    )
                if not is_number(cell):
                    raise DataError(
                        f"{src.name} line {lineno}, column {col + 1}: non-numeric value "
                        f"{cell[:40]!r}; series values must be numbers"
                        + (" (the first column is the label)" if first_value_col else "")
                    )
    raise DataError(
        f"could not parse {src.name} as {_delim_name(delim)}-separated "
        "numbers; each row must be: label, value, value, ..."
    )


def _count_lines(f: io.BufferedReader) -> int:
    n, last = 0, b"\n"
    while chunk := f.read(1 << 22):
        n += chunk.count(b"\n")
        last = chunk[-1:]
    return n + (last != b"\n")


def _peek_delimited_file(delim: str) -> Callable[[Path], Shape]:
    def peek(path: Path) -> Shape:
        with open(path, "rb") as f:
            first = f.readline()
            cells = _split_row(first.decode("utf-8", "replace").rstrip("\r\n"), delim)
            header = all(not is_number(c) for c in cells[1:] if c.strip())
            n = _count_lines(f) + (0 if header else 1)
            return n, 1, len(cells) - 1

    return peek
