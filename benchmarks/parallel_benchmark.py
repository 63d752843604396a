"""Run `tsformer benchmark` as many processes at once, one dataset and seed each, then pool.

Why: a small set's training step is bound by kernel launches (an H200 ran one patchformer
process at about 17 steps a second, the GPU mostly idle), so one GPU serves many processes
at once: 12 side by side gave 6x the throughput of one (docs/results.md, "On a GPU").
On a CPU, run as many as there are cores, each with one thread.

Jobs start longest first (steps = epochs x batches from the preset's data-scaled options),
so the last to finish is a short one.  With ``--deadline`` the jobs still running then are
stopped and reported, and what finished is pooled all the same.

    PYTHONPATH=src python benchmarks/parallel_benchmark.py --workers 15 --seeds 2 3 4 \
        --out runs/gpu [--datasets ...] [--deadline 540] [-- EXTRA BENCHMARK ARGS]

Each job writes ``OUT/s{seed}-{dataset}/`` and its log beside it; the pooled table is
``tsformer benchmark --merge OUT/s*`` written to ``OUT/merged``.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

from tsformer.benchmark import DEV_SET, _load
from tsformer.config import DataShape, resolve


def steps(dataset: str, preset: str) -> int:
    """Optimiser steps of one run (all ensemble members): the longest-first order's key."""
    X, y, _, _, classes = _load(dataset)
    cfg = resolve(preset, DataShape.of(X, len(classes)))
    n_fit = len(X) - math.ceil(len(X) * cfg.train.validation_split)
    return math.ceil(n_fit / cfg.train.batch_size) * cfg.train.epochs * cfg.members


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DEV_SET))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--preset", default="patchformer")
    ap.add_argument("--workers", type=int, default=2, help="processes at once (default 2)")
    ap.add_argument("--deadline", type=float, help="stop what still runs after this many s")
    ap.add_argument("--out", required=True, help="output folder")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = {d: steps(d, args.preset) for d in args.datasets}
    pending = sorted(((d, s) for s in args.seeds for d in args.datasets),
                     key=lambda job: -size[job[0]])
    total, t0 = len(pending), time.time()
    running: dict[subprocess.Popen[bytes], tuple[str, int, float]] = {}
    finished = 0
    while pending or running:
        if args.deadline is not None and time.time() - t0 > args.deadline:
            break
        while pending and len(running) < args.workers:
            d, s = pending.pop(0)
            name = f"s{s}-{d}"
            with open(out / f"{name}.log", "wb") as log:
                p = subprocess.Popen(
                    [sys.executable, "-m", "tsformer", "benchmark", "--datasets", d,
                     "--preset", args.preset, "--first-seed", str(s), "--threads", "1",
                     "--no-minirocket", "--quiet", "--out", str(out / name), *extra],
                    stdout=log, stderr=subprocess.STDOUT)
            running[p] = (d, s, time.time())
        time.sleep(0.5)
        for p in [p for p in running if p.poll() is not None]:
            d, s, start = running.pop(p)
            finished += p.returncode == 0
            print(f"[{time.time() - t0:.0f}s] seed {s} {d}: exit {p.returncode}, "
                  f"{time.time() - start:.0f}s", flush=True)
    for p, (d, s, start) in running.items():
        p.kill()
        print(f"stopped at the deadline: seed {s} {d} after {time.time() - start:.0f}s")
    print(f"{finished} of {total} runs finished in {time.time() - t0:.0f}s"
          + (f"; not started: {len(pending)}" if pending else ""))
    done = sorted(str(d) for d in out.glob("s*-*") if (d / "results.json").is_file())
    if not done:
        return 1
    return subprocess.call([sys.executable, "-m", "tsformer", "benchmark", "--merge", *done,
                            "--out", str(out / "merged")])


if __name__ == "__main__":
    sys.exit(main())
