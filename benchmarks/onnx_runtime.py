"""The ONNX runtime path against the PyTorch one: import time and predictions per second.

Import time: a fresh interpreter imports what ``tsformer predict`` needs on each path (the
ONNX one: ``tsformer.runtime`` and onnxruntime; the PyTorch one: ``tsformer.pipeline``, so
torch and the models), the median of ``--repeats`` runs.  Throughput: each preset as it is
built for an ArrowHead-sized set (1 x 251 points, 3 classes, 36 training series) and a
FordA-sized one (1 x 500, 2 classes, 3,601 series), untrained (speed does not depend on the
weights), on one thread: torch with ``torch.set_num_threads(1)`` under inference mode,
onnxruntime with ``intra_op_num_threads=1``, batches of 1 and 256.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/onnx_runtime.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

PATHS = {
    "onnx": "import tsformer.runtime, tsformer.cli.reading, onnxruntime",
    "torch": "import tsformer.pipeline, tsformer.cli.reading",
}
#: (name, n_timepoints, n_classes, n_train)
SHAPES = [("ArrowHead", 251, 3, 36), ("FordA", 500, 2, 3601)]


def import_seconds(code: str, repeats: int) -> float:
    """Median wall time of ``code`` in a fresh interpreter, timed inside it."""
    probe = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(repeats)]
    return statistics.median(runs)


def rate(fn, batch: np.ndarray, seconds: float) -> float:
    """Series per second of ``fn(batch)`` over about ``seconds`` (after one warm-up call)."""
    fn(batch)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn(batch)
        n += 1
    return n * len(batch) / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    ap.add_argument("--repeats", type=int, default=5, help="fresh interpreters per import")
    args = ap.parse_args(argv)

    for path, code in PATHS.items():
        print(f"import, {path} path: {import_seconds(code, args.repeats):.2f} s "
              f"(median of {args.repeats})", flush=True)

    import torch

    from tsformer.config import DataShape, resolve
    from tsformer.export import ExportError, to_onnx_bytes
    from tsformer.models import DataDependentInit
    from tsformer.runtime import OnnxModel

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print("\n| shape | preset | built as | runtime | batch 1 /s | batch 256 /s |")
    print("|---|---|---|---|---|---|")
    for name, t, k, n_train in SHAPES:
        for preset in ("seed", "patchformer"):
            cfg = resolve(preset, DataShape(1, t, k, n_train))
            torch.manual_seed(0)
            model = cfg.build().eval()
            x0 = torch.as_tensor(rng.standard_normal((64, 1, t)), dtype=torch.float32)
            for net in model.modules():  # every member's data-dependent init, as training does
                if isinstance(net, DataDependentInit):
                    net.init_from_data(x0)
            opts = cfg.model.to_dict()
            built = (f"stem {opts['stem']}, " if "stem" in opts else "") + \
                f"{cfg.members} member(s)"
            x1 = rng.standard_normal((1, 1, t)).astype(np.float32)
            x256 = rng.standard_normal((256, 1, t)).astype(np.float32)

            def run_torch(x: np.ndarray, model=model) -> None:
                with torch.inference_mode():
                    model(torch.from_numpy(x))

            rates = {"torch": [rate(run_torch, x, args.seconds) for x in (x1, x256)]}
            try:
                onnx = OnnxModel(to_onnx_bytes(model, cfg), threads=1)
                rates["onnxruntime"] = [rate(lambda x, m=onnx: m.run(x, ["logits"]), x,
                                             args.seconds) for x in (x1, x256)]
            except ExportError as e:
                print(f"<!-- {name} {preset}: {e} -->")
            for runtime, (r1, r256) in rates.items():
                print(f"| {name} (1 x {t}) | {preset} | {built} | {runtime} | {r1:,.0f} | "
                      f"{r256:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
