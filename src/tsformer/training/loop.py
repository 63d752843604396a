"""One training loop for one network, Keras semantics by default (nanoGPT-style: plain
config, plain loop).

Defaults reproduce the seed's ``model.fit``: Adam(1e-4, eps 1e-7), batch 64, up to 200
epochs, ``validation_split=0.2`` taken from the *end* of the (once-shuffled) training arrays
as Keras takes it, a fresh shuffle of the training part each epoch, and early stopping on
validation loss with patience 10 that restores the best weights.  An ensemble is trained by
calling :func:`fit` once per member (:func:`tsformer.pipeline.train`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..device import autocast, resolve_device
from ..errors import ConfigError, TrainingError
from ..inference import predict_logits
from ..models import DataDependentInit
from . import distributed as dist_
from .config import TrainConfig
from .inputs import prepare_inputs, validation_inputs

#: Series the data-dependent initialisation sees, spread over the training set.
INIT_SERIES = 64
@dataclass
class History:
    """Per-epoch metrics and how the run ended."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False
    time_limited: bool = False
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """How the run went, for ``metrics.json``: length, best epoch and its validation."""
        out: dict[str, Any] = {
            "epochs_run": len(self.rows), "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early, "interrupted": self.interrupted,
            "time_limited": self.time_limited,
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
          pair: Tensor | None = None, reduction: str = "mean",
          weight: Tensor | None = None) -> Tensor:
    """Cross-entropy with the config's label smoothing and class weights; under mixup the
    blend of the two labels' losses with the inputs' weights."""
    logits = logits.float()

    def ce(target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target, reduction=reduction, weight=weight,
                               label_smoothing=cfg.label_smoothing)

    return ce(y) if pair is None else lam * ce(y) + (1 - lam) * ce(y[pair])


def _check_finite(model: nn.Module, row: dict[str, float], epoch: int, cfg: TrainConfig,
                  X: np.ndarray) -> None:
    """Stop a run whose loss or weights became NaN/inf: such a model predicts nothing, so it
    must never be kept or saved as if training had worked."""
    bad = [k for k in ("loss", "val_loss") if k in row and not math.isfinite(row[k])]
    if not bad and all(torch.isfinite(p).all() for p in model.parameters()):
        return
    what = f"the {bad[0].replace('_', ' ')} is {row[bad[0]]}" if bad else "weights are NaN/inf"
    peak = float(np.abs(X).max()) if X.size else 0.0
    hint = (f"scale the data (its largest value is {peak:.3g})" if peak > 1e6 else
            f"lower the learning rate (lr={cfg.lr:g}) or clip gradients (train.grad_clip)")
    raise TrainingError(f"training diverged in epoch {epoch}: {what}; {hint}. No model was "
                        "kept")


def class_weights(y: np.ndarray, n_classes: int, rule: str) -> np.ndarray | None:
    """Per-class loss weights: ``"balanced"`` is scikit-learn's ``n / (k * count)`` (a class
    absent from the training part gets weight 0); ``"none"``: None."""
    if rule == "none":
        return None
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = len(y) / (present.sum() * counts[present])
    return w


class LRSchedule:
    """The schedule: the learning rate of step ``i`` as a share of ``cfg.lr``.  Warm-up and
    decay are shares of the run, so a shorter run keeps the schedule's shape; ``total`` (the
    run's steps) may be brought forward mid-run (a time limit), and the decay then finishes
    within the new length."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.cfg = cfg
        self.total = max(1, cfg.epochs * steps_per_epoch)
        self.warm = int(cfg.warmup * cfg.epochs * steps_per_epoch)

    def __call__(self, step: int) -> float:
        cfg, total, warm = self.cfg, self.total, min(self.warm, self.total)
        if cfg.schedule == "constant":
            return min(1.0, (step + 1) / warm) if warm else 1.0
        if step < warm:
            return (step + 1) / warm
        prog = min(1.0, (step - warm) / max(1, total - warm))
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * prog))
        # onecycle: linear warm-up then cosine to 1/1000 of the peak
        return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * prog))


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> LRSchedule:
    return LRSchedule(cfg, steps_per_epoch)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return kind(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                weight_decay=cfg.weight_decay)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not enabled, unit="step",
                dynamic_ncols=True)


class _Pace:
    """Progress lines for a run without a progress bar: the first after a few seconds, with
    the time the whole run will take at the pace so far, then one every half minute."""

    FIRST, EVERY = 3.0, 30.0

    def __init__(self, log: Callable[[str], None], epochs: int, steps: int) -> None:
        self.log, self.epochs, self.steps = log, epochs, steps
        self.t0 = time.perf_counter()
        self.next = self.FIRST

    def step(self, epoch: int, done: int) -> None:
        elapsed = time.perf_counter() - self.t0
        if elapsed < self.next or done == self.steps:
            return
        self.next = elapsed + self.EVERY
        total_steps = self.epochs * self.steps
        finished = (epoch - 1) * self.steps + done
        left = elapsed / finished * (total_steps - finished)
        run = f"{self.epochs} epoch" + "s" * (self.epochs != 1)
        self.log(f"epoch {epoch}/{self.epochs}: step {done}/{self.steps}, {elapsed:.0f} s so "
                 f"far; about {_duration(left)} left of the run ({run}; less if it stops "
                 "early)")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _Deadline:
    """Holds a run to a deadline: after every step, the steps that still fit at the pace so
    far (steps since the start, validation included) become the schedule's length, so the
    learning-rate decay ends with the run; the run stops once it has taken them."""

    def __init__(self, deadline: float, schedule: LRSchedule, history: History,
                 log: Callable[[str], None], done: int) -> None:
        self.deadline, self.schedule, self.history, self.log = deadline, schedule, history, log
        self.t0, self.start, self.planned = time.perf_counter(), done, schedule.total

    def step(self, done: int) -> bool:
        """After optimiser step ``done`` (counted from the run's first): True to stop."""
        now = time.perf_counter()
        if now >= self.deadline:
            self.history.time_limited = True
            return True
        if done - self.start < 5 and now - self.t0 < 1.0:  # too few steps to judge the pace
            return False
        per_step = (now - self.t0) / max(1, done - self.start)
        fits = done + int((self.deadline - now) // per_step)
        self.schedule.total = min(self.planned, max(done, fits))  # may recover if it speeds up
        if fits < self.planned:
            if not self.history.time_limited:
                self.log(f"time limit: the run ends after {fits} of {self.planned} "
                         f"steps ({per_step * 1000:.0f} ms a step); the learning rate decays "
                         "within them")
            self.history.time_limited = True
        return done >= self.schedule.total


def _split(X: np.ndarray, y: np.ndarray, cfg: TrainConfig, rng: np.random.Generator,
           validation_data: tuple[np.ndarray, np.ndarray] | None):
    """Training and validation arrays: given, or Keras' split of the (once shuffled) data."""
    if validation_data is not None:
        Xv, yv = (np.asarray(a) for a in validation_data)
        return X, y, Xv.astype(np.float32), yv.astype(np.int64)
    if cfg.validation_split <= 0:
        return X, y, None, None
    if cfg.shuffle_before_split:
        idx = rng.permutation(len(X))
        X, y = X[idx], y[idx]
    cut = keras_validation_split(len(X), cfg.validation_split)
    if cut == 0 or cut == len(X):
        raise ConfigError(
            f"validation_split={cfg.validation_split} leaves no training or no validation "
            f"data from {len(X)} series; lower it or pass validation data")
    return X[:cut], y[:cut], X[cut:], y[cut:]


def fit(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig | None = None,
    *,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None,
    log: Callable[[str], None] | None = None,
    resume: History | None = None,
    deadline: float | None = None,
) -> History:
    """Train one network on ``X (n, C, T)`` float32 and integer class codes ``y``.

    ``resume``: the history of an interrupted run of this network and configuration; training
    goes on from the epoch after its last, with the learning-rate schedule where it was and
    the same data order (the optimizer's moment estimates start afresh, so the result is
    close to, not bit-identical with, an uninterrupted run).

    Validation comes from ``validation_data`` or, else, the last ``validation_split`` of the
    training arrays (after one seeded shuffle, as the seed does).  ``on_epoch_end(epoch, row)``
    may return True to stop (pruning, distributed runs, time budgets).  Ctrl-C stops after
    the current step and keeps the best weights so far; ``History.interrupted`` says so.

    ``deadline`` (a ``time.perf_counter()`` value; default: ``cfg.time_limit`` seconds from
    the start): the run is shortened to the steps that still fit at the pace so far, the
    learning-rate decay finishing within them, and ends at the deadline with the model so far
    (the best epoch's weights where ``restore_best``).  ``History.time_limited`` says so.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the model trains with DistributedDataParallel:
    ``batch_size`` stays the global batch (see :mod:`tsformer.training.distributed`), metrics
    are all-reduced, only rank 0 logs, and rank 0's stop decisions are broadcast to every rank.
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
    rng = np.random.default_rng(cfg.seed)
    X, y, Xv, yv = _split(np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64), cfg,
                          rng, validation_data)

    # All data on the device once: no per-batch host copies.
    model.to(device)
    Xt = torch.from_numpy(np.ascontiguousarray(X)).to(device)
    if isinstance(model, DataDependentInit):  # series spread over the set
        spread = torch.linspace(0, len(Xt) - 1, min(len(Xt), INIT_SERIES)).long().to(device)
        model.init_from_data(Xt[spread])
    train_model: nn.Module = model
    if distributed:  # wraps in place: `model` keeps the (shared) parameters
        # static_graph: some parameters may never get a gradient (e.g. a key bias that
        # softmax cancels) and DDP must know that the set never changes.
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            static_graph=True)
    yt = torch.from_numpy(y).to(device)
    cw_t: Tensor | None = None  # class weights, sized by the first logits (the model's classes)
    Xvt = torch.from_numpy(np.ascontiguousarray(Xv)).to(device) if Xv is not None else None
    yvt = torch.from_numpy(yv).to(device) if yv is not None else None

    opt = make_optimizer(model, cfg)
    steps = math.ceil(len(Xt) / cfg.batch_size)
    schedule = lr_factor(cfg, steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    if deadline is None and cfg.time_limit is not None:
        deadline = time.perf_counter() + cfg.time_limit
    limit = None
    gen = torch.Generator(device="cpu")
    gen.manual_seed(cfg.seed if cfg.seed is not None else int(time.time()))
    aug_gen = torch.Generator(device=device)
    aug_gen.manual_seed((cfg.seed or 0) + 1 + rank)
    inputs = prepare_inputs(model, train_model, Xt, cfg, aug_gen, distributed=distributed)
    eval_model, Xvt = validation_inputs(model, inputs, Xvt)
    # Mixup pairs: ranks draw them for shards of unequal size, so not from `gen`, which must
    # stay the same on every rank (it shuffles the next epoch); one process keeps `gen`.
    pair_gen = gen
    if distributed:
        pair_gen = torch.Generator(device="cpu")
        pair_gen.manual_seed((cfg.seed or 0) + 2 + rank)
    step_fn = torch.compile(inputs.net) if cfg.compile else inputs.net

    history = History()
    best_loss, best_state, wait = math.inf, None, 0
    start = 1
    if resume is not None and resume.rows:
        history = History(rows=[dict(r) for r in resume.rows], best_epoch=resume.best_epoch)
        start = len(history.rows) + 1
        with warnings.catch_warnings():  # stepping the schedule alone, on purpose
            warnings.simplefilter("ignore", UserWarning)
            for _ in range((start - 1) * steps):
                sched.step()  # the schedule where the run stopped
        for _ in range(start - 1):
            torch.randperm(len(Xt), generator=gen)  # and the data order it would have seen
        monitor_key = "val_loss" if Xvt is not None else "loss"
        if history.best_epoch:
            best_loss = history.rows[history.best_epoch - 1].get(monitor_key, math.inf)
            if cfg.restore_best:
                best_state = copy.deepcopy(model.state_dict())  # the saved, best weights
        wait = len(history.rows) - (history.best_epoch or 0)
    show_bar = (cfg.verbose >= 1 and sys.stderr.isatty() and not os.environ.get("CI")
                and rank == 0)
    # Without a progress bar (output piped, CI, a log file), timed lines say how far the run
    # is and how long it will take, from the first seconds on.
    pace = _Pace(log, cfg.epochs, steps) if cfg.verbose >= 1 and not show_bar else None
    t0 = time.perf_counter()
    done = (start - 1) * steps  # optimiser steps taken
    if deadline is not None and not distributed:
        limit = _Deadline(deadline, schedule, history, log, done)
    out_of_time = False
    try:
        for epoch in range(start, cfg.epochs + 1):
            if out_of_time:
                break
            model.train()
            perm = torch.randperm(len(Xt), generator=gen).to(device)
            tot_loss = torch.zeros((), device=device)
            tot_correct = torch.zeros((), device=device)
            seen = 0
            bar = _progress(steps, f"epoch {epoch}/{cfg.epochs}", show_bar)
            te = time.perf_counter()
            for i in range(steps):
                idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                n_global, weight = len(idx), 1.0
                if distributed:  # this rank's share of the global batch
                    idx = dist_.shard(idx, rank, world)
                    if len(idx) == 0:  # fewer series than ranks: a zero-weight step keeps
                        idx, weight = perm[:1], 0.0  # DDP in lockstep
                xb, yb = inputs.batch(idx, aug_gen), yt[idx]
                lam, pair = 1.0, None
                if cfg.mixup:
                    lam = float(rng.beta(cfg.mixup, cfg.mixup))
                    pair = torch.randperm(len(idx), generator=pair_gen).to(device)
                    xb = lam * xb + (1 - lam) * xb[pair]
                with autocast(device, cfg.amp):
                    logits = step_fn(xb)
                if cfg.class_weight != "none" and cw_t is None:
                    cw_t = torch.as_tensor(class_weights(y, logits.shape[-1], cfg.class_weight),
                                           dtype=torch.float32, device=device)
                if distributed:
                    # Sum / global batch, times W as DDP averages gradients over W ranks: the
                    # reduced gradient equals the single-process mean-loss gradient.
                    loss_sum = weight * _loss(logits, yb, cfg, lam, pair, "sum", cw_t)
                    loss, batch_loss = loss_sum * (world / n_global), loss_sum.detach()
                else:
                    loss = _loss(logits, yb, cfg, lam, pair, "mean", cw_t)
                    batch_loss = loss.detach() * len(yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                tot_loss += batch_loss
                tot_correct += (logits.argmax(-1) == yb).sum() * weight
                seen += int(weight * len(idx))
                if show_bar and (i % 5 == 0 or i == steps - 1):
                    bar.set_postfix(loss=f"{tot_loss.item() / max(1, seen):.4f}",
                                    acc=f"{tot_correct.item() / max(1, seen):.4f}")
                bar.update(1)
                if pace is not None:
                    pace.step(epoch, i + 1)
                done += 1
                if limit is not None and limit.step(done):
                    out_of_time = True  # the steps that fit are taken: end the run here
                    break
            bar.close()
            sum_loss, sum_correct = dist_.all_reduce_sum([tot_loss, tot_correct], device)
            counted = len(Xt) if distributed else max(1, seen)
            row = {"epoch": epoch, "loss": sum_loss / counted,
                   "accuracy": sum_correct / counted, "lr": opt.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - te}
            if Xvt is not None:
                row["val_loss"], row["val_accuracy"] = _evaluate_tensors(
                    eval_model, Xvt, yvt, max(256, cfg.batch_size), cfg.amp)
            _check_finite(model, row, epoch, cfg, X)
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
                    best_state = copy.deepcopy(model.state_dict())
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
    history.seconds = time.perf_counter() - t0
    return history
