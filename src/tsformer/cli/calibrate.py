"""``tsformer calibrate``: fit a saved model's temperature and conformal scores on labelled
series held out from its training, and record them in its config.json."""

from __future__ import annotations

import argparse
import json

from ..errors import DataError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="calibrate a saved model's probabilities on held-out labelled series",
        description="Fit temperature scaling (one scalar T dividing the logits, chosen to "
        "minimise the negative log-likelihood) and the split-conformal scores on labelled "
        "series the model never trained on, and record them in RUN_DIR/config.json (the "
        "weights are unchanged). Runs with a validation split are calibrated on it by "
        "tsformer train; a run that trained on every series (patchformer below 500 series) "
        "needs series held out by you. Accuracy is unchanged: the temperature never changes "
        "the most likely label.")
    p.add_argument("run_dir", help="model or run directory (tsformer train's --out)")
    p.add_argument("--data", required=True, metavar="FILE",
                   help="labelled series held out from training (.tsv, .csv, .ts, .npy, .npz); "
                   "never the test split you report scores on")
    p.add_argument("--json", action="store_true", help="print the calibration record as JSON")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..data import codes_for
    from ..model_dir import write_config
    from ..pipeline import calibrate, load
    from .common import say
    from .reading import read_for_model

    model, cfg = load(args.run_dir, device="cpu")
    X, y = read_for_model(args.data, cfg.n_channels, cfg.n_timepoints, cfg.classes,
                          evaluating=True)
    if y is None:
        raise DataError(f"{args.data} has no label column; calibration needs labels")
    model, cfg = calibrate(model, cfg, X, codes_for(y, cfg.classes, args.data),
                           fitted_on="user data")
    write_config(args.run_dir, cfg, model)
    c = cfg.calibration
    if args.json:
        say(json.dumps(c.summary(), indent=2))
    else:
        say(f"temperature {c.temperature:.4g} on {c.n} series: ECE {c.ece_before:.4f} -> "
            f"{c.ece_after:.4f}, NLL {c.nll_before:.4f} -> {c.nll_after:.4f}"
            + (f" ({c.reason})" if c.reason else ""))
        say(f"calibration written to {args.run_dir}/config.json")
    return 0
