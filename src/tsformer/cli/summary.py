"""``tsformer summary``: the layer table of exactly what ``train`` would build."""

from __future__ import annotations

import argparse

from .common import add_set_option, parse_overrides


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="layer table of a preset, like Keras' model.summary()",
                       description="The layer table of the model 'tsformer train' builds for "
                       "this preset and data (without training it).")
    p.add_argument("--preset", default="seed", help="model preset (default seed)")
    p.add_argument("--dataset", help="take the data's shape and size from this dataset "
                   "(default: FordA's shape, 1 x 500, 2 classes, size-free defaults)")
    add_set_option(p)
    p.set_defaults(func=cmd_summary)


def cmd_summary(args: argparse.Namespace) -> int:
    import numpy as np

    from ..config import check_overrides
    from ..models import Ensemble, summary
    from ..pipeline import DataShape, resolve

    overrides = parse_overrides(args.overrides)
    check_overrides(args.preset, overrides)
    if args.dataset:
        from ..data import load_dataset

        s = load_dataset(args.dataset)
        shape = DataShape.of(s.X_train, len(np.unique(s.y_train)))
        title = s.name
    else:
        shape, title = DataShape(1, 500, 2), "FordA-shaped input"
    cfg = resolve(args.preset, shape, overrides)
    default = resolve(args.preset, shape).model.to_dict()
    changed = [f"{k}={v}" for k, v in cfg.model.to_dict().items() if default.get(k) != v]
    if cfg.normalize != "none":
        changed.append(f"normalize={cfg.normalize}")
    model = cfg.build()
    print(f'Model: "{cfg.preset}" ({", ".join([cfg.arch, *changed])}) on {title} '
          f"({shape.n_channels} x {shape.n_timepoints}, {shape.n_classes} classes)")
    if isinstance(model, Ensemble):
        print(f"a deep ensemble of {cfg.members} networks, each:")
        print(summary(model.members[0], shape.n_channels, shape.n_timepoints))
        total = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"Total params of the ensemble: {total:,}")
    else:
        print(summary(model, shape.n_channels, shape.n_timepoints))
    return 0
