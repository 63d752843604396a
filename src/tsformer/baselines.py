"""Live baselines for ``tsformer benchmark``: aeon's MiniRocket and MultiRocket-Hydra on the
same split, each in a child process on one thread, and a cache of their results.

aeon pins numpy (and numba) versions that may differ from this environment's, so the child
may run under another interpreter: the first of ``--baselines-python``,
``$TSFORMER_BASELINES_PYTHON``, this interpreter when it can import aeon, and the
``.venv-baselines`` of the checkout (``scripts/setup.sh baselines`` makes it).  The two sides
talk through files only: the split goes to an ``.npz``, the child
(:mod:`tsformer.baseline_worker`, a plain script) writes one JSON object back.

The baselines are deterministic (``random_state=0``), so a result is cached under (dataset,
method, aeon version, a hash of the split's arrays): rerunning the benchmark after a change to
tsformer reuses them, and a change to the data invalidates them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

#: Live baselines by the name the CLI uses; the worker knows the aeon class of each.
METHODS: tuple[str, ...] = ("minirocket", "mr-hydra")
PYTHON_ENV = "TSFORMER_BASELINES_PYTHON"
#: The separate environment ``scripts/setup.sh baselines`` creates beside the checkout.
VENV_NAME = ".venv-baselines"
WORKER = Path(__file__).with_name("baseline_worker.py")
#: Runs the worker by path without putting tsformer's own folder first on sys.path.
_LAUNCH = ("import runpy, sys; del sys.path[0]; sys.argv = sys.argv[1:]; "
           "runpy.run_path(sys.argv[0], run_name='__main__')")
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1"}


class BaselineError(RuntimeError):
    """A live baseline failed in its child process (the benchmark records it and goes on)."""


# --------------------------------------------------------------------------- the interpreter


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def aeon_version(python: str) -> str | None:
    """aeon's version as installed for ``python`` (read from its metadata, aeon is not
    imported), or None when that interpreter has no aeon or cannot be run."""
    code = ("import importlib.metadata as m, importlib.util as u, sys\n"
            "if u.find_spec('aeon') is None: sys.exit(3)\n"
            "try: print(m.version('aeon'))\n"
            "except m.PackageNotFoundError: print('unknown')\n")
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60,
                              env=_child_env(python))
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or "unknown") if done.returncode == 0 else None


def find_python(explicit: str | os.PathLike | None = None) -> tuple[str, str] | None:
    """``(interpreter, aeon version)`` to run the baselines with, or None when none has aeon.

    An interpreter named by the caller or ``$TSFORMER_BASELINES_PYTHON`` must have aeon (a
    :class:`ConfigError` otherwise); the fallbacks are tried quietly."""
    named = explicit if explicit is not None else os.environ.get(PYTHON_ENV) or None
    if named is not None:
        where = "--baselines-python" if explicit is not None else f"${PYTHON_ENV}"
        if not Path(named).is_file():
            raise ConfigError(f"{where} {named} is not a file; name a Python interpreter "
                              f"(such as {VENV_NAME}/bin/python, made by scripts/setup.sh "
                              "baselines)")
        version = aeon_version(str(named))
        if version is None:
            raise ConfigError(f"{where} {named} cannot import aeon; install it there "
                              "(pip install aeon) or run scripts/setup.sh baselines")
        return str(named), version
    candidates = []
    if importlib.util.find_spec("aeon") is not None:
        candidates.append(sys.executable)
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidates.append(str(_venv_python(root / VENV_NAME)))
    for python in candidates:
        if Path(python).is_file():
            version = aeon_version(python)
            if version is not None:
                return python, version
    return None


def _child_env(python: str) -> dict[str, str]:
    """One thread everywhere; this interpreter's sys.path when the child is this interpreter
    (what a spawned process would get), nothing of it for another environment (compared by
    path, not by link target: a venv's python links to the same binary as another's)."""
    env = {**os.environ, **_ONE_THREAD}
    env.pop("PYTHONPATH", None)
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


# --------------------------------------------------------------------------- one run


def run_baseline(method: str, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                 y_test: np.ndarray, *, python: str, timeout: float | None = None
                 ) -> dict[str, Any]:
    """Fit and score ``method`` in a child process of ``python`` on one thread.

    Returns the worker's record: accuracy, ``cpu_seconds`` (process CPU time of fit +
    predict in the child), ``wall_seconds``, the warm-up's CPU time, versions.  A failing
    child is a :class:`BaselineError` with the last line it printed."""
    if method not in METHODS:
        raise ConfigError(f"unknown baseline {method!r}; choose from {', '.join(METHODS)}")
    with tempfile.TemporaryDirectory(prefix="tsformer-baseline-") as tmp:
        split, out = Path(tmp) / "split.npz", Path(tmp) / "result.json"
        np.savez(split, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
        try:
            done = subprocess.run([python, "-c", _LAUNCH, str(WORKER), method, str(split),
                                   str(out)], capture_output=True, text=True, timeout=timeout,
                                  env=_child_env(python))
        except subprocess.TimeoutExpired:
            raise BaselineError(f"{method} ran past {timeout:.0f} s") from None
        if done.returncode != 0 or not out.is_file():
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise BaselineError(f"{method} failed: {last}")
        return json.loads(out.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the cache


def split_hash(*arrays: np.ndarray) -> str:
    """A short fingerprint of the split's arrays (shapes, dtypes and bytes)."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def cache_key(dataset: str, method: str, aeon: str, fingerprint: str) -> str:
    return f"{dataset}|{method}|aeon {aeon}|{fingerprint}"


class BaselineCache:
    """Baseline results by :func:`cache_key`, kept in one JSON file (rewritten atomically
    after each new result, merged with what another run wrote meanwhile)."""

    def __init__(self, path: Path | None, extra: dict[str, dict[str, Any]] | None = None):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path is not None:
            self.entries.update(self._read(path))
        self.entries.update(extra or {})

    @staticmethod
    def _read(path: Path) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the baseline cache {path} ({e}); remove it or "
                              "pass another --baselines-cache") from None
        return data.get("entries", {}) if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def find(self, dataset: str, method: str, fingerprint: str) -> dict[str, Any] | None:
        """A result for this split under any aeon version (the newest key), for runs where
        no interpreter with aeon is at hand."""
        keys = sorted(k for k in self.entries
                      if k.startswith(f"{dataset}|{method}|") and k.endswith(f"|{fingerprint}"))
        return self.entries[keys[-1]] if keys else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Keep ``value``, and write the file: what is there now plus this run's entries,
        under a lock so that benchmark processes sharing the cache lose nothing."""
        self.entries[key] = value
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path.with_name(f".{self.path.name}.lock")):
            merged = {**self._read(self.path), **self.entries}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"entries": merged}, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (POSIX advisory lock; none where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: a lost entry is only a rerun
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def entries_from(path: Path) -> dict[str, dict[str, Any]]:
    """Cached baseline results from a cache file or an earlier ``results.json``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"--baselines-from {path}: cannot read it ({e}); pass a results.json "
                          "written by tsformer benchmark or a baseline cache") from None
    if isinstance(data, dict) and isinstance(data.get("entries"), dict):
        return data["entries"]
    out: dict[str, dict[str, Any]] = {}
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        for r in data["results"]:
            for runs in (r.get("baselines") or {}).values():
                for run in runs if isinstance(runs, list) else [runs]:
                    if isinstance(run, dict) and run.get("key"):
                        out[run["key"]] = run
        return out
    raise ConfigError(f"--baselines-from {path} is neither a results.json of tsformer "
                      "benchmark nor a baseline cache")
