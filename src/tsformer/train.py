"""One training loop, Keras semantics by default (nanoGPT-style: plain config, plain loop).

Defaults reproduce the seed's ``model.fit``: Adam(1e-4, eps 1e-7), batch 64, up to 200
epochs, ``validation_split=0.2`` taken from the *end* of the (once-shuffled) training arrays
as Keras takes it, a fresh shuffle of the training part each epoch, and early stopping on
validation loss with patience 10 that restores the best weights.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import numbers
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import distributed as dist_
from .amp import AMP_MODES, autocast
from .errors import ConfigError


@dataclass
class TrainConfig:
    """Everything that shapes a training run.  Plain data: it is saved in ``config.json``."""

    optimizer: str = "adam"  # "adam" | "adamw"
    lr: float = 1e-4
    eps: float = 1e-7  # Keras' Adam epsilon
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 200
    validation_split: float = 0.2
    shuffle_before_split: bool = True  # the seed shuffles the training set once before fit
    patience: int | None = 10  # None: no early stopping
    restore_best: bool = True
    schedule: str = "constant"  # "constant" | "onecycle" | "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    augment: list[str] = field(default_factory=list)  # names in AUGMENTATIONS
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0: off
    mixup: float = 0.0  # Beta(a, a) of mixup: pairs of series and their labels blended; 0: off
    sam: float = 0.0  # radius rho of sharpness-aware minimisation (Foret et al. 2021); 0: off
    seed: int | None = 0
    device: str = "auto"
    amp: str = "auto"  # bf16: "auto" CUDA only, "bf16" any device, "bf16-emulated" CUDA's
    # numerics on any device (emulated off CUDA, 1.15x a CPU step), "off" never
    compile: bool = False
    verbose: int = 1  # 0 silent; 1 a line per epoch (and a progress bar on a terminal)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s) {', '.join(unknown)}; "
                f"options: {', '.join(sorted(known))}"
            )
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def __post_init__(self) -> None:
        # Options typed as numbers must be numbers: "--set train.mixup=abc" gets one clear
        # line here, not a TypeError deep in fit().
        for f in fields(self):
            if f.type.split(" | ")[0] not in ("int", "float"):
                continue
            v = getattr(self, f.name)
            if v is None and "None" in f.type:
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numpy's too
                raise ConfigError(f"training option {f.name} must be a number, not {v!r}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"training option amp must be one of {', '.join(AMP_MODES)}, "
                              f"not {self.amp!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class History:
    """Per-epoch metrics and how the run ended."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """How the run went, for ``metrics.json``: length, best epoch and its validation."""
        out: dict[str, Any] = {
            "epochs_run": len(self.rows), "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early, "interrupted": self.interrupted,
            "train_seconds": round(self.seconds, 2),
            "seconds_per_epoch": round(self.seconds / max(1, len(self.rows)), 3),
        }
        best = self.rows[self.best_epoch - 1] if self.best_epoch else {}
        if "val_loss" in best:
            out["val_loss"], out["val_accuracy"] = best["val_loss"], best["val_accuracy"]
        return out

    def to_csv(self) -> str:
        if not self.rows:
            return "epoch\n"
        keys = list(self.rows[0])
        lines = [",".join(keys)] + [",".join(f"{r[k]:.6g}" for k in keys) for r in self.rows]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- augmentation


def _jitter(x: Tensor, g: torch.Generator) -> Tensor:
    return x + 0.03 * torch.randn(x.shape, generator=g, device=x.device) * x.std(-1, keepdim=True)


def _scale(x: Tensor, g: torch.Generator) -> Tensor:
    s = 1 + 0.1 * torch.randn(x.shape[0], 1, 1, generator=g, device=x.device)
    return x * s


def _shift(x: Tensor, g: torch.Generator) -> Tensor:
    """Circular time shift by up to 10% of the length, one shift per series."""
    t = x.shape[-1]
    k = torch.randint(-(t // 10), t // 10 + 1, (x.shape[0],), generator=g, device=x.device)
    idx = (torch.arange(t, device=x.device)[None, :] - k[:, None]) % t
    return torch.gather(x, -1, idx[:, None, :].expand_as(x))


def _resample(x: Tensor, s: Tensor) -> Tensor:
    """``x (B, C, T)`` read at fractional times ``s (B, T)`` (clamped to the series), by
    linear interpolation: the one resampler of the warp and crop augmentations."""
    t = x.shape[-1]
    s = s.clamp(0, t - 1)
    lo = s.floor().long().clamp(max=t - 2)
    frac = (s - lo).to(x.dtype)[:, None, :]
    lo = lo[:, None, :].expand(-1, x.shape[1], -1)
    return torch.gather(x, -1, lo) * (1 - frac) + torch.gather(x, -1, lo + 1) * frac


def _warp(x: Tensor, g: torch.Generator) -> Tensor:
    """Window warping: a random window of a tenth of the series is stretched or squeezed by
    2x, then the series is resampled to its length (shapes that vary in local speed)."""
    b, _, t = x.shape
    if t < 4:  # no window to warp in a series this short
        return x
    w = max(2.0, 0.1 * t)
    start = torch.rand(b, 1, generator=g, device=x.device) * (t - 1 - w)
    f = torch.where(torch.rand(b, 1, generator=g, device=x.device) < 0.5, 0.5, 2.0)
    total = (t - 1) + (f - 1) * w  # warped length, per series
    u = torch.linspace(0, 1, t, device=x.device)[None, :] * total  # output grid
    s = torch.where(u < start, u, torch.where(u < start + f * w, start + (u - start) / f,
                                              u - (f - 1) * w))
    return _resample(x, s)


def _crop(x: Tensor, g: torch.Generator) -> Tensor:
    """Random resized crop (window slicing): a random window of 80-100% of the series is
    resampled to the full length, so the same shape is seen at slightly other scales and
    without either end (Le Guennec et al. 2016, the vision crop carried to series)."""
    b, _, t = x.shape
    if t < 4:
        return x
    frac = 0.8 + 0.2 * torch.rand(b, 1, generator=g, device=x.device)
    start = torch.rand(b, 1, generator=g, device=x.device) * (1 - frac) * (t - 1)
    return _resample(x, start + torch.linspace(0, 1, t, device=x.device)[None, :] * frac * (t - 1))


def _flip(x: Tensor, g: torch.Generator) -> Tensor:
    """Sign flip of half the series (for signals whose polarity carries no class)."""
    s = torch.randint(0, 2, (x.shape[0], 1, 1), generator=g, device=x.device) * 2 - 1
    return x * s.to(x.dtype)


#: Training-time augmentations, by name, applied to a batch ``(B, C, T)`` in the given order.
AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "jitter": _jitter, "scale": _scale, "shift": _shift, "flip": _flip, "warp": _warp,
    "crop": _crop,
}


# --------------------------------------------------------------------------- helpers


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    return dev


def seed_everything(seed: int | None) -> None:
    if seed is None:
        return
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def keras_validation_split(n: int, validation_split: float) -> int:
    """Index where Keras' ``validation_split`` cuts: the last fraction is validation."""
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"validation_split must be in [0, 1), not {validation_split}")
    return int(math.floor(n * (1.0 - validation_split)))


@torch.no_grad()
def predict_logits(
    model: nn.Module, X: np.ndarray | Tensor, *, batch_size: int = 256,
    device: torch.device | str | None = None, amp: str = "auto",
) -> Tensor:
    """Logits in bounded memory: batches of ``batch_size`` go to the device one at a time."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[i:i + batch_size], dtype=torch.float32).to(dev)
            with autocast(dev, amp):
                out.append(model(xb).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.empty(0)
    return torch.cat(out)


def _evaluate_tensors(model: nn.Module, X: Tensor, y: Tensor, batch_size: int, amp: str
                      ) -> tuple[float, float]:
    if dist_.is_distributed():  # each rank scores its strided share; the sums are all-reduced
        Xs, ys = dist_.shard(X), dist_.shard(y).cpu()
        loss_sum = correct = 0.0
        if len(Xs):
            logits = predict_logits(model, Xs, batch_size=batch_size, device=X.device, amp=amp)
            loss_sum = F.cross_entropy(logits, ys, reduction="sum").item()
            correct = (logits.argmax(1) == ys).sum().item()
        loss_sum, correct = dist_.all_reduce_sum([loss_sum, correct], X.device)
        return loss_sum / len(X), correct / len(X)
    logits = predict_logits(model, X, batch_size=batch_size, device=X.device, amp=amp)
    yc = y.cpu()
    loss = F.cross_entropy(logits, yc).item()
    acc = (logits.argmax(1) == yc).float().mean().item()
    return loss, acc


def _loss(logits: Tensor, y: Tensor, cfg: TrainConfig, lam: float = 1.0,
          pair: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy with the config's label smoothing; under mixup the blend of the two
    labels' losses with the inputs' weights.  An ensemble's training logits
    ``(members, share, classes)`` go with labels laid out share after share, and give the
    mean of the members' losses."""
    members = logits.shape[0] if logits.dim() == 3 else 1
    flat = logits.float().reshape(-1, logits.shape[-1])

    def ce(target: Tensor) -> Tensor:
        out = F.cross_entropy(flat, target, reduction=reduction,
                              label_smoothing=cfg.label_smoothing)
        return out / members if reduction == "sum" else out

    return ce(y) if pair is None else lam * ce(y) + (1 - lam) * ce(y[pair])


def _member_groups(model: nn.Module) -> list:
    """Parameter groups that act apart: one per ensemble member, else all parameters."""
    return model.clip_groups() if hasattr(model, "clip_groups") else [model.parameters()]


def _clip(model: nn.Module, max_norm: float) -> None:
    """Clip the gradient norm of each group the model names (each ensemble member alone, so
    it trains as it would alone), else of all parameters together."""
    for params in _member_groups(model):
        nn.utils.clip_grad_norm_(params, max_norm)


@contextlib.contextmanager
def _sam_perturbed(model: nn.Module, rho: float) -> Iterator[None]:
    """Within the block the weights sit at the worst point within ``rho`` along the current
    gradient (each ensemble member by its own gradient norm) and BatchNorm's running
    statistics are left alone; on leaving, the weights and the statistics' momentum are
    restored."""
    steps = []
    with torch.no_grad():
        for params in _member_groups(model):
            params = [p for p in params if p.grad is not None]
            if not params:
                continue
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
            scale = rho / (norm + 1e-12)
            for p in params:
                e = p.grad * scale
                p.add_(e)
                steps.append((p, e))
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(bns, saved, strict=True):
            m.momentum = momentum
        with torch.no_grad():
            for p, e in steps:
                p.sub_(e)


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def f(step: int) -> float:
        if cfg.schedule == "constant":
            return min(1.0, (step + 1) / warm) if warm else 1.0
        if step < warm:
            return (step + 1) / warm
        prog = min(1.0, (step - warm) / max(1, total - warm))
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * prog))
        if cfg.schedule == "onecycle":  # linear warm-up then cosine to 1/1000 of the peak
            return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * prog))
        raise ConfigError(f"unknown schedule {cfg.schedule!r}; use constant, cosine or onecycle")

    return f


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; use 'adam' or 'adamw'")


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not enabled, unit="step",
                dynamic_ncols=True)


# --------------------------------------------------------------------------- the loop


def fit(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig | None = None,
    *,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None,
    log: Callable[[str], None] | None = None,
) -> History:
    """Train ``model`` on ``X (n, C, T)`` float32 and integer class codes ``y``.

    Validation comes from ``validation_data`` or, else, the last ``validation_split`` of the
    training arrays (after one seeded shuffle, as the seed does).  ``on_epoch_end(epoch, row)``
    may return True to stop (used for pruning and distributed runs).  Ctrl-C stops after the
    current step and keeps the best weights so far; ``History.interrupted`` says so.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the model trains with DistributedDataParallel:
    ``batch_size`` stays the global batch (see :mod:`tsformer.distributed`), metrics are
    all-reduced, only rank 0 logs, and rank 0's stop decisions are broadcast to every rank.
    """
    cfg = cfg or TrainConfig()
    device = resolve_device(cfg.device)
    distributed = dist_.init_from_env(cfg.device)
    rank, world = dist_.rank(), dist_.world_size()
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", dist_.local_rank())
        cfg = dataclasses.replace(cfg, seed=dist_.shared_seed(cfg.seed, device))
    # Per-rank dropout streams; shuffles and the split below use cfg.seed, shared by all ranks.
    seed_everything(cfg.seed + rank if cfg.seed is not None else None)
    log = log or (lambda s: print(s, file=sys.stderr))
    if rank != 0:
        log = lambda s: None  # noqa: E731 -- rank 0 alone talks
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(cfg.seed)
    if validation_data is None and cfg.validation_split > 0:
        if cfg.shuffle_before_split:
            idx = rng.permutation(len(X))
            X, y = X[idx], y[idx]
        cut = keras_validation_split(len(X), cfg.validation_split)
        if cut == 0 or cut == len(X):
            raise ConfigError(
                f"validation_split={cfg.validation_split} leaves no training or no validation "
                f"data from {len(X)} series; lower it or pass validation data"
            )
        X, Xv, y, yv = X[:cut], X[cut:], y[:cut], y[cut:]
    elif validation_data is not None:
        Xv, yv = (np.asarray(a) for a in validation_data)
        Xv, yv = Xv.astype(np.float32), yv.astype(np.int64)
    else:
        Xv = yv = None

    # All data on the device once: no per-batch host copies.
    model.to(device)
    Xt = torch.from_numpy(np.ascontiguousarray(X)).to(device)
    prime = getattr(model, "prime", None)
    if prime is not None:  # data-dependent initialisation: series spread over the set
        prime(Xt[torch.linspace(0, len(Xt) - 1, min(len(Xt), 64)).long().to(device)])
    train_model: nn.Module = model
    if distributed:  # wraps in place: `model` keeps the (shared) parameters
        # static_graph: some parameters may never get a gradient (e.g. a key bias that
        # softmax cancels) and DDP must know that the set never changes.
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            static_graph=True)
    yt = torch.from_numpy(y).to(device)
    Xvt = torch.from_numpy(np.ascontiguousarray(Xv)).to(device) if Xv is not None else None
    yvt = torch.from_numpy(yv).to(device) if yv is not None else None

    opt = make_optimizer(model, cfg)
    steps = math.ceil(len(Xt) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
    gen = torch.Generator(device="cpu")
    gen.manual_seed(cfg.seed if cfg.seed is not None else int(time.time()))
    aug_gen = torch.Generator(device=device)
    aug_gen.manual_seed((cfg.seed or 0) + 1 + rank)
    # Mixup pairs: ranks draw them for shards of unequal size, so not from `gen`, which must
    # stay the same on every rank (it shuffles the next epoch); one process keeps `gen`.
    pair_gen = gen
    if distributed:
        pair_gen = torch.Generator(device="cpu")
        pair_gen.manual_seed((cfg.seed or 0) + 2 + rank)
    augs = []
    for name in cfg.augment:
        if name not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
        augs.append(AUGMENTATIONS[name])
    step_fn = torch.compile(train_model) if cfg.compile else train_model
    if cfg.mixup < 0:
        raise ConfigError(f"mixup must be >= 0 (0: off), not {cfg.mixup}")
    if cfg.sam < 0:
        raise ConfigError(f"sam must be >= 0 (0: off), not {cfg.sam}")
    if not 0.0 <= cfg.ema < 1.0:
        raise ConfigError(f"ema must be in [0, 1), not {cfg.ema}")
    # The weight average is what gets validated, kept as best and returned.  BatchNorm's
    # running statistics are averaged too, so they lag the averaged weights: on the
    # patchformer preset (BatchNorm stem) that cost 10 points on FordA (docs/benchmarks.md).
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema),
        use_buffers=True) if cfg.ema else None)
    kept = ema.module if ema is not None else model

    members = int(getattr(model, "n_members", 1))  # an ensemble's members, each its own data

    def forward_backward(xb: Tensor, yb: Tensor, lam: float, pair: Tensor | None,
                         weight: float, n_global: int) -> tuple[Tensor, Tensor]:
        """One batch's forward pass, loss and gradients (zeroed first): the logits and the
        batch's summed loss, for the epoch's figures."""
        with autocast(device, cfg.amp):
            logits = step_fn(xb)
        if distributed:
            # Sum / global batch, times W as DDP averages gradients over W ranks: the
            # reduced gradient equals the single-process mean-loss gradient.
            loss_sum = weight * _loss(logits, yb, cfg, lam, pair, "sum")
            loss, batch_loss = loss_sum * (world / n_global), loss_sum.detach()
        else:
            loss = _loss(logits, yb, cfg, lam, pair, "mean")
            batch_loss = loss.detach() * (len(yb) // members)  # times the share
        opt.zero_grad(set_to_none=True)
        # Each ensemble member gets the gradient of its own loss, not 1/M of it.
        (loss * members).backward()
        return logits, batch_loss

    history = History()
    best_loss, best_state, wait = math.inf, None, 0
    show_bar = (cfg.verbose >= 1 and sys.stderr.isatty() and not os.environ.get("CI")
                and rank == 0)
    t0 = time.perf_counter()
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            # An ensemble's members train in lockstep but each on its own stream: its own
            # shuffle, augmentation draws and mixup pairs (a shared stream made members too
            # alike to gain: docs/benchmarks.md, ablation 19); the mixup weight of a step is
            # shared.  One member draws exactly as one network.
            perms = [torch.randperm(len(Xt), generator=gen).to(device) for _ in range(members)]
            tot_loss = torch.zeros((), device=device)
            tot_correct = torch.zeros((), device=device)
            seen = 0
            bar = _progress(steps, f"epoch {epoch}/{cfg.epochs}", show_bar)
            te = time.perf_counter()
            for i in range(steps):
                shares, weight = [], 1.0
                for perm in perms:
                    idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                    n_global = len(idx)
                    if distributed:  # this rank's share of the global batch
                        idx = dist_.shard(idx, rank, world)
                        if len(idx) == 0:  # fewer series than ranks: a zero-weight step keeps
                            idx, weight = perm[:1], 0.0  # DDP in lockstep
                    shares.append(idx)
                share = len(shares[0])
                idx = torch.cat(shares)
                xb, yb = Xt[idx], yt[idx]
                for aug in augs:
                    xb = aug(xb, aug_gen)
                lam, pair = 1.0, None
                if cfg.mixup:
                    lam = float(rng.beta(cfg.mixup, cfg.mixup))
                    pair = torch.cat([torch.randperm(share, generator=pair_gen) + m * share
                                      for m in range(members)]).to(device)
                    xb = lam * xb + (1 - lam) * xb[pair]
                logits, batch_loss = forward_backward(xb, yb, lam, pair, weight, n_global)
                if cfg.sam:  # sharpness-aware: the gradient at the worst nearby weights
                    with _sam_perturbed(model, cfg.sam):
                        forward_backward(xb, yb, lam, pair, weight, n_global)
                if cfg.grad_clip:
                    _clip(model, cfg.grad_clip)
                opt.step()
                sched.step()
                if ema is not None:
                    ema.update_parameters(model)
                tot_loss += batch_loss
                # the members' mean training accuracy, each on its own series
                tot_correct += (logits.argmax(-1).reshape(-1) == yb).sum() * weight / members
                seen += int(weight * share)
                if show_bar and (i % 5 == 0 or i == steps - 1):
                    bar.set_postfix(loss=f"{tot_loss.item() / max(1, seen):.4f}",
                                    acc=f"{tot_correct.item() / max(1, seen):.4f}")
                bar.update(1)
            bar.close()
            sum_loss, sum_correct = dist_.all_reduce_sum([tot_loss, tot_correct], device)
            row = {"epoch": epoch, "loss": sum_loss / len(Xt),
                   "accuracy": sum_correct / len(Xt), "lr": opt.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - te}
            if Xvt is not None:
                row["val_loss"], row["val_accuracy"] = _evaluate_tensors(
                    kept, Xvt, yvt, max(256, cfg.batch_size), cfg.amp)
            history.rows.append(row)
            if cfg.verbose >= 1:
                msg = " - ".join(f"{k} {v:.4f}" for k, v in row.items()
                                 if k not in ("epoch", "lr", "seconds"))
                log(f"epoch {epoch}/{cfg.epochs} - {row['seconds']:.1f}s - {msg}")
            monitor = row.get("val_loss", row["loss"])
            improved = monitor < best_loss
            stop = on_epoch_end is not None and bool(on_epoch_end(epoch, row))
            if distributed:  # rank 0 decides for all, so no rank ever leaves the loop alone
                improved, stop = dist_.broadcast_flags([improved, stop], device)
            if improved:
                best_loss, wait, history.best_epoch = monitor, 0, epoch
                if cfg.restore_best:
                    best_state = copy.deepcopy(kept.state_dict())
            else:
                wait += 1
            if stop:
                break
            if cfg.patience is not None and wait >= cfg.patience:
                history.stopped_early = True
                if cfg.verbose >= 1:
                    log(f"early stopping: no val_loss improvement in {cfg.patience} epochs; "
                        f"best epoch {history.best_epoch}")
                break
    except KeyboardInterrupt:
        history.interrupted = True
        log(f"interrupted: keeping the best model so far (epoch {history.best_epoch})")
    if best_state is not None and cfg.restore_best:
        model.load_state_dict(best_state)
    elif ema is not None:
        model.load_state_dict(ema.module.state_dict())
    history.seconds = time.perf_counter() - t0
    return history
