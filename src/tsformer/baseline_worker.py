"""The child side of a live baseline run: ``python baseline_worker.py METHOD SPLIT.npz OUT.json``.

Runs as a plain script under whichever interpreter has aeon (this environment's, or a separate
one such as ``.venv-baselines`` when aeon's numpy pin clashes with this one), so it imports
nothing from tsformer: only the standard library, numpy and aeon.  It reads the split from an
``.npz`` (``X_train``, ``y_train``, ``X_test``, ``y_test``), fits one aeon classifier on one
thread, and writes one JSON object (written to a temporary file, then renamed).

CPU time is ``time.process_time`` of this process around fit + predict.  Numba compiles (or
loads from its cache) aeon's kernels on the first call in a process, so a small warm-up fit on
random data of the same shape comes first and its cost is reported apart, as
``warmup_cpu_seconds``.
"""

from __future__ import annotations

import json
import os
import sys
import time

#: Method name -> (aeon module, class name).  Both use aeon's defaults, ``random_state=0``.
METHODS = {
    "minirocket": ("aeon.classification.convolution_based", "MiniRocketClassifier"),
    "mr-hydra": ("aeon.classification.convolution_based", "MultiRocketHydraClassifier"),
}


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def run(method: str, split: str) -> dict:
    """Fit ``method`` on the split's training part, score it on the test part."""
    import importlib

    import numpy as np

    module, cls_name = METHODS[method]
    cls = getattr(importlib.import_module(module), cls_name)
    with np.load(split) as z:
        X, y = np.asarray(z["X_train"], np.float64), np.asarray(z["y_train"])
        Xt, yt = np.asarray(z["X_test"], np.float64), np.asarray(z["y_test"])
    rng = np.random.default_rng(0)
    warm_X = rng.standard_normal((8, X.shape[1], X.shape[2]))
    warm_y = np.array([0, 1] * 4)
    cpu = time.process_time()
    warm = cls(n_jobs=1, random_state=0)
    warm.fit(warm_X, warm_y)
    warm.predict(warm_X)
    warmup_cpu = time.process_time() - cpu

    clf = cls(n_jobs=1, random_state=0)
    wall, cpu = time.perf_counter(), time.process_time()
    clf.fit(X, y)
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    pred = np.asarray(clf.predict(Xt))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "method": method,
        "estimator": cls_name,
        "accuracy": float((pred == yt).mean()),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "fit_cpu_seconds": fit_cpu,
        "train_seconds": fit_wall,
        "warmup_cpu_seconds": warmup_cpu,
        "n_jobs": 1,
        "random_state": 0,
        "aeon_version": _version("aeon"),
        "numpy_version": np.__version__,
        "python": sys.version.split()[0],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in METHODS:
        print(f"usage: baseline_worker.py {{{','.join(METHODS)}}} SPLIT.npz OUT.json",
              file=sys.stderr)
        return 2
    method, split, out = argv
    result = run(method, split)
    tmp = f"{out}.part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
