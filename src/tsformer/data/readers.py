"""File readers: one set of series ``(X, y)`` from a .ts, .tsv/.csv, .npy or .npz file.

Every format is one entry of :data:`READERS` (extension -> reader, peek, whether it can be one
half of a ``NAME_TRAIN``/``NAME_TEST`` pair) at the end of this module; :func:`load_file`,
the split discovery in :mod:`.archive` and :func:`~tsformer.data.list_datasets`' summaries
all consult that table, so a new format is a reader function plus one line there.

The .npy/.npz and .ts readers are here; delimited text (.tsv/.csv, and CSV already in
memory) is :mod:`.delimited`.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from .delimited import (
    XY,
    Shape,
    _count_lines,
    _peek_delimited_file,
    _read_delimited_file,
    is_number,
)
from .labels import _labels_from_text, _normalize_labels
from .resampling import _check_length, _resampled
from .validation import check_X

# --------------------------------------------------------------------------- entry points


def _unsupported_ext_message(path: Path) -> str:
    return (
        f"unsupported file type '{path.suffix or '(none)'}' for {path.name}; "
        f"supported: {', '.join(FILE_EXTENSIONS)}"
    )


def load_file(
    path: str | os.PathLike, *, labels: bool | None = None, length: int | None = None
) -> XY:
    """Read one set of series: ``(X, y)``, X float32 ``(n, channels, timepoints)``.

    ``labels=None`` means auto: tsv/csv have a label first column, .ts says so in its
    ``@classLabel`` header, .npz has a ``y`` array.  ``labels=False`` reads a tsv/csv whose
    every column is a value (series to predict); ``labels=True`` insists on labels.

    Unequal-length series, as the archives store them (tsv/csv rows padded with trailing
    NaN, .ts files with ``@equalLength false``), are resampled (:func:`resample`) to
    ``length`` points, or to the longest series' length, with a :class:`ResampledWarning`
    saying so.  Equal-length files are returned as they are, whatever ``length`` says
    (a padded or ``@equalLength false`` file whose series share one length is resampled only
    if ``length`` differs from it).
    """
    path = Path(os.fspath(path)).expanduser()
    if length is not None:
        _check_length(length)
    if not path.exists():
        raise DataError(f"file not found: {path}; check the path")
    if path.is_dir():
        raise DataError(f"{path} is a directory; pass a file (load_dataset reads directories)")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(_unsupported_ext_message(path))
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty; it holds no series")
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e}); check its permissions") from None
    return reader.read(path, labels, length)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --------------------------------------------------------------------------- .npy / .npz


def _check_magic(path: Path, magic: bytes, what: str) -> None:
    """np.load falls back to pickle for unknown bytes; say plainly what the file is not."""
    with open(path, "rb") as f:
        if f.read(len(magic)) != magic:
            raise DataError(f"{path} is not {what}; check the file and its extension")


def _read_npy(path: Path, labels: bool | None, length: int | None = None) -> XY:
    if labels:
        raise DataError(
            f"{path.name} is an .npy file, which holds only X; "
            "save X and y together in an .npz: np.savez(path, X=X, y=y)"
        )
    _check_magic(path, b"\x93NUMPY", "an .npy array (np.save)")
    try:
        X = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .npy array ({_first_line(e)})") from None
    return check_X(X, what=path.name), None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    _check_magic(path, b"PK", "an .npz archive (np.savez)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{path} is not a readable .npz archive of plain arrays ({_first_line(e)}); "
            "save it with np.savez(path, X=X, y=y) (no object arrays)"
        ) from None


def _read_npz_set(path: Path, labels: bool | None, length: int | None = None) -> XY:
    arrays = _read_npz(path)
    xkey = next((k for k in ("X", "x") if k in arrays), None)
    if xkey is None:
        if "X_train" in arrays:
            raise DataError(
                f"{path.name} holds a train/test split (X_train, X_test); "
                "load it with load_dataset(path)"
            )
        raise DataError(
            f"{path.name} has no 'X' array (it has {', '.join(sorted(arrays)) or 'none'}); "
            "save it with np.savez(path, X=X, y=y)"
        )
    X = check_X(arrays[xkey], what=f"{path.name}[{xkey}]")
    ykey = next((k for k in ("y", "Y") if k in arrays), None)
    if labels is False:
        return X, None
    if ykey is None:
        if labels:
            raise DataError(f"{path.name} has no 'y' array of labels; save it with y=...")
        return X, None
    y = np.asarray(arrays[ykey])
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(
            f"{path.name}: 'y' has shape {y.shape} but X has {len(X)} series; "
            "y must be 1-D with one label per series"
        )
    return X, _normalize_labels(y, what=f"{path.name}[{ykey}]")


def _peek_npz(path: Path) -> Shape:
    with zipfile.ZipFile(path) as z:
        member = next(n for n in ("X.npy", "x.npy") if n in z.namelist())
        with z.open(member) as f:
            version = np.lib.format.read_magic(f)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape = tuple(reader(f)[0])
    return (shape[0], *(shape[1:] if len(shape) == 3 else (1, shape[1])))


# --------------------------------------------------------------------------- .ts


def _ts_lines(f: io.TextIOBase) -> Iterator[tuple[int, str]]:
    for lineno, raw in enumerate(f, 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield lineno, line


def _read_ts(path: Path, labels: bool | None, length: int | None = None) -> XY:
    """The sktime/UEA ``.ts`` format: ``@`` headers, ``@data``, rows ``ch1:ch2:...:label``."""
    has_labels = False
    equal_length = True
    series: list[list[str]] = []
    ys: list[str] = []
    first_row: tuple[int, int, int] | None = None  # line, channels, length
    in_data = False
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in _ts_lines(f):
                if not in_data:
                    if not line.startswith("@"):
                        raise DataError(
                            f"{path.name} line {lineno}: expected an @header line or @data before "
                            "the series; is this a .ts file?"
                        )
                    key, _, value = line[1:].partition(" ")
                    key, value = key.lower(), value.strip().lower()
                    if key == "data":
                        in_data = True
                    elif key == "timestamps" and value.startswith("true"):
                        raise DataError(
                            f"{path.name}: '@timestamps true' is not supported; "
                            "give the values only, one comma-separated list per channel"
                        )
                    elif key == "equallength" and value.startswith("false"):
                        equal_length = False  # resampled below, as the file declares
                    elif key == "targetlabel" and value.startswith("true"):
                        raise DataError(
                            f"{path.name} has regression targets (@targetLabel); "
                            "tsformer classifies, it needs @classLabel"
                        )
                    elif key == "classlabel":
                        has_labels = value.startswith("true")
                    continue
                if "?" in line:
                    raise DataError(
                        f"{path.name} line {lineno} has missing values ('?'); missing values "
                        "are not supported yet: fill or drop those series"
                    )
                fields = line.split(":")
                if has_labels:
                    if len(fields) < 2:
                        raise DataError(
                            f"{path.name} line {lineno} has no class label; @classLabel true "
                            "means each row ends with ':label'"
                        )
                    ys.append(fields.pop().strip())
                series_len = fields[0].count(",") + 1
                if first_row is None:
                    first_row = (lineno, len(fields), series_len)
                elif len(fields) != first_row[1]:
                    raise DataError(
                        f"{path.name} line {lineno} has {len(fields)} channel(s) but line "
                        f"{first_row[0]} has {first_row[1]}; every series needs the same channels"
                    )
                for ch, text in enumerate(fields):
                    n = series_len if ch == 0 else text.count(",") + 1
                    if equal_length and n != first_row[2]:
                        raise DataError(
                            f"{path.name} line {lineno}, channel {ch + 1} has length {n} but line "
                            f"{first_row[0]} has {first_row[2]}; declare @equalLength false if "
                            "the series' lengths differ (they are then resampled to one length)"
                        )
                    if n != series_len:
                        raise DataError(
                            f"{path.name} line {lineno}, channel {ch + 1} has length {n} but "
                            f"channel 1 has {series_len}; the channels of a series must have "
                            "one length"
                        )
                series.append(fields)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 text .ts file") from None
    if not in_data:
        raise DataError(f"{path.name} has no @data line; a .ts file is @headers, @data, rows")
    if not series or first_row is None:
        raise DataError(f"{path} has no series after @data")
    if labels and not has_labels:
        raise DataError(
            f"{path.name} has no class labels (@classLabel false); training data needs labels"
        )
    n, c, t = len(series), first_row[1], first_row[2]
    try:
        if equal_length:
            flat = ",".join(",".join(fields) for fields in series)
            X = np.array(flat.split(","), dtype=np.float64).reshape(n, c, t)
        else:
            parts = [np.array([text.split(",") for text in fields], dtype=np.float64)
                     for fields in series]
    except ValueError:
        _raise_ts_cell_error(path, series)
    if equal_length:
        bad = ~np.isfinite(X)
        if bad.any():
            _raise_ts_missing(path, *np.argwhere(bad)[0])
    else:
        for i, part in enumerate(parts):  # before resampling, to name the series' own point
            if not np.isfinite(part).all():
                _raise_ts_missing(path, i, *np.argwhere(~np.isfinite(part))[0])
        X = _resampled(parts, length, path.name)
    X = check_X(X, what=path.name)
    y = _labels_from_text(np.array(ys), what=f"labels in {path.name}") if has_labels else None
    return X, (y if labels is not False else None)


def _raise_ts_missing(path: Path, i: int, ch: int, tt: int):
    raise DataError(
        f"{path.name} series {i + 1}, channel {ch + 1}, timepoint {tt + 1} is NaN or "
        "infinite; missing values are not supported yet: fill or drop those series"
    )


def _raise_ts_cell_error(path: Path, series: list[list[str]]):
    for i, fields in enumerate(series):
        for ch, text in enumerate(fields):
            for t, cell in enumerate(text.split(",")):
                if not is_number(cell):
                    raise DataError(
                        f"{path.name} series {i + 1}, channel {ch + 1}, value {t + 1}: "
                        f"non-numeric value {cell.strip()[:40]!r}; series values must be numbers"
                    )
    raise DataError(f"could not parse the values in {path.name}")


def _peek_ts(path: Path) -> Shape:
    with open(path, "rb") as f:
        has_labels = False
        for raw in f:
            line = raw.strip().lower()
            if line.startswith(b"@classlabel"):
                has_labels = b"true" in line
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
        return 1 + _count_lines(f), len(fields), fields[0].count(b",") + 1


# --------------------------------------------------------------------------- the table


class Reader(NamedTuple):
    """How one file format is read."""

    #: ``read(path, labels, length) -> (X, y)``, as :func:`load_file` documents.
    read: Callable[[Path, bool | None, int | None], XY]
    #: ``peek(path) -> (n_cases, n_channels, n_timepoints)`` without parsing the values, for
    #: :func:`~tsformer.data.list_datasets`; may raise OSError/ValueError (then: unknown).
    peek: Callable[[Path], Shape] | None
    #: Whether a ``NAME_TRAIN``/``NAME_TEST`` pair may be in this format.
    split: bool = True


#: Extension (lower case, with the dot) -> its :class:`Reader`.  Add a file format here.
#: The order is the preference when a directory holds a pair in more than one format.
READERS: dict[str, Reader] = {
    ".ts": Reader(_read_ts, _peek_ts),
    ".tsv": Reader(_read_delimited_file("\t"), _peek_delimited_file("\t")),
    ".csv": Reader(_read_delimited_file(","), _peek_delimited_file(",")),
    ".npy": Reader(_read_npy, None, split=False),  # X only: never half of a labelled pair
    ".npz": Reader(_read_npz_set, _peek_npz),
}

#: Extensions :func:`load_file` reads.
FILE_EXTENSIONS = tuple(READERS)
#: Extensions a ``NAME_TRAIN``/``NAME_TEST`` pair may have, in order of preference.
SPLIT_EXTENSIONS = tuple(ext for ext, r in READERS.items() if r.split)


def _peek(path: Path) -> Shape:
    """``(n_cases, n_channels, n_timepoints)`` from the first row and a line count."""
    reader = READERS.get(path.suffix.lower())
    if reader is None or reader.peek is None:
        return None, None, None
    try:
        return reader.peek(path)
    except (OSError, ValueError, IndexError, StopIteration, zipfile.BadZipFile):
        return None, None, None
