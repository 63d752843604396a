"""File readers: one set of series ``(X, y)`` from a .ts, .tsv/.csv, .npy or .npz file.

Every format is one entry of :data:`READERS` (extension -> reader, peek, whether it can be one
half of a ``NAME_TRAIN``/``NAME_TEST`` pair) at the end of this module; :func:`load_file`,
the split discovery in :mod:`.archive` and :func:`~tsformer.data.list_datasets`' summaries
all consult that table, so a new format is a reader function plus one line there.

The .npy/.npz readers are here; the .ts reader is :mod:`.ts_format` and delimited text
(.tsv/.csv, and CSV already in memory) :mod:`.delimited`.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from ..errors import DataError
from .delimited import (
    XY,
    Shape,
    _first_line,
    _peek_delimited_file,
    _read_delimited_file,
)
from .guards import (
    MAX_LABEL_CHARS,
    check_values,
    shown,
)
from .labels import _normalize_labels
from .resampling import _check_length
from .ts_format import _peek_ts, _read_ts
from .validation import check_X

# --------------------------------------------------------------------------- entry points


def _unsupported_ext_message(path: Path) -> str:
    return (
        f"unsupported file type '{shown(path.suffix) or '(none)'}' for {shown(path.name)}; "
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

    Nothing is allocated on a file's word: array headers are checked against the file's
    size, and no file may hold more than :func:`~.guards.max_values` values
    (``$TSFORMER_MAX_VALUES``).
    """
    path = Path(os.fspath(path)).expanduser()
    if length is not None:
        _check_length(length)
    st = _stat_regular_file(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(_unsupported_ext_message(path))
    if st.st_size == 0:
        raise DataError(f"{shown(str(path), 200)} is empty; it holds no series")
    try:
        return reader.read(path, labels, length)
    except OSError as e:  # e.g. EACCES on open, EIO while reading, a file that vanished
        raise DataError(
            f"cannot read {shown(str(path), 200)} ({e.strerror or _first_line(e)}); check that "
            "it exists and that you may read it"
        ) from None
    except MemoryError:
        raise DataError(
            f"{shown(path.name)} needs more memory than this machine can give; load a smaller "
            "file, or split it"
        ) from None


def _stat_regular_file(path: Path) -> os.stat_result:
    """``path``'s stat, or a DataError saying why it is not a regular file one can read."""
    name = shown(str(path), 200)
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(
                f"{name} is a symbolic link to nothing; fix the link or pass the file itself"
            ) from None
        raise DataError(f"file not found: {name}; check the path") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(
                f"{name} is a loop of symbolic links; pass the file itself"
            ) from None
        if e.errno == errno.ENAMETOOLONG:
            raise DataError(
                f"file not found: the name {name} is too long; check the path"
            ) from None
        raise DataError(
            f"cannot read {name} ({e.strerror or _first_line(e)}); check the path and its "
            "permissions"
        ) from None
    except ValueError:  # an embedded NUL character
        raise DataError(f"file not found: {name} is not a valid path; check it") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{name} is a directory; pass a file (load_dataset reads directories)")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(
            f"{name} is not a regular file (a pipe, socket or device); save the data to a file "
            "and pass that"
        )
    return st


# --------------------------------------------------------------------------- .npy / .npz

_NPY_MAGIC = b"\x93NUMPY"
#: What the .npy members may hold: X numbers; y numbers or text (labels).
_X_KINDS, _Y_KINDS = "biuf", "biufUS"
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
#: What zipfile and numpy raise on a corrupt archive or array.
_CORRUPT = (ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
            NotImplementedError, RuntimeError, TypeError, SyntaxError, RecursionError)


def _size(n: int) -> str:
    if n >= 1 << 70:
        return "over a zebibyte"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # not reached


def _dtype_problem(dtype: np.dtype, kinds: str) -> str | None:
    """Why an array of ``dtype`` is refused (None: it is not)."""
    if dtype.hasobject:
        return (f"holds Python objects (dtype {dtype}), which only unpickling could read and "
                "tsformer never unpickles; save plain numbers: np.save(path, "
                "X.astype(np.float32))")
    if dtype.kind in kinds:
        return None
    if dtype.kind == "c":
        return "is complex; save real values (e.g. np.abs(X) or X.real)"
    if dtype.kind in "US":
        return (f"holds text (dtype {dtype}), not numbers; convert it before saving: "
                "X.astype(np.float32)")
    if dtype.kind in "Mm":
        return f"holds dates or times (dtype {dtype}), not numbers; save the values themselves"
    if dtype.kind == "V":
        return (f"holds records (a structured dtype {dtype}), not numbers; save one plain "
                "array of numbers")
    return f"has dtype {dtype}, which is not numbers; save it as float32"


def _check_npy_header(f: IO[bytes], what: str, available: int, role: str) -> None:
    """Read the .npy header at ``f``'s position and check it before any array exists.

    ``available``: the bytes the file (or zip member) really has after its start; the
    header's claim (shape x itemsize) must fit in them, and the values (for ``role`` "X") or
    labels ("y") must be under the ceilings.  Uses numpy's own header parser.
    """
    start = f.tell()
    if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
        raise DataError(f"{what} is not an .npy array (np.save); check the file and its extension")
    f.seek(start)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise DataError(
                f"{what} is an .npy array of format version {version[0]}.{version[1]}, used for "
                "records with unusual field names; save plain numbers with np.save"
            )
    except DataError:
        raise
    except Exception as e:  # numpy's header parser (ast, tokenize) may raise anything
        raise DataError(
            f"{what} is not a readable .npy array (bad header: {_first_line(e)[:120]}); save it "
            "again with np.save"
        ) from None
    problem = _dtype_problem(dtype, _X_KINDS if role == "X" else _Y_KINDS)
    if problem:
        raise DataError(f"{what} {problem}")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise DataError(f"{what} has an impossible shape {shape} in its header; save it again")
    count = math.prod(shape)  # a Python int: no overflow
    claimed = count * dtype.itemsize
    have = available - (f.tell() - start)
    if claimed > have:
        raise DataError(
            f"{what} claims shape {shape} of {dtype} ({_size(claimed)}) but holds "
            f"{_size(max(have, 0))} of data; the file is truncated or corrupt: save it again"
        )
    check_values(count, what)
    if role == "y":
        chars = dtype.itemsize // 4 if dtype.kind == "U" else dtype.itemsize
        if dtype.kind in "US" and chars > MAX_LABEL_CHARS:
            raise DataError(
                f"{what} holds labels of up to {chars:,} characters, over the limit of "
                f"{MAX_LABEL_CHARS}; a label is a class name"
            )


def _read_npy(path: Path, labels: bool | None, length: int | None = None) -> XY:
    name = shown(path.name)
    if labels:
        raise DataError(
            f"{name} is an .npy file, which holds only X; "
            "save X and y together in an .npz: np.savez(path, X=X, y=y)"
        )
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        _check_npy_header(f, shown(str(path), 200), size, "X")
        f.seek(0)
        try:
            X = np.lib.format.read_array(f, allow_pickle=False)
        except _CORRUPT as e:
            raise DataError(
                f"{shown(str(path), 200)} is not a readable .npy array ({_first_line(e)[:120]})"
            ) from None
    return check_X(X, what=name), None


class _Npz:
    """An .npz archive read member by member through zipfile: each member's header is
    checked against the member's real size and the ceilings before its array exists, and
    only the members asked for are read."""

    def __init__(self, path: Path) -> None:
        self.path, self.name = path, shown(path.name)
        full = shown(str(path), 200)
        with open(path, "rb") as f:
            if f.read(2) != b"PK":
                raise DataError(f"{full} is not an .npz archive (np.savez); check the file and "
                                "its extension")
        try:
            self.zip = zipfile.ZipFile(path)
        except (OSError, MemoryError):
            raise
        except Exception as e:  # zipfile's parser: BadZipFile, struct.error, IndexError...
            raise DataError(
                f"{full} is not a readable .npz archive ({_first_line(e)[:120]}); save it "
                "with np.savez(path, X=X, y=y)"
            ) from None
        self.members = {
            (info.filename[:-4] if info.filename.endswith(".npy") else info.filename): info
            for info in self.zip.infolist()
            if not info.filename.endswith("/")  # (ZipInfo.is_dir fails on an empty name)
        }

    def __enter__(self) -> _Npz:
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def keys(self) -> list[str]:
        return sorted(self.members)

    def load(self, key: str, role: str) -> np.ndarray:
        """The array ``key`` (``role`` "X": numbers; "y": labels)."""
        info = self.members[key]
        what = f"{self.name}[{key}]"
        if info.flag_bits & 0x1:
            raise DataError(f"{what} is encrypted; save the arrays with np.savez, no password")
        if info.compress_type not in _ZIP_METHODS:
            raise DataError(
                f"{what} is compressed with a method Python cannot read (zip method "
                f"{info.compress_type}); save it with np.savez or np.savez_compressed"
            )
        try:
            with self.zip.open(info) as f:
                _check_npy_header(f, what, info.file_size, role)
            with self.zip.open(info) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except (DataError, OSError, MemoryError):
            raise
        except Exception as e:  # zipfile's and numpy's parsers on a corrupt member
            raise DataError(
                f"{what} is not a readable array ({_first_line(e)[:120]}); save the archive "
                "again with np.savez(path, X=X, y=y)"
            ) from None


def _read_npz_set(path: Path, labels: bool | None, length: int | None = None) -> XY:
    with _Npz(path) as z:
        name = z.name
        xkey = next((k for k in ("X", "x") if k in z.members), None)
        if xkey is None:
            if "X_train" in z.members:
                raise DataError(
                    f"{name} holds a train/test split (X_train, X_test); "
                    "load it with load_dataset(path)"
                )
            have = ", ".join(shown(k, 40) for k in z.keys()[:10]) or "none"
            raise DataError(
                f"{name} has no 'X' array (it has {have}); save it with np.savez(path, X=X, y=y)"
            )
        X = check_X(z.load(xkey, "X"), what=f"{name}[{xkey}]")
        ykey = next((k for k in ("y", "Y") if k in z.members), None)
        if labels is False:
            return X, None
        if ykey is None:
            if labels:
                raise DataError(f"{name} has no 'y' array of labels; save it with y=...")
            return X, None
        y = z.load(ykey, "y")
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(
            f"{name}: 'y' has shape {y.shape} but X has {len(X)} series; "
            "y must be 1-D with one label per series"
        )
    return X, _normalize_labels(y, what=f"{name}[{ykey}]")


def _read_npz_split(path: Path) -> dict[str, np.ndarray]:
    """X_train, y_train, X_test, y_test of a split .npz (other members are not read)."""
    with _Npz(path) as z:
        want = ("X_train", "y_train", "X_test", "y_test")
        missing = [k for k in want if k not in z.members]
        if missing:
            have = ", ".join(shown(k, 40) for k in z.keys()[:10]) or "no"
            raise DataError(
                f"{z.name} lacks {', '.join(missing)} (it has {have} arrays); a split .npz "
                "needs X_train, y_train, X_test and y_test"
            )
        return {k: z.load(k, k[0]) for k in want}


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
    except (OSError, ValueError, IndexError, StopIteration, zipfile.BadZipFile, csv.Error):
        return None, None, None
