"""``time_limit``: wall-clock seconds of fit and of predict under a limit, on one thread, with
the accuracy reached and what the plan had to give up (epochs cut, members dropped).

Why: ``TransformerClassifier(preset="patchformer", time_limit=S)`` promises to finish within
S seconds on the machine it runs on (prediction on top); this measures the promise on named
data sets rather than trusting the cost model.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/time_limit.py [--limit 60]
        [--datasets ArrowHead FordA ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=float, default=60.0)
    ap.add_argument("--datasets", nargs="+", default=["ArrowHead", "FordA"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)

    from tsformer import TransformerClassifier
    from tsformer.suite import load_split

    print(f"| dataset | train | test | fit s | predict s | fit <= {a.limit:g} s, fit + predict "
          f"<= {1.05 * a.limit:g} s | accuracy | planned | kept |")
    print("|---|---:|---:|---:|---:|---|---:|---|---|")
    for name in a.datasets:
        X, y, Xt, yt, _ = load_split(name)
        clf = TransformerClassifier("patchformer", time_limit=a.limit, random_state=a.seed,
                                    verbose=False)
        t = time.perf_counter()
        clf.fit(X, y)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        pred = clf.predict(Xt)
        pred_s = time.perf_counter() - t
        acc = float(np.mean(pred == yt))
        cfg, hs = clf.config_, clf.histories_
        kept = ", ".join(str(len(h.rows)) for h in hs) + " epochs"
        ok = fit_s <= a.limit and fit_s + pred_s <= 1.05 * a.limit
        print(f"| {name} | {len(X)} | {len(Xt)} | {fit_s:.1f} | {pred_s:.1f} | "
              f"{'yes' if ok else 'no'} | {acc:.4f} | {cfg.train.epochs} epochs x "
              f"{_planned_members(X, y, a.limit)} | {kept} ({len(hs)} network(s)) |", flush=True)


def _planned_members(X: np.ndarray, y: np.ndarray, limit: float) -> int:
    """Members the plan chose for this limit (the fitted config holds those kept)."""
    from tsformer.config import DataShape, resolve

    X = X if X.ndim == 3 else X[:, None, :]
    return resolve("patchformer", DataShape.of(X, len(np.unique(y))),
                   {"train": {"time_limit": limit}}).members


if __name__ == "__main__":
    main()
