"""Load test for ``tsformer serve``: N concurrent clients on loopback for a bounded time.

Starts ``python -m tsformer serve MODEL_DIR --port 0`` in a subprocess (or targets ``--url``),
then runs ``--clients`` asyncio+httpx clients back to back for ``--duration`` seconds and prints
requests/s, series/s, p50/p99 latency and the status counts.  ``--bad-fraction`` mixes in
malformed requests (wrong length, NaN, non-JSON, too many series, values that overflow the
model, a 5,000-digit number, text/plain), which must all be 4xx.  Exit status 1 if any request
got a 5xx or a transport error, or a started server did not stop cleanly (exit 0) on Ctrl-C.

Without MODEL_DIR a FordA-shaped (1 x 500, 2 classes) untrained ``seed`` model is used: the
cost of a forward pass does not depend on the weights.

    python benchmarks/serve_load.py [MODEL_DIR] --clients 8 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import httpx
except ImportError:  # the test extra's fork of the same API
    import httpx2 as httpx


def make_model(path: Path, n_timepoints: int = 500) -> Path:
    from tsformer.config import DataShape, resolve
    from tsformer.model_dir import save_model_dir

    cfg = resolve("seed", DataShape(1, n_timepoints, 2), classes=[-1, 1],
                  data={"name": "FordA-shaped noise"})
    return save_model_dir(path, cfg.build(), cfg)


def start_server(model_dir: Path) -> tuple[subprocess.Popen, str]:
    """``tsformer serve`` on a free loopback port; its URL from the line it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsformer", "serve", str(model_dir), "--port", "0"],
        stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"http://[\d.]+:\d+", line)
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {line.strip()} {proc.stderr.read()[-500:]}")
    return proc, m.group(0)


def bad_bodies(n_t: int, max_instances: int) -> list[tuple[str, bytes]]:
    ok = [0.1] * n_t
    overflow = [(1e20, -1e20)[k % 2] for k in range(n_t)]  # valid float32; squares are not
    return [
        ("application/json", json.dumps({"instances": [ok[:-1]]}).encode()),
        ("application/json", ('{"instances": [[NaN' + ",0.1" * (n_t - 1) + "]]}").encode()),
        ("application/json", b'{"instances": [[1, 2,'),
        ("application/json", json.dumps({"instances": [ok] * (max_instances + 1)}).encode()),
        ("text/csv", ("x," * n_t).encode()),
        ("application/json", json.dumps({"instances": [overflow]}).encode()),
        ("application/json", ('{"instances": [[1' + "0" * 5000 + ",0.1" * (n_t - 1)
                              + "]]}").encode()),
        ("text/plain", ",".join(["0.1"] * n_t).encode()),
    ]


async def client(http: httpx.AsyncClient, deadline: float, good: list[bytes],
                 bad: list[tuple[str, bytes]], bad_fraction: float, rng: random.Random,
                 latencies: list[float], statuses: dict[str, int]) -> None:
    while time.perf_counter() < deadline:
        is_bad = rng.random() < bad_fraction
        ctype, body = rng.choice(bad) if is_bad else ("application/json", rng.choice(good))
        t0 = time.perf_counter()
        try:
            r = await http.post("/v1/predict", content=body, headers={"Content-Type": ctype})
        except httpx.HTTPError as e:
            statuses[f"error {type(e).__name__}"] = statuses.get(f"error {type(e).__name__}",
                                                                 0) + 1
            continue
        dt = time.perf_counter() - t0
        key = f"{r.status_code // 100}xx"
        statuses[key] = statuses.get(key, 0) + 1
        if is_bad and r.status_code // 100 != 4:
            statuses["bad request not 4xx"] = statuses.get("bad request not 4xx", 0) + 1
        if r.status_code == 200:
            latencies.append(dt)


async def run_load(url: str, clients: int, duration: float, instances: int,
                   bad_fraction: float) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=clients)) as http:
        info = (await http.get("/v1/model")).json()
        n_ch, n_t = info["input"]["n_channels"], info["input"]["n_timepoints"]
        rng = np.random.default_rng(0)
        good = [json.dumps({"instances": rng.standard_normal((instances, n_ch, n_t)).round(6)
                            .tolist()}).encode() for _ in range(16)]
        bad = bad_bodies(n_t, info["limits"]["max_instances"])
        await http.post("/v1/predict", content=good[0],
                        headers={"Content-Type": "application/json"})  # warm-up
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        t0 = time.perf_counter()
        deadline = t0 + duration
        await asyncio.gather(*(client(http, deadline, good, bad, bad_fraction,
                                      random.Random(k), latencies, statuses)
                               for k in range(clients)))
        elapsed = time.perf_counter() - t0
        healthy = (await http.get("/healthz")).status_code == 200
    total = sum(v for k, v in statuses.items() if k.endswith("xx"))
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "info": info, "elapsed": elapsed, "requests": total, "statuses": statuses,
        "rps": total / elapsed, "series_per_s": len(latencies) * instances / elapsed,
        "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
        "max": float(lat.max()), "healthy_after": healthy,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", nargs="?", help="model directory (default: FordA-shaped seed)")
    ap.add_argument("--url", help="load an already running server instead of starting one")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    ap.add_argument("--instances", type=int, default=1, help="series per request")
    ap.add_argument("--bad-fraction", type=float, default=0.1,
                    help="share of malformed requests (must all be 4xx)")
    args = ap.parse_args(argv)

    proc, stopped = None, 0
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url
        if url is None:
            model_dir = Path(args.model_dir) if args.model_dir else make_model(Path(tmp) / "m")
            proc, url = start_server(model_dir)
        try:
            res = asyncio.run(run_load(url, args.clients, args.duration, args.instances,
                                       args.bad_fraction))
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    stopped = proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    stopped = -9
    info, st = res["info"], res["statuses"]
    n5 = st.get("5xx", 0)
    errors = sum(v for k, v in st.items() if k.startswith("error") or k.startswith("bad"))
    print(f"server: {url} model {info['preset']} {info['input']['n_channels']} x "
          f"{info['input']['n_timepoints']}, {len(info['classes'])} classes "
          f"({info['data'].get('name', '?')}); host: {os.cpu_count()} cpus")
    print(f"load: {args.clients} clients x {res['elapsed']:.1f} s, {args.instances} series/"
          f"request, {args.bad_fraction:.0%} malformed")
    print(f"requests: {res['requests']} ({', '.join(f'{k} {v}' for k, v in sorted(st.items()))})")
    print(f"throughput: {res['rps']:.1f} requests/s, {res['series_per_s']:.1f} series/s")
    print(f"latency of 200s: p50 {res['p50']:.1f} ms, p99 {res['p99']:.1f} ms, "
          f"max {res['max']:.1f} ms")
    print(f"5xx: {n5}; transport errors/misclassified refusals: {errors}; healthy after: "
          f"{res['healthy_after']}" + ("" if proc is None else f"; server exit status after "
                                       f"Ctrl-C: {stopped}"))
    return 0 if n5 == 0 and errors == 0 and res["healthy_after"] and stopped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
