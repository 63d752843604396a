"""Data-parallel training on torch's own engine (``torchrun`` + DistributedDataParallel).

Nothing here starts processes: ``torchrun`` does (one machine or many, through its
rendezvous), and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``... in each.
:func:`init_from_env` joins the process group only when ``WORLD_SIZE > 1``, so a plain
``tsformer train`` never touches ``torch.distributed``.

Batch semantics: ``batch_size`` is the **global** batch.  Each optimisation step takes the
next ``batch_size`` indices of one permutation that every rank draws from the same seed, and
rank ``r`` of ``W`` keeps ``batch[r::W]`` -- exactly what ``DistributedSampler(shuffle=True,
drop_last=False)`` with a per-rank batch of ``batch_size / W`` yields, minus the padding with
duplicated samples.  Losses are summed per rank and divided by the global batch size, so the
all-reduced gradient *is* the single-process gradient: a preset trains the same on 1 or N
processes, and the learning rate needs no rescaling.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not under torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_env(device: str = "auto") -> bool:
    """Join torchrun's process group when ``WORLD_SIZE > 1``; True if distributed.

    Backend: NCCL when the run uses CUDA, else gloo (CPU).  Idempotent, so both the CLI (which
    must know its rank before printing) and :func:`tsformer.train.fit` may call it.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if env_world_size() <= 1 or not dist.is_available():
        return False
    use_cuda = torch.cuda.is_available() and not str(device).startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    # Einsum-shaped kernels (Keras' (C, H, D) layout) yield non-contiguous gradients; DDP
    # copies them into its buckets correctly and only warns about speed.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0 (and when not distributed): the one process that prints and writes."""
    return rank() == 0


def shard(indices: Tensor, rank_: int | None = None, world: int | None = None) -> Tensor:
    """This rank's strided share of a global batch (DistributedSampler's ``indices[r::W]``)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return indices[r::w]


def all_reduce_sum(values: Sequence[float | Tensor], device: torch.device) -> list[float]:
    """Sums of scalars over all ranks, in one collective (identity when not distributed)."""
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(())
                     for v in values])
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_flags(flags: Sequence[bool], device: torch.device) -> list[bool]:
    """Rank 0's booleans on every rank, so control flow (early stopping) never diverges."""
    if not is_distributed():
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.broadcast(t, src=0)
    return [bool(v) for v in t.tolist()]


def shared_seed(seed: int | None, device: torch.device) -> int | None:
    """``seed``, or one random seed drawn on rank 0 and shared, so shuffles agree on all ranks."""
    if seed is not None or not is_distributed():
        return seed
    t = torch.tensor([random.SystemRandom().randrange(2**31)], device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def cleanup() -> None:
    """Leave the process group (end of a torchrun run); harmless when not distributed.

    Ranks other than 0 finish as soon as training ends, while rank 0 still evaluates and
    writes; tearing the group down under a peer that is still connected can abort the early
    rank in gloo ("terminate called without an active exception", seen once in CI), so all
    ranks meet at a barrier first and leave together."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
