"""Seconds per training step of one patchformer network with the rocket stem, at the shapes
of the development set's small sets: patch means by block sums (the code) against
``avg_pool1d`` (before), and the stem's features alone.

Why: below 500 training series the rocket stem's features (84 kernels x dilations x 4
thresholds at full resolution) are a third to a half of a step on the CPU, and the patch
means were their largest part.  Both ways give the same numbers bit for bit, so only time
is compared.  They are timed in the SAME run, interleaved, so the ratio is meaningful on a
shared, noisy machine; CPU time of the process (not wall time, which waits for the other
processes on a busy machine), medians over steps after one warm-up step.

    PYTHONPATH=src python benchmarks/rocket_stem_speed.py [--steps 7] [--threads 1]
        [--compare pooling|precision|amp]

``--compare precision`` times the stem's bf16 rounding (``stem_precision="bf16"``, the
preset's) against full precision instead; those two give different features by design.
``--compare amp`` times the whole step under ``train.amp="bf16-emulated"``
(:class:`tsformer.amp.EmulatedBF16`) against float32, the stem in bf16 in both.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time

import torch
import torch.nn.functional as F

from tsformer.amp import EmulatedBF16
from tsformer.patchformer import PatchFormer, RocketTokens, auto_params

#: (dataset, length, training series) of the development set's sets under 500 series.
SHAPES = [("ArrowHead", 251, 36), ("Beef", 470, 30), ("BeetleFly", 512, 20), ("BME", 128, 30),
          ("Car", 577, 60), ("Chinatown", 24, 20), ("Coffee", 286, 28), ("CricketY", 300, 390),
          ("DiatomSizeReduction", 345, 16), ("DistalPhalanxTW", 80, 400),
          ("ECGFiveDays", 136, 23), ("FacesUCR", 131, 200), ("FiftyWords", 270, 450),
          ("FreezerSmallTrain", 301, 150)]


def _avg_pool(self: RocketTokens, ppv: torch.Tensor) -> torch.Tensor:
    return F.avg_pool1d(ppv, self.patch_len, self.stride)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare", choices=("pooling", "precision", "amp"), default="pooling",
                    help="pooling: block sums vs avg_pool1d (default); precision: the stem in "
                         "bf16 vs fp32; amp: the step under bf16-emulated vs fp32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    block_sums = RocketTokens._patch_mean
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.steps} steps")
    new, old = {"pooling": ("block sums", "avg_pool"), "precision": ("bf16", "fp32"),
                "amp": ("bf16-emulated", "fp32")}[args.compare]
    print(f"| dataset | batch | step ms ({new} / {old}) | step ratio ({old} / {new}) | "
          f"features ms ({new} / {old}) | features ratio ({old} / {new}) |")
    print("|---|---:|---:|---:|---:|---:|")
    ratios = []
    for name, length, n_train in SHAPES:
        p = auto_params(1, length, n_train, 5)
        batch = p["train"]["batch_size"]
        opts = {k: v for k, v in p["model"].items() if k != "members"}
        torch.manual_seed(0)
        model = PatchFormer(1, length, 5, **opts)
        x = torch.randn(batch, 1, length).cumsum(-1)
        model.prime(x)
        opt = torch.optim.AdamW(model.parameters())
        stem = model.nets[0].patch
        xin = model.nets[0]._inputs(x)

        def step(model=model, x=x, opt=opt) -> None:
            loss = F.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()

        def feats(stem=stem, xin=xin) -> None:
            stem.features(xin)

        times: dict[str, list[float]] = {"step new": [], "step old": [], "feat new": [],
                                         "feat old": []}
        plain = contextlib.nullcontext
        ways = {"pooling": (("new", block_sums, "bf16", plain), ("old", _avg_pool, "bf16", plain)),
                "precision": (("new", block_sums, "bf16", plain),
                              ("old", block_sums, "fp32", plain)),
                "amp": (("new", block_sums, "bf16", EmulatedBF16),
                        ("old", block_sums, "bf16", plain))}[args.compare]
        for i in range(args.steps + 1):
            for way, fn, precision, context in ways:
                RocketTokens._patch_mean = fn
                for net in model.nets:
                    net.patch.precision = precision
                for what, call in (("step", step), ("feat", feats)):
                    t = time.process_time()
                    with context():
                        call()
                    if i:  # the first round warms up
                        times[f"{what} {way}"].append(time.process_time() - t)
        RocketTokens._patch_mean = block_sums
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        ratios.append(med["step old"] / med["step new"])
        print(f"| {name} | {batch} | {med['step new']:.1f} / {med['step old']:.1f} | "
              f"{ratios[-1]:.2f}x | {med['feat new']:.1f} / {med['feat old']:.1f} | "
              f"{med['feat old'] / med['feat new']:.2f}x |")
    geo = math.exp(statistics.mean(math.log(r) for r in ratios))
    print(f"geometric mean of the step ratios: {geo:.2f}x")


if __name__ == "__main__":
    main()
