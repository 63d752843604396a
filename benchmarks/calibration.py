"""Calibration of saved runs on their test split: ECE and NLL without and with the stored
temperature, accuracy, and the coverage and mean size of split-conformal sets.

    # a markdown row per run (a run trained on a named dataset, or pass --test FILE)
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/calibration.py measure RUN [RUN ...]
    # a seeded split of a dataset's training series into fit / held-out TSV files, and its
    # test split, for runs that train on every series (calibrated with tsformer calibrate)
    PYTHONPATH=src python benchmarks/calibration.py split DistalPhalanxTW 300 runs/dptw
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _write(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    np.savetxt(path, np.column_stack([y, X[:, 0, :]]), delimiter="\t", fmt="%.9g")


def split(name: str, n_fit: int, out: Path) -> None:
    from tsformer.data import load_dataset

    d = load_dataset(name, download=False, progress=False)
    idx = np.random.default_rng(0).permutation(len(d.X_train))
    out.mkdir(parents=True, exist_ok=True)
    _write(out / f"{name}_fit.tsv", d.X_train[idx[:n_fit]], d.y_train[idx[:n_fit]])
    _write(out / f"{name}_cal.tsv", d.X_train[idx[n_fit:]], d.y_train[idx[n_fit:]])
    _write(out / f"{name}_test.tsv", d.X_test, d.y_test)
    print(f"{out}/{name}_{{fit,cal,test}}.tsv: {n_fit} / {len(idx) - n_fit} / {len(d.X_test)}")


def measure(runs: list[str], test: str | None, alpha: float) -> None:
    import torch

    from tsformer.calibration import (
        expected_calibration_error,
        nll,
        prediction_sets,
        softmax,
    )
    from tsformer.data import codes_for, load_dataset, load_file
    from tsformer.inference import predict_logits
    from tsformer.models.calibrated import uncalibrated
    from tsformer.pipeline import load

    torch.set_num_threads(1)
    print(f"| run | held-out n | T | held-out ECE before -> after | test ECE before -> after | "
          f"test NLL before -> after | test accuracy | coverage at alpha {alpha} (mean set "
          "size) |")
    print("|---|---:|---:|---|---|---|---:|---|")
    for run in runs:
        model, cfg = load(run, device="cpu")
        if test:
            X, labels = load_file(test)
        else:
            s = load_dataset(cfg.data["name"], download=False, progress=False)
            X, labels = s.X_test, s.y_test
        y = codes_for(labels, cfg.classes, "test")
        z = predict_logits(uncalibrated(model), X, amp=cfg.train.amp).double().numpy()
        c = cfg.calibration
        if c is None:
            print(f"| {run} | not calibrated | | | | | | |")
            continue
        t = c.temperature
        p0, p1 = softmax(z), softmax(z / t)
        sets = prediction_sets(p1, c.threshold(alpha))
        cov = sets[np.arange(len(y)), y].mean()
        print(f"| {Path(run).name} | {c.n} | {t:.3g} | {c.ece_before:.4f} -> {c.ece_after:.4f} "
              f"| {expected_calibration_error(p0, y):.4f} -> "
              f"{expected_calibration_error(p1, y):.4f} | {nll(z, y):.4f} -> "
              f"{nll(z, y, t):.4f} | {(p1.argmax(1) == y).mean():.4f} | {cov:.3f} "
              f"({sets.sum(1).mean():.2f}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("runs", nargs="+")
    m.add_argument("--test", help="labelled test file (default: the run's dataset's test split)")
    m.add_argument("--alpha", type=float, default=0.1)
    s = sub.add_parser("split")
    s.add_argument("name")
    s.add_argument("n_fit", type=int)
    s.add_argument("out", type=Path)
    args = ap.parse_args()
    if args.cmd == "measure":
        measure(args.runs, args.test, args.alpha)
    else:
        split(args.name, args.n_fit, args.out)


if __name__ == "__main__":
    main()
