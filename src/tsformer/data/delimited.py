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
from .guards import check_labels, check_values, is_standard_number, shown
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
    return _read_delimited(_text_source(text, str(name)), delimiter, labels, length)


def is_number(cell: str) -> bool:
    """Whether a text cell looks like a number, loosely, as Python's ``float()`` reads it: a
    first row with none is a header.  (A value must also be a *standard* number,
    :func:`~.guards.is_standard_number`: ``1_000`` is not a header, and not a value either.)"""
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
    #: A fresh stream of the text: strict UTF-8 (a leading byte-order mark dropped),
    #: newline="" so that the csv module sees quoted line breaks; lines split at \n, \r, \r\n.
    lines: Callable[[], TextIO]
    #: What ``np.loadtxt`` reads (with ``encoding="utf-8-sig"``): the path, or a fresh stream.
    loadtxt_input: Callable[[], Any]
    #: An upper bound on the number of lines, counted without decoding.
    count_lines: Callable[[], int]
    #: The size of the text in bytes (a str: its length), for the label-array bound.
    size: Callable[[], int]


def _file_source(path: Path) -> _Source:
    def count() -> int:
        with open(path, "rb") as f:
            return _count_lines(f)

    return _Source(
        name=shown(path.name),
        full=shown(str(path), 200),
        lines=lambda: open(path, encoding="utf-8-sig", newline=""),
        loadtxt_input=lambda: path,
        count_lines=count,
        size=lambda: path.stat().st_size,
    )


def _text_source(text: str, name: str) -> _Source:
    text = text.removeprefix("\ufeff")
    return _Source(
        name=shown(name),
        full=shown(name, 200),
        lines=lambda: io.StringIO(text, newline=""),
        # newline=None: universal newlines, as when np.loadtxt opens a path
        loadtxt_input=lambda: io.StringIO(text, newline=None),
        count_lines=lambda: max(text.count("\n"), text.count("\r")) + 1,
        size=lambda: len(text),
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


def _csv_error(src: _Source, lineno: int, e: csv.Error) -> DataError:
    """The csv module refuses cells over 128 KiB (and little else): say which line."""
    return DataError(
        f"{src.name} line {lineno} cannot be split into cells ({_first_line(e)}); no number "
        "or label is that long: is this a delimited text file?"
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _read_delimited_file(delim: str) -> Callable[[Path, bool | None, int | None], XY]:
    def read(path: Path, labels: bool | None, length: int | None = None) -> XY:
        try:
            return _read_delimited(_file_source(path), delim, labels, length)
        except UnicodeDecodeError:
            raise _utf8_error(path) from None

    return read


def _utf8_error(path: Path) -> DataError:
    """The first line of ``path`` that is not UTF-8, found by decoding line by line."""
    name = shown(path.name)
    with open(path, "rb") as f:
        if f.read(2) in (b"\xff\xfe", b"\xfe\xff"):
            return DataError(
                f"{name} is UTF-16 text (Excel's 'Unicode Text' saves that); "
                "save it as UTF-8 (Excel: 'CSV UTF-8')"
            )
        f.seek(0)
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataError(
                    f"{name} line {lineno} is not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                    f"character {e.start + 1}); save the file as UTF-8, or check that it is "
                    "a text file at all"
                )
    return DataError(f"{name} is not UTF-8 text; save the file as UTF-8")


class _Rows:
    """The data rows of delimited text as ``np.loadtxt`` reads them: every non-empty line
    after the first ``skip`` lines (a header).  There are no comment lines: a ``#`` is part
    of a cell.  ``line(i)`` is the line number of row ``i`` (counting blank lines, as an
    editor does)."""

    def __init__(self, src: _Source, skip: int) -> None:
        self.src, self.skip = src, skip

    def loadtxt(self, **kwargs: Any) -> np.ndarray:
        """``np.loadtxt`` over the rows, without its "no data" warning (an empty result is
        reported as an error by the caller)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.loadtxt(self.src.loadtxt_input(), skiprows=self.skip, comments=None,
                              encoding="utf-8-sig", **kwargs)

    def line(self, i: int) -> int:
        with self.src.lines() as f:
            k = -1
            for lineno, line in enumerate(f, 1):
                if lineno > self.skip and line.rstrip("\r\n"):
                    k += 1
                    if k == i:
                        return lineno
        return self.skip + i + 1  # not reached: row i exists

    def __getitem__(self, i: int) -> int:  # a Sequence of line numbers, for the labels
        return self.line(i)


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
    try:
        cells = _split_row(first_line, delim)
    except csv.Error as e:
        raise _csv_error(src, first_no, e) from None
    value_cells = cells[1:] if has_labels else cells
    if not value_cells:
        raise DataError(
            f"{src.name} line {first_no} has a single {_delim_name(delim)}-separated column; "
            "each row is a label then the values (pass labels=False if there are no labels)"
        )
    header = all(not is_number(c) for c in value_cells if c.strip())
    skip = first_no if header else first_no - 1
    ncols = len(cells)
    check_values(max(src.count_lines() - skip, 1) * len(value_cells), src.name)
    rows = _Rows(src, skip)
    opts: dict[str, Any] = {"delimiter": delim}
    if delim == ",":
        opts["quotechar"] = '"'
    y: np.ndarray | None = None
    try:
        data = rows.loadtxt(dtype=np.float64, ndmin=2, **opts)
        if data.shape[0] and data.shape[1] != ncols:
            raise ValueError("column count differs from the first row")
        X = data[:, 1:] if has_labels else data
        if has_labels:
            y = data[:, 0]
            if data.shape[0] and not _all_integral(y):  # "1.5" labels stay the strings they were
                y = _text_labels(src, rows, opts)
    except DataError:  # a ValueError too, but already the precise message
        raise
    except ValueError:
        if not has_labels:
            _raise_parse_error(src, delim, skip, ncols, first_value_col=0)
        # Text labels: the values numerically, the label column as text.
        try:
            X = rows.loadtxt(dtype=np.float64, ndmin=2, usecols=range(1, ncols), **opts)
            y = _text_labels(src, rows, opts)
            if X.shape[0] != y.shape[0]:
                raise ValueError("row count differs") from None
        except DataError:
            raise
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
            raise DataError(f"{src.name} line {rows.line(r)} has no values, only NaN; "
                            "drop that row")
        wrong = inside | np.isinf(X)  # missing values, or infinities (never padding)
        if wrong.any():
            r, c = np.argwhere(wrong)[0]
            raise DataError(
                f"{src.name} line {rows.line(int(r))}, column {c + 1 + has_labels}: value "
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
        _labels_from_text(y, what=what, lines=rows)
        if y.dtype.kind == "U"
        else _normalize_labels(y, what=what)
    )


def _text_labels(src: _Source, rows: _Rows, opts: dict[str, Any]) -> np.ndarray:
    """The label column as text: read as Python strings (one long label costs only itself),
    checked, and only then made a fixed-width array (where it would cost every row)."""
    y = rows.loadtxt(dtype=object, ndmin=1, usecols=0, **opts)
    if y.size:
        lengths = np.fromiter(map(len, y), dtype=np.int64, count=y.size)
        longest = int(np.argmax(lengths))
        check_labels(int(lengths[longest]), y.size, src.size(),
                     lambda: f"{src.name} line {rows.line(longest)}")
    return y.astype(str)


def _check_ragged(src: _Source, delim: str, skip: int, ncols: int) -> None:
    with src.lines() as f:
        for lineno, line in enumerate(f, 1):
            if lineno <= skip or not line.strip():
                continue
            if line.count(delim) != ncols - 1:
                try:
                    n = len(_split_row(line, delim))
                except csv.Error as e:
                    raise _csv_error(src, lineno, e) from None
                if n != ncols:
                    _raise_parse_error(src, delim, skip, ncols, first_value_col=1)


def _raise_parse_error(src: _Source, delim: str, skip: int, ncols: int, first_value_col: int):
    """Find the first bad row/cell with the csv module and raise a precise DataError."""
    with src.lines() as f:
        reader = csv.reader(f, delimiter=delim)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise _csv_error(src, reader.line_num, e) from None
            lineno = reader.line_num
            if lineno <= skip or not row:
                continue
            if not any(c.strip() for c in row):
                raise DataError(
                    f"{src.name} line {lineno} holds only blanks; delete it (or empty it)"
                )
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
                if not is_standard_number(cell):
                    raise DataError(
                        f"{src.name} line {lineno}, column {col + 1}: non-numeric value "
                        f"{cell[:40]!r}; series values must be numbers in a standard "
                        "spelling (digits 0-9, '.', an exponent; no '_' or other digits)"
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
