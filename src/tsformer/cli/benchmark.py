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
    from ..benchmark import DEV_SET

    p = sub.add_parser("benchmark", help="train/test a preset on UCR datasets beside MiniRocket",
                       description="Accuracy and time of a preset on datasets, beside "
                       "MiniRocket (published figures, and a live run when aeon is installed).")
    p.add_argument("--datasets", nargs="+", default=list(DEV_SET), metavar="NAME",
                   help="dataset names or paths (default: the 15-dataset development set)")
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
    p.add_argument("--no-minirocket", action="store_true", help="skip the live MiniRocket run")
    p.add_argument("--out", help="output directory (default runs/benchmark-PRESET-TIME)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="train nothing: pool the results of earlier runs (say, one process "
                   "per dataset or per seed) into one table, written to --out if given")
    p.set_defaults(func=cmd_benchmark)


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
            print(f"results written to {args.out}/results.md, results.csv and results.json",
                  file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    out = Path(args.out or f"runs/benchmark-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    command = "tsformer benchmark " + " ".join(sys.argv[1:] if sys.argv[1:2] != ["benchmark"]
                                               else sys.argv[2:])
    results = run_benchmark(
        args.datasets, preset=args.preset, seeds=args.seeds, first_seed=args.first_seed,
        resamples=args.resamples, overrides=overrides,
        max_epochs=args.max_epochs, minirocket=not args.no_minirocket, n_jobs=args.threads,
        out=out, progress=not args.quiet, command=command,
    )
    _print_table(results)
    print(f"results written to {out}/results.md, results.csv and results.json", file=sys.stderr)
    return 0


def _print_table(results: list[dict[str, Any]]) -> None:
    from ..benchmark import markdown_table, seed_line, summarise

    header, rows = summarise(results)
    print(markdown_table(header, rows))
    by_seed = seed_line(results)
    if by_seed:
        print(by_seed)
