"""``tsformer benchmark``: accuracy and time of a preset on datasets (see
:mod:`tsformer.benchmark`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import (
    add_set_option,
    non_negative_int,
    parse_overrides,
    positive_int,
    whole_number,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..baselines import METHODS, PYTHON_ENV, VENV_NAME
    from ..suite import SUITES

    p = sub.add_parser("benchmark", help="train/test a preset on UCR datasets beside live and "
                       "published baselines",
                       description="Accuracy and CPU time of a preset on datasets, beside live "
                       "MiniRocket and MultiRocket-Hydra runs (aeon, one thread each, cached) "
                       "and published figures.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--datasets", nargs="+", metavar="NAME",
                       help="dataset names or paths (default: --suite dev15)")
    which.add_argument("--suite", choices=list(SUITES),
                       help=f"a named list: dev = the {len(SUITES['dev'])} offline UCR sets "
                       "with published bake off redux figures, dev15 = the 15-set development "
                       "list (the default)")
    p.add_argument("--preset", default="patchformer", help="preset to train (default patchformer)")
    p.add_argument("--seeds", type=whole_number(1, 1000), default=1,
                   help="seeds per dataset (default 1)")
    p.add_argument("--first-seed", type=non_negative_int, default=0,
                   help="seeds are FIRST..FIRST+N-1 (default 0): split seeds over processes")
    p.add_argument("--resamples", type=whole_number(1, 1000), default=1,
                   help="train/test resamples per dataset (default 1: the archive's split); "
                   "30 is the protocol of the published MiniRocket figures")
    p.add_argument("--max-epochs", type=positive_int,
                   help="cap every run's epochs (quick checks)")
    add_set_option(p)
    p.add_argument("--threads", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="torch CPU threads (default min(2, cores))")
    p.add_argument("--baselines", nargs="+", choices=list(METHODS), default=list(METHODS),
                   metavar="METHOD", help=f"live baselines to run ({', '.join(METHODS)}; "
                   "default both), each in a child process on one thread")
    p.add_argument("--no-baselines", "--no-minirocket", dest="no_baselines",
                   action="store_true", help="run no live baseline")
    p.add_argument("--baselines-only", action="store_true",
                   help="train nothing: run (or cache) the live baselines alone")
    p.add_argument("--baselines-python", metavar="PATH",
                   help=f"the Python interpreter with aeon that runs the baselines (default: "
                   f"${PYTHON_ENV}, else this one when it has aeon, else {VENV_NAME}/bin/python "
                   "made by scripts/setup.sh baselines; none found: cached results only)")
    p.add_argument("--baselines-cache", metavar="FILE", default="runs/baselines/cache.json",
                   help="baseline results by (dataset, method, aeon version, split hash), "
                   "reused instead of rerunning (default runs/baselines/cache.json)")
    p.add_argument("--no-baselines-cache", action="store_true",
                   help="neither read nor write the baseline cache")
    p.add_argument("--baselines-from", metavar="FILE",
                   help="reuse the baseline results of an earlier results.json (or a cache "
                   "file) where the split matches")
    p.add_argument("--out", help="output directory (default runs/benchmark-PRESET-TIME)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="train nothing: pool the results of earlier runs (say, one process "
                   "per dataset or per seed) into one table, written to --out if given")
    p.set_defaults(func=cmd_benchmark)


def _live_baselines(args: argparse.Namespace) -> Any:
    """The live baselines of this run, checked before any work: the interpreter (None when
    none has aeon: then only cached results show), the cache, results to reuse."""
    from ..baselines import BaselineCache, entries_from, find_python
    from ..benchmark import LiveBaselines

    if args.no_baselines:
        if args.baselines_only:
            raise ConfigError("--baselines-only with --no-baselines runs nothing; drop one")
        return None
    extra = entries_from(Path(args.baselines_from)) if args.baselines_from else None
    found = find_python(args.baselines_python)
    if found is None:
        if args.baselines_only and not extra:
            raise ConfigError("--baselines-only needs aeon: run scripts/setup.sh baselines, or "
                              "name an interpreter with aeon by --baselines-python")
        print("tsformer: note: no Python with aeon found, live baselines come from the cache "
              "only (scripts/setup.sh baselines makes one)", file=sys.stderr)
    cache = BaselineCache(None if args.no_baselines_cache else Path(args.baselines_cache),
                          extra)
    python, aeon = found if found is not None else (None, None)
    return LiveBaselines(args.baselines, python, aeon, cache)


def cmd_benchmark(args: argparse.Namespace) -> int:
    import torch

    from ..benchmark import merge_results, run_benchmark, write_results

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, not {args.seeds}")
    if args.resamples < 1:
        raise ConfigError(f"--resamples must be >= 1, not {args.resamples}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, not {args.threads}")
    from ..model_dir import check_creatable

    if args.out is not None:
        check_creatable(args.out)
    for d in args.merge or []:
        if not Path(d).is_dir():
            raise ConfigError(f"--merge {d} is not a directory written by 'tsformer benchmark'")
    if args.merge:
        results, meta = merge_results(args.merge)
        if args.out:
            write_results(Path(args.out), results, meta)
        _print_table(results)
        if args.out:
            print(f"results written to {args.out}/results.md, results.csv, results.json and "
                  "accuracy_vs_cpu.png", file=sys.stderr)
        return 0
    from ..suite import SUITES

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    baselines = _live_baselines(args)
    datasets = args.datasets or list(SUITES[args.suite or "dev15"])
    out = Path(args.out or f"runs/benchmark-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    command = "tsformer benchmark " + " ".join(sys.argv[1:] if sys.argv[1:2] != ["benchmark"]
                                               else sys.argv[2:])
    try:
        results = run_benchmark(
            datasets, preset=args.preset, seeds=args.seeds, first_seed=args.first_seed,
            resamples=args.resamples, overrides=overrides, max_epochs=args.max_epochs,
            minirocket=False, out=out, progress=not args.quiet, command=command,
            baselines=baselines, train=not args.baselines_only,
        )
    except KeyboardInterrupt:
        done = _count_done(out)
        print(f"tsformer: interrupted: PARTIAL results ({done} of {len(datasets)} datasets) "
              f"written to {out}/results.md, results.csv and results.json", file=sys.stderr)
        return 130
    _print_table(results)
    print(f"results written to {out}/results.md, results.csv, results.json and "
          "accuracy_vs_cpu.png", file=sys.stderr)
    return 0


def _count_done(out: Path) -> int:
    import json

    try:
        return len(json.loads((out / "results.json").read_text(encoding="utf-8"))["results"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _print_table(results: list[dict[str, Any]]) -> None:
    from ..benchmark import markdown_table, seed_line, summarise
    from ..suite import footnotes

    header, rows = summarise(results)
    print(markdown_table(header, rows))
    print("\n".join(footnotes(results)))
    by_seed = seed_line(results)
    if by_seed:
        print(by_seed)
