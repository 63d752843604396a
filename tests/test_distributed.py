"""DDP via torchrun: 2 gloo processes on CPU train exactly like 1 process (same global batch)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tsformer import distributed
from tsformer.cli import main


def test_shard_matches_distributed_sampler_batching() -> None:
    """Sharding each global batch == DistributedSampler's perm[r::W] in batches of B / W."""
    perm, B, W = torch.randperm(40, generator=torch.Generator().manual_seed(0)), 8, 2
    for r in range(W):
        per_rank = perm[r::W].split(B // W)
        ours = [distributed.shard(perm[i:i + B], r, W) for i in range(0, len(perm), B)]
        assert all(torch.equal(a, b) for a, b in zip(per_rank, ours, strict=True))
    assert not distributed.is_distributed() and distributed.world_size() == 1
    assert distributed.all_reduce_sum([1.5, torch.tensor(2)], torch.device("cpu")) == [1.5, 2.0]


def _tiny_dataset(d: Path) -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 6, 24)
    for split, n in (("TRAIN", 50), ("TEST", 12)):
        y = rng.integers(0, 2, n)
        X = np.sin(t[None] * (1 + y[:, None])) + 0.3 * rng.standard_normal((n, 24))
        np.savetxt(d / f"Tiny_{split}.tsv", np.column_stack([y + 1, X]), delimiter="\t",
                   fmt="%.5f")
    # Dropout off so the runs can match; batch 13 on 40 training series leaves a last global
    # batch of 1: uneven shards and an empty one on rank 1.
    cfg = {"preset": "seed",
           "model": {"head_size": 8, "num_heads": 2, "ff_dim": 4, "num_blocks": 1,
                     "mlp_units": [16], "dropout": 0.0, "mlp_dropout": 0.0},
           "train": {"batch_size": 13, "lr": 1e-3, "device": "cpu"}}
    (d / "cfg.json").write_text(json.dumps(cfg))


def _history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_torchrun_two_processes_match_one(tmp_path: Path) -> None:
    _tiny_dataset(tmp_path)
    args = ["train", "--train", str(tmp_path / "Tiny_TRAIN.tsv"), "--test",
            str(tmp_path / "Tiny_TEST.tsv"), "--config", str(tmp_path / "cfg.json"),
            "--epochs", "2", "--seed", "3", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "tsformer", *args, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1  # rank 0 alone prints ...
    assert proc.stdout.count("test accuracy:") == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["ddp"]  # ... and writes

    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    multi, single = _history(tmp_path / "ddp"), _history(tmp_path / "single")
    assert len(multi) == len(single) == 2
    for a, b in zip(multi, single, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), (key, a, b)
    m = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    s = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert m["test"]["accuracy"] == pytest.approx(s["test"]["accuracy"])
