"""Seconds per training step of the seed model: Keras-layout direct attention vs the fast path.

Why: the seed's attention is the whole cost of a training step, and the fast path (attention
in the 1-feature input space, native kernel, counter-based attention dropout) is what makes
training on a CPU practical.  Direct and fast are timed in the SAME run so their ratio is
meaningful on a shared, noisy machine; medians over steps after one warm-up step.

    PYTHONPATH=src python benchmarks/seed_speed.py [--steps 5] [--batch 64] [--threads N]
        [--direct-steps 1] [--no-keras]

If TensorFlow/Keras is importable, the Keras rebuild of the seed
(``shared/reference/keras_seed_bench.py``) is timed in a subprocess in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tsformer import create_model
from tsformer.models import keras_attention as A

T, C, H, D, BLOCKS = 500, 1, 4, 256, 4
P_DROP = 0.25


DEVICE = torch.device("cpu")


def _sync() -> None:
    """A GPU step is only done when its kernels are: wait for them before reading the clock."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def _median_time(fn: Callable[[], object], steps: int, warmup: int = 1) -> float:
    return _median_times(fn, steps, warmup)[0]


def _median_times(
    fn: Callable[[], object], steps: int, warmup: int = 1
) -> tuple[float, float]:
    """Median wall and process-CPU seconds per call (CPU time is what a busy, shared machine
    distorts least; with 1 thread it is the wall time an idle core would give)."""
    for _ in range(warmup):
        fn()
    _sync()
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _set_attention_dropout(model: nn.Module, p: float) -> None:
    for mod in model.modules():
        if type(mod).__name__ == "KerasMultiHeadAttention":
            mod.dropout = p


def _build_model(path: str) -> nn.Module:
    """The seed preset at FordA's shape with one attention path (the same function)."""
    return create_model("seed", n_channels=C, n_timepoints=T, n_classes=2, variant="prenorm",
                        attention=path)


def time_training(
    path: str, batch: int, steps: int, attn_dropout: float, warmup: int = 1
) -> tuple[float, float]:
    """Median (wall, CPU) seconds of a training step (forward, backward, Adam) of the seed."""
    torch.manual_seed(0)
    model = _build_model(path)
    _set_attention_dropout(model, attn_dropout)
    model.to(DEVICE).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7)
    x = torch.randn(batch, C, T, device=DEVICE)
    y = torch.randint(0, 2, (batch,), device=DEVICE)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return _median_times(step, steps, warmup)


def time_attention(backend: str, batch: int, steps: int, p: float) -> float:
    """Median seconds of one attention forward+backward (B, T=500, C=1, 4 heads of 256)."""
    g = torch.Generator().manual_seed(0)
    lim = (6 / (C + H * D)) ** 0.5
    shapes = ((C, H, D), (H, D), (C, H, D), (H, D), (C, H, D), (H, D), (H, D, C), (C,))
    ps = [((torch.rand(*s, generator=g) * 2 - 1) * lim).to(DEVICE).requires_grad_()
          for s in shapes]
    x = torch.randn(batch, T, C, generator=g).to(DEVICE).requires_grad_()
    if backend == "direct":
        def fn() -> None:
            A.mha_direct(x, *ps, dropout_p=p).sum().backward()
    else:
        def fn() -> None:
            A.mha_fast(x, *ps, dropout_p=p, backend=backend).sum().backward()
    return _median_time(fn, steps)


def time_keras(steps: int, python: str | None = None) -> float | None:
    """Median Keras/TF step from the reference script, or None when TF is not importable.

    ``python`` is the interpreter of an environment with ``tensorflow-cpu`` (TensorFlow and
    PyTorch rarely share one environment happily); default: this one.
    """
    python = python or sys.executable
    probe = subprocess.run([python, "-c", "import tensorflow, keras"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return None
    here = Path(__file__).resolve()
    for base in (here.parents[1], *here.parents[2:4]):
        script = base / "shared" / "reference" / "keras_seed_bench.py"
        if script.exists():
            break
    else:
        print("keras_seed_bench.py not found: Keras timing skipped")
        return None
    out = subprocess.run(
        [python, str(script), str(steps)], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"median ([0-9.]+)", out)
    return float(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed fast-path steps (after warm-up)")
    ap.add_argument("--direct-steps", type=int, default=1,
                    help="timed direct-path steps (0: skip the direct path)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-keras", action="store_true", help="skip the Keras reference")
    ap.add_argument("--keras-python", default=os.environ.get("KERAS_PYTHON"),
                    help="python of an environment with tensorflow-cpu (default: this one; "
                    "env KERAS_PYTHON)")
    ap.add_argument("--no-attention", action="store_true", help="skip attention-alone timings")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]; float32 "
                    "throughout (no autocast), so the paths compare like for like")
    args = ap.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, native kernel: {A.native_available()}")
    if DEVICE.type == "cuda":
        print(f"device {torch.cuda.get_device_name(DEVICE)} (the fast path uses SDPA there)")
    print(f"B={args.batch} T={T} C={C}, {BLOCKS} blocks, heads {H}x{D}, Adam; median s/step; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    if not args.no_attention:
        print("\nattention alone, forward+backward:")
        for p in (0.0, P_DROP):
            fast = time_attention("auto", args.batch, args.steps, p)
            sdpa = time_attention("sdpa", args.batch, max(1, min(args.direct_steps, 3)), p)
            auto = "native" if DEVICE.type == "cpu" and A.native_available() else "auto"
            print(f"  dropout {p:<4}  fast({auto}) {fast:.4f}  fast(sdpa, padded) {sdpa:.4f}  "
                  f"ratio {sdpa / fast:.1f}x")

    print("\nfull seed model, training step:")
    results = {}
    for p in (P_DROP, 0.0):
        fast, fast_cpu = time_training("fast", args.batch, args.steps, p)
        results[p] = fast
        line = f"  attention dropout {p:<4}  fast {fast:.3f} (cpu {fast_cpu:.3f})"
        if args.direct_steps > 0:
            # a direct step is ~10 s: no warm-up step, allocation is noise at that scale
            direct, direct_cpu = time_training("direct", args.batch, args.direct_steps, p, 0)
            line += (f"  direct {direct:.3f} (cpu {direct_cpu:.3f})  ratio {direct / fast:.1f}x"
                     f" (cpu {direct_cpu / fast_cpu:.1f}x)")
        print(line)

    print(f"  (load average now {os.getloadavg()[0]:.1f})")
    keras = None if args.no_keras else time_keras(max(2, args.direct_steps), args.keras_python)
    if keras is None:
        print("\nKeras/TensorFlow: skipped (not importable in this environment"
              + (", or --no-keras)" if args.no_keras else ")"))
    else:
        print(f"\nKeras/TF seed step {keras:.3f} s; fast/Keras speed-up with dropout "
              f"{keras / results[P_DROP]:.1f}x")


if __name__ == "__main__":
    main()
