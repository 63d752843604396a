"""Series predicted per second on one thread: patchformer's default model for a data set
beside MiniRocket on the same series.

Why: a small-set model is an ensemble over fixed MiniRocket features, and prediction speed
is what a deployment pays for every series; MiniRocket is the yardstick.  Prediction cost
does not depend on the trained weights, so the model is built as training would build it
(the preset's defaults for the training set's size, the rocket thresholds from its training
series) and timed untrained.  CPU seconds of the process, best of ``--repeats``.

    PYTHONPATH=src python benchmarks/predict_speed.py [--dataset ArrowHead] [--repeats 3]
        [--batch 256] [--minirocket-python PY]

``--minirocket-python``: a Python with aeon installed (e.g. .venv-baselines/bin/python); its
MiniRocketClassifier is fitted on the training split and its ``predict`` timed in that
process, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from tsformer.config import DataShape, resolve
from tsformer.data import encode_labels, load_dataset
from tsformer.inference import predict_logits

MINIROCKET = """
import json, sys, time, numpy as np
from aeon.classification.convolution_based import MiniRocketClassifier
d = np.load(sys.argv[1])
clf = MiniRocketClassifier(n_jobs=1, random_state=0).fit(d["X"], d["y"])
best = float("inf")
for _ in range(int(sys.argv[2])):
    t = time.process_time(); clf.predict(d["Xt"]); best = min(best, time.process_time() - t)
print(json.dumps({"series_per_second": len(d["Xt"]) / best}))
"""


def tsformer_speed(X: np.ndarray, n_classes: int, Xt: np.ndarray, batch: int, repeats: int
                   ) -> tuple[float, str]:
    cfg = resolve("patchformer", DataShape.of(X, n_classes))
    model = cfg.build().eval()
    nets = getattr(model, "members", [model])
    for net in nets:
        net.init_from_data(torch.from_numpy(X[:64]))
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        predict_logits(model, Xt, batch_size=batch)
        best = min(best, time.process_time() - t)
    what = f"{cfg.members} member(s), stem {cfg.model.stem}"
    return len(Xt) / best, what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="ArrowHead")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--minirocket-python")
    a = ap.parse_args()
    torch.set_num_threads(1)
    s = load_dataset(a.dataset, progress=False)
    y, classes = encode_labels(s.y_train)
    X, Xt = (np.asarray(v, np.float32) for v in (s.X_train, s.X_test))
    rate, what = tsformer_speed(X, len(classes), Xt, a.batch, a.repeats)
    print(f"{a.dataset}: {len(Xt)} test series of {Xt.shape[1]} x {Xt.shape[2]}")
    print(f"tsformer patchformer ({what}), batch {a.batch}: {rate:,.0f} series/s")
    if a.minirocket_python:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "split.npz")
            np.savez(path, X=X, y=np.asarray(s.y_train), Xt=Xt)
            env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
            out = subprocess.run([a.minirocket_python, "-c", MINIROCKET, path, str(a.repeats)],
                                 capture_output=True, text=True, env=env, check=True)
        mr = json.loads(out.stdout.strip().splitlines()[-1])["series_per_second"]
        print(f"MiniRocket (aeon, one thread): {mr:,.0f} series/s; tsformer / MiniRocket "
              f"{rate / mr:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
