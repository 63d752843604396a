"""The sktime/UEA ``.ts`` format: ``@`` headers, ``@data``, rows ``ch1:ch2:...:label``,
read in two bounded passes (shapes and labels first, then the values)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from ..errors import DataError
from .delimited import (
    XY,
    Shape,
    _count_lines,
    _utf8_error,
)
from .guards import (
    MAX_LABEL_CHARS,
    check_labels,
    check_values,
    is_standard_number,
    max_values,
    shown,
)
from .labels import _labels_from_text
from .resampling import _resampled
from .validation import check_X

#: A character no number, ',' or ':' of a .ts row has (nan, inf, infinity in any case).
_TS_NOT_NUMERIC = re.compile(r"[^0-9.,:+\-eEnNaAiIfFtTyY \t]")


class _TsRow(NamedTuple):
    lineno: int
    channels: int
    length: int


def _ts_data(f: IO[str]) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` of the non-blank, non-comment lines."""
    for lineno, raw in enumerate(f, 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield lineno, line


def _channel_lengths(values: str) -> list[int] | np.ndarray:
    """Values per channel of ``"1,2,3:4,5,6"``; a row of many channels without a string per
    channel (a row may hold a million): separators found in the row's bytes."""
    if values.count(":") < 64:
        return [text.count(",") + 1 for text in values.split(":")]
    b = np.frombuffer(values.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    colons = np.flatnonzero(b == ord(":"))
    commas = np.flatnonzero(b == ord(","))
    before = np.searchsorted(commas, colons)  # commas before each channel's end
    return np.diff(before, prepend=0, append=len(commas)) + 1


def _first_other(lengths: list[int] | np.ndarray, expected: int) -> int | None:
    """The first channel whose length is not ``expected``."""
    if isinstance(lengths, np.ndarray):
        odd = np.flatnonzero(lengths != expected)
        return int(odd[0]) if odd.size else None
    return next((i for i, k in enumerate(lengths) if k != expected), None)


def _read_ts(path: Path, labels: bool | None, length: int | None = None) -> XY:
    """The sktime/UEA ``.ts`` format: ``@`` headers, ``@data``, rows ``ch1:ch2:...:label``.

    Two passes: the first checks the layout row by row (channels, lengths, labels, the
    ceiling) keeping only a few numbers a row; the second parses the values with
    ``np.loadtxt``, which reads numbers in standard spellings only.
    """
    try:
        return _read_ts_checked(path, labels, length)
    except UnicodeDecodeError:
        raise _utf8_error(path) from None


def _read_ts_checked(path: Path, labels: bool | None, length: int | None) -> XY:
    name = shown(path.name)
    has_labels = False
    equal_length = True
    dimensions: int | None = None
    rows: list[_TsRow] = []
    ys: list[str] = []
    total, limit = 0, max_values()
    data_start = 0
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in _ts_data(f):
            if not data_start:
                if not line.startswith("@"):
                    raise DataError(
                        f"{name} line {lineno}: expected an @header line or @data before "
                        "the series; is this a .ts file?"
                    )
                key, _, value = line[1:].partition(" ")
                key, value = key.lower(), value.strip().lower()
                if key == "data":
                    data_start = lineno
                elif key == "timestamps" and value.startswith("true"):
                    raise DataError(
                        f"{name}: '@timestamps true' is not supported; "
                        "give the values only, one comma-separated list per channel"
                    )
                elif key == "equallength" and value.startswith("false"):
                    equal_length = False  # resampled below, as the file declares
                elif key == "targetlabel" and value.startswith("true"):
                    raise DataError(
                        f"{name} has regression targets (@targetLabel); "
                        "tsformer classifies, it needs @classLabel"
                    )
                elif key == "classlabel":
                    has_labels = value.startswith("true")
                elif key == "dimensions" and value.isascii() and value.isdigit():
                    dimensions = int(value[:30])
                continue
            if "?" in line:
                raise DataError(
                    f"{name} line {lineno} has missing values ('?'); missing values "
                    "are not supported yet: fill or drop those series"
                )
            values = line
            if has_labels:
                values, sep, label = line.rpartition(":")
                if not sep:
                    raise DataError(
                        f"{name} line {lineno} has no class label; @classLabel true "
                        "means each row ends with ':label'"
                    )
                label = label.strip()
                if len(label) > MAX_LABEL_CHARS:
                    check_labels(len(label), 1, 0, lambda n=lineno: f"{name} line {n}")
                ys.append(label)
            # the ceiling first: the row's values, counted without splitting it
            total += values.count(",") + values.count(":") + 1
            if total > limit:
                check_values(total, name)
            if _TS_NOT_NUMERIC.search(values):  # junk, '1_000', other digits: say where
                raise _ts_cell_error(name, lineno, values) or DataError(
                    f"{name} line {lineno} holds characters that are not numbers; series "
                    "values must be numbers in a standard spelling"
                )
            lengths = _channel_lengths(values)
            n = int(lengths[0])
            row = _TsRow(lineno, len(lengths), n)
            first = rows[0] if rows else row
            if row.channels != first.channels:
                raise DataError(
                    f"{name} line {lineno} has {row.channels} channel(s) but line "
                    f"{first.lineno} has {first.channels}; every series needs the same channels"
                )
            if dimensions is not None and row.channels != dimensions:
                raise DataError(
                    f"{name} declares @dimensions {dimensions} but line {lineno} has "
                    f"{row.channels} channel(s); fix the header or the data"
                )
            ch = _first_other(lengths, first.length if equal_length else n)
            if ch is not None:
                if equal_length:
                    raise DataError(
                        f"{name} line {lineno}, channel {ch + 1} has length {lengths[ch]} but "
                        f"line {first.lineno} has {first.length}; declare @equalLength false if "
                        "the series' lengths differ (they are then resampled to one length)"
                    )
                raise DataError(
                    f"{name} line {lineno}, channel {ch + 1} has length {lengths[ch]} but "
                    f"channel 1 has {n}; the channels of a series must have one length"
                )
            rows.append(row)
    if not data_start:
        raise DataError(f"{name} has no @data line; a .ts file is @headers, @data, rows")
    if not rows:
        raise DataError(f"{shown(str(path), 200)} has no series after @data")
    if labels and not has_labels:
        raise DataError(
            f"{name} has no class labels (@classLabel false); training data needs labels"
        )
    y = None
    if has_labels:
        longest = max(range(len(ys)), key=lambda i: len(ys[i]))
        check_labels(len(ys[longest]), len(ys), path.stat().st_size,
                     lambda: f"{name} line {rows[longest].lineno}")
        y = _labels_from_text(np.array(ys), what=f"labels in {name}",
                              lines=[r.lineno for r in rows])
    X = _ts_values(path, name, rows, data_start, has_labels, equal_length, length)
    return X, (y if labels is not False else None)


def _ts_value_lines(f: IO[str], data_start: int, has_labels: bool) -> Iterator[str]:
    """The value part of each data row, channels joined by ',' (what loadtxt reads)."""
    for lineno, line in _ts_data(f):
        if lineno > data_start:
            if has_labels:
                line = line.rpartition(":")[0]
            yield line.replace(":", ",")


def _ts_values(path: Path, name: str, rows: list[_TsRow], data_start: int, has_labels: bool,
               equal_length: bool, length: int | None) -> np.ndarray:
    c = rows[0].channels
    X, parts = None, None
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = _ts_value_lines(f, data_start, has_labels)
            if equal_length:
                X = _loadtxt_values(lines).reshape(len(rows), c, rows[0].length)
            else:
                parts = [_loadtxt_values([line]).reshape(c, r.length)
                         for line, r in zip(lines, rows, strict=False)]
    except ValueError:
        _raise_ts_cell_error(path, name, data_start, has_labels)
    # before resampling, to name the series' own point; equal lengths: one check first
    series = parts if parts is not None else ([] if np.isfinite(X).all() else X)
    for i, part in enumerate(series):
        bad = ~np.isfinite(part)
        if bad.any():
            ch, t = np.argwhere(bad)[0]
            raise DataError(
                f"{name} line {rows[i].lineno}, channel {ch + 1}, timepoint {t + 1} is NaN or "
                "infinite; missing values are not supported yet: fill or drop those series"
            )
    if parts is not None:
        X = _resampled(parts, length, name)
    return check_X(X, what=name)


def _loadtxt_values(lines) -> np.ndarray:
    return np.loadtxt(lines, delimiter=",", dtype=np.float64, comments=None, ndmin=2,
                      quotechar=None)


def _ts_cell_error(name: str, lineno: int, values: str) -> DataError | None:
    """The first value of a row that is not a standard number, with its place."""
    for ch, text in enumerate(values.split(":")):
        for t, cell in enumerate(text.split(",")):
            if not is_standard_number(cell):
                return DataError(
                    f"{name} line {lineno}, channel {ch + 1}, value {t + 1}: non-numeric "
                    f"value {cell.strip()[:40]!r}; series values must be numbers in a "
                    "standard spelling (digits 0-9, '.', an exponent)"
                )
    return None


def _raise_ts_cell_error(path: Path, name: str, data_start: int, has_labels: bool):
    """The first value of the file that is not a standard number (loadtxt refused one)."""
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in _ts_data(f):
            if lineno > data_start:
                error = _ts_cell_error(name, lineno, line.rpartition(":")[0] if has_labels
                                       else line)
                if error is not None:
                    raise error
    raise DataError(f"could not parse the values in {name}; check the numbers after @data")


def _peek_ts(path: Path) -> Shape:
    """Shape from the header, the first series and a line count; with ``@equalLength
    false`` the longest series of the file (what loading resamples to), from counting the
    commas of every line rather than parsing its values."""
    with open(path, "rb") as f:
        has_labels, equal = False, True
        for raw in f:
            line = raw.strip().lower()
            if line.startswith(b"@classlabel"):
                has_labels = b"true" in line
            if line.startswith(b"@equallength"):
                equal = b"false" not in line
            if line.startswith(b"@data"):
                break
        first = b""
        for raw in f:
            if raw.strip() and not raw.startswith(b"#"):
                first = raw.strip()
                break
        if not first:
            return 0, None, None
        fields = first.split(b":")[: -1 if has_labels else None]
        length = fields[0].count(b",") + 1
        if equal:
            return 1 + _count_lines(f), len(fields), length
        n = 1
        for raw in f:
            row = raw.strip()
            if row and not row.startswith(b"#"):
                n += 1
                cells = row.split(b":")[: -1 if has_labels else None]
                length = max([length, *(c.count(b",") + 1 for c in cells)])
        return n, len(fields), length


