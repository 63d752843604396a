"""``tsformer benchmark``: train and test a preset on UCR/UEA datasets, beside live and
published baselines.

One command gives the figures the project is judged on: test accuracy (mean/std over seeds)
and CPU time per dataset, next to live runs of aeon's MiniRocket and MultiRocket-Hydra on the
same split (each in a child process on one thread, possibly under another interpreter, see
:mod:`tsformer.baselines`; results cached) and the published figures of :mod:`tsformer.suite`.
The test split is read only for the final evaluation.  Results go to the terminal and to
``results.md``, ``results.csv``, ``results.json`` and ``accuracy_vs_cpu.png`` in the output
directory, rewritten after every dataset; an interrupted run leaves them marked partial.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .suite import PUBLISHED_MINIROCKET, SUITES, markdown_table, summarise  # noqa: F401

DEV_SET: tuple[str, ...] = SUITES["dev15"]


# --------------------------------------------------------------------------- one run


def _load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """Train/test arrays with integer codes; test labels mapped onto the training classes."""
    from .suite import load_split

    return load_split(name)


def train_and_test(
    preset: str, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
    y_test: np.ndarray, n_classes: int, *, seed: int = 0,
    overrides: dict[str, Any] | None = None, max_epochs: int | None = None,
    on_epoch: Any = None,
) -> dict[str, Any]:
    """Fit one model through the pipeline (validation only from the training data), then
    score it on the test split."""
    from .config import DataShape, resolve
    from .inference import predict_logits
    from .models import Ensemble
    from .pipeline import train

    over = {"model": dict((overrides or {}).get("model") or {}),
            "train": {**((overrides or {}).get("train") or {}), "seed": seed, "verbose": 0},
            "members": (overrides or {}).get("members")}
    cfg = resolve(preset, DataShape.of(X_train, n_classes), over)
    if max_epochs is not None and cfg.train.epochs > max_epochs:
        cfg = replace(cfg, train=cfg.train.replace(epochs=max_epochs))
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(cfg, X_train, y_train,
                   on_epoch_end=(lambda e, row: on_epoch(e, cfg.train.epochs)) if on_epoch
                   else None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    model, amp = result.model, cfg.train.amp
    test_cpu = time.process_time()
    proba = predict_logits(model, X_test, amp=amp).softmax(1).numpy()
    test_cpu = time.process_time() - test_cpu
    pred = proba.argmax(1)
    out = {"accuracy": float((pred == y_test).mean()), "train_seconds": wall,
           "train_cpu_seconds": cpu, "test_cpu_seconds": test_cpu,
           "cpu_seconds": cpu + test_cpu,
           "epochs_run": sum(len(h.rows) for h in result.histories),
           "best_epoch": result.histories[0].best_epoch,
           "params": {"model": cfg.model.to_dict(), "train": cfg.train.to_dict(),
                      "members": cfg.members},
           "test_proba": proba.round(5).tolist()}
    if isinstance(model, Ensemble):  # does averaging pay: each member alone
        out["member_accuracy"] = [
            float((predict_logits(net, X_test, amp=amp).argmax(1).numpy() == y_test).mean())
            for net in model.members]
    return out


def live_minirocket(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                    y_test: np.ndarray, n_jobs: int = 1) -> dict[str, Any] | None:
    """aeon's MiniRocketClassifier on the same split with this interpreter's aeon (one
    thread; ``n_jobs`` is kept for old callers), or None when aeon is not importable here.

    It runs in a fresh child process: numba's thread pool, once started, stays in its process
    and made every later torch training step there 6-7x more CPU-costly (measured: the same 30
    steps took 0.75 CPU-s before a MiniRocket fit and 4.5-5.6 after), which would skew the
    table's times for every dataset after the first.
    """
    from .baselines import run_baseline

    if importlib.util.find_spec("aeon") is None:
        return None
    return run_baseline("minirocket", X_train, y_train, X_test, y_test, python=sys.executable)


def _mean_live(lives: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Live MiniRocket over the resamples: mean accuracy and fit time, and each one's."""
    if not lives or any(v is None for v in lives):
        return None
    if len(lives) == 1:
        return lives[0]
    keys = [k for k in ("accuracy", "train_seconds", "cpu_seconds", "wall_seconds")
            if all(k in v for v in lives)]
    return {**{k: float(np.mean([v[k] for v in lives])) for k in keys}, "per_resample": lives}


class LiveBaselines:
    """The live baselines of one benchmark run: which methods, under which interpreter,
    and the cache that spares rerunning them."""

    def __init__(self, methods: Sequence[str], python: str | None, aeon: str | None,
                 cache: Any = None) -> None:
        self.methods, self.python, self.aeon, self.cache = list(methods), python, aeon, cache

    def run(self, name: str, X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray,
            note: Any = None) -> dict[str, dict[str, Any]]:
        """Each method's record on this split: from the cache, else run (a failure is
        recorded as ``{"error": ...}`` and the benchmark goes on)."""
        from .baselines import BaselineError, cache_key, run_baseline, split_hash

        out: dict[str, dict[str, Any]] = {}
        fingerprint = split_hash(X, y, Xt, yt)
        for method in self.methods:
            key = cache_key(name, method, self.aeon or "unknown", fingerprint)
            got = self.cache.get(key) if self.cache is not None else None
            if got is None and self.aeon is None and self.cache is not None:
                # no aeon here: a cached result of any aeon version on this very split
                got = self.cache.find(name, method, fingerprint)
            if got is not None:
                out[method] = {**got, "cached": True}
                continue
            if self.python is None:
                continue
            if note is not None:
                note(f"{name}: {method}")
            try:
                got = {**run_baseline(method, X, y, Xt, yt, python=self.python), "key": key}
            except BaselineError as e:
                print(f"tsformer: warning: {name}: {e}", file=sys.stderr)
                out[method] = {"error": str(e), "accuracy": None, "key": key}
                continue
            if self.cache is not None:
                self.cache.put(key, got)
            out[method] = {**got, "cached": False}
        return out


# --------------------------------------------------------------------------- the table


def write_results(out: Path, results: list[dict[str, Any]], meta: dict[str, Any],
                  plot: bool = True) -> None:
    """results.md / results.csv / results.json (and accuracy_vs_cpu.png with ``plot``) in
    ``out``, each written to a temporary file and renamed, so a stop never leaves half a
    file."""
    from .suite import footnotes, plot_accuracy_vs_cpu

    out.mkdir(parents=True, exist_ok=True)
    header, rows = summarise(results)
    md = f"# Benchmark: preset {meta['preset']}\n\n`{meta['command']}`\n\n"
    planned = meta.get("datasets_planned")
    if meta.get("complete") is False:
        md += (f"**Partial results**: {len(results)} of {planned or '?'} datasets "
               f"({'interrupted' if meta.get('interrupted') else 'still running'}).\n\n")
    md += markdown_table(header, rows) + "\n\n" + "\n".join(footnotes(results)) + "\n"
    by_seed = seed_line(results)
    if by_seed:
        md += f"\n{by_seed}\n"
    _write_atomic(out / "results.md", md)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    _write_atomic(out / "results.csv", buf.getvalue())
    _write_atomic(out / "results.json", json.dumps({"meta": meta, "results": results}, indent=1,
                                                   default=str))
    if plot:
        plot_accuracy_vs_cpu(results, out / "accuracy_vs_cpu.png",
                             title=f"{meta['preset']} vs live baselines: accuracy and CPU time")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _run_stats(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """A dataset's figures over its runs (seeds x resamples); None without runs (only the
    baselines ran).  ``cpu_seconds`` is fit + predict (fit alone in older results)."""
    if not runs:
        return {k: None for k in ("acc_mean", "acc_std", "train_seconds_mean",
                                  "train_cpu_seconds_mean", "cpu_seconds_mean")}
    accs = [r["accuracy"] for r in runs]
    return {"acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)),
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in runs])),
            "train_cpu_seconds_mean": float(np.mean([r["train_cpu_seconds"] for r in runs])),
            "cpu_seconds_mean": float(np.mean([r.get("cpu_seconds", r["train_cpu_seconds"])
                                               for r in runs]))}


def seed_means(results: list[dict[str, Any]]) -> dict[int, float]:
    """Mean accuracy over the datasets, one per seed that every dataset has (averaged over
    resamples): the spread of these is the spread of the headline mean."""
    per: list[dict[int, list[float]]] = []
    for r in results:
        by: dict[int, list[float]] = {}
        for run in r["runs"]:
            if "seed" in run:
                by.setdefault(int(run["seed"]), []).append(run["accuracy"])
        per.append(by)
    common = set.intersection(*(set(b) for b in per)) if per else set()
    return {s: float(np.mean([np.mean(b[s]) for b in per])) for s in sorted(common)}


def seed_line(results: list[dict[str, Any]]) -> str:
    """'mean over N datasets by seed: ...' when there are several datasets and seeds."""
    means = seed_means(results)
    if len(results) < 2 or len(means) < 2:
        return ""
    v = list(means.values())
    each = ", ".join(f"seed {s} {m:.4f}" for s, m in means.items())
    return (f"mean over the {len(results)} datasets by seed: {each} "
            f"(mean {np.mean(v):.4f} +- {np.std(v):.4f})")


def merge_results(dirs: Sequence[str | os.PathLike]) -> tuple[list[dict[str, Any]],
                                                               dict[str, Any]]:
    """Results of several ``tsformer benchmark`` runs (one per dataset or per seed, as
    processes split the work) as one: each dataset's runs pooled and its figures recomputed.

    Refuses runs of other configurations (preset, overrides, epoch cap) and the same
    dataset, resample and seed twice, so a merged table never mixes two recipes or counts a
    run twice."""
    from .errors import ConfigError

    merged: dict[str, dict[str, Any]] = {}
    where: dict[tuple[str, int, int], str] = {}
    config: dict[str, Any] | None = None
    for d in dirs:
        path = Path(d) / "results.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            meta, results = data["meta"], data["results"]
        except FileNotFoundError:
            raise ConfigError(f"no results.json in {d}; pass tsformer benchmark output "
                              "directories") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path} is not a tsformer benchmark result ({e})") from None
        this = {k: meta.get(k) for k in ("preset", "overrides", "max_epochs")}
        if config is None:
            config = this
        elif this != config:
            raise ConfigError(f"{d} ran another configuration ({this}) than the first "
                              f"directory ({config}); merge runs of one configuration")
        per_split = meta.get("seeds", 1)
        for r in results:
            for i, run in enumerate(r["runs"]):
                # Results written before runs recorded their seed: runs are resample-major.
                run.setdefault("seed", meta.get("first_seed", 0) + i % per_split)
                key = (r["dataset"], int(run.get("resample", 0)), int(run["seed"]))
                if key in where:
                    raise ConfigError(f"{where[key]} and {d} both hold {key[0]} resample "
                                      f"{key[1]} seed {key[2]}; merge distinct runs")
                where[key] = str(d)
            if r["dataset"] not in merged:
                merged[r["dataset"]] = {**r, "runs": list(r["runs"])}
            else:
                m = merged[r["dataset"]]
                m["runs"] += r["runs"]
                m["minirocket_live"] = m.get("minirocket_live") or r.get("minirocket_live")
                m["baselines"] = m.get("baselines") or r.get("baselines")
    out = []
    for r in merged.values():
        r["runs"].sort(key=lambda run: (run.get("resample", 0), run["seed"]))
        n_resamples = len({run.get("resample", 0) for run in r["runs"]})
        out.append({**r, **_run_stats(r["runs"]), "resamples": n_resamples})
    seeds = sorted({run["seed"] for r in out for run in r["runs"]})
    meta = {**(config or {}), "seeds": len(seeds), "seed_list": seeds,
            "merged_from": [str(d) for d in dirs], "date": time.strftime("%Y-%m-%d"),
            "command": "tsformer benchmark --merge " + " ".join(str(d) for d in dirs)}
    return out, meta


# --------------------------------------------------------------------------- the runner


def run_benchmark(
    datasets: Sequence[str], *, preset: str = "patchformer", seeds: int = 1, first_seed: int = 0,
    resamples: int = 1, overrides: dict[str, dict[str, Any]] | None = None,
    max_epochs: int | None = None, minirocket: bool = True, n_jobs: int = 1,
    out: Path | None = None, progress: bool = True, command: str = "",
    baselines: LiveBaselines | None = None, train: bool = True,
) -> list[dict[str, Any]]:
    """Every dataset x resample x seed, with one progress bar for the whole run; returns the
    results.  Resample 0 is the archive's split; ``resamples=30`` is the protocol of the
    published MiniRocket figures (:func:`tsformer.data.stratified_resample`).

    ``baselines`` runs (or takes from its cache) the live baselines on every split; without
    it, ``minirocket`` runs MiniRocket with this interpreter's aeon when it has one.
    ``train=False`` runs the baselines only.  Results are rewritten after each dataset; on
    Ctrl-C they are written marked partial (``meta["complete"]`` false) and the interrupt
    goes on up."""
    import torch
    from tqdm.auto import tqdm

    from .config import check_overrides
    from .data import stratified_resample

    check_overrides(preset, overrides)  # fail before any training on a bad option
    total = len(datasets) * resamples * (seeds if train else 1)
    bar = tqdm(total=total, desc="benchmark", unit="run" if train else "split",
               disable=not progress, dynamic_ncols=True, file=sys.stderr)
    results: list[dict[str, Any]] = []
    meta = {"preset": preset, "seeds": seeds, "first_seed": first_seed, "resamples": resamples,
            "overrides": overrides or {}, "max_epochs": max_epochs, "command": command,
            "date": time.strftime("%Y-%m-%d"), "torch_threads": torch.get_num_threads(),
            "tsformer_trained": train, "datasets_planned": len(datasets), "complete": False}
    if baselines is not None:
        meta.update(baselines=baselines.methods, baselines_python=baselines.python,
                    aeon_version=baselines.aeon)
    try:
        for name in datasets:
            bar.set_description(f"{name}: loading")
            archive = _load(name)
            classes = archive[4]
            runs, lives, live_runs = [], [], []
            for rs in range(resamples):
                X, y, Xt, yt = stratified_resample(*archive[:4], rs)
                for seed in range(first_seed, first_seed + seeds) if train else ():
                    where = f" resample {rs}," if resamples > 1 else ""
                    label = f"{name}{where} seed {seed - first_seed + 1}/{seeds}"
                    bar.set_description(label)

                    def on_epoch(e: int, n: int, label: str = label) -> None:
                        bar.set_description(f"{label} epoch {e}/{n}")

                    r = train_and_test(preset, X, y, Xt, yt, len(classes), seed=seed,
                                       overrides=overrides, max_epochs=max_epochs,
                                       on_epoch=on_epoch)
                    runs.append({"resample": rs, "seed": seed, **r})
                    bar.update(1)
                    bar.set_postfix(last=f"{name} {r['accuracy']:.4f} in "
                                    f"{r['train_seconds']:.0f}s")
                if baselines is not None:
                    live_runs.append(baselines.run(name, X, y, Xt, yt,
                                                   note=bar.set_description))
                elif minirocket:
                    bar.set_description(f"{name}: MiniRocket")
                    lives.append(live_minirocket(X, y, Xt, yt, n_jobs))
                if not train:
                    bar.update(1)
            by_method = {m: [lr.get(m) for lr in live_runs] for m in
                         (baselines.methods if baselines is not None else ())}
            results.append({
                "dataset": name, "n_train": len(X), "n_test": len(Xt), "length": X.shape[2],
                "n_channels": X.shape[1], "resamples": resamples, "n_classes": len(classes),
                **_run_stats(runs), "published": PUBLISHED_MINIROCKET.get(name),
                "minirocket_live": _mean_live(lives) if baselines is None
                else _mean_live(by_method.get("minirocket") or []),
                "baselines": {m: v[0] if resamples == 1 else v for m, v in by_method.items()
                              if all(v)},
                "runs": runs,
            })
            if out is not None:  # keep partial results if a long run is stopped
                write_results(out, results, meta, plot=False)
        meta["complete"] = True
        if out is not None:
            write_results(out, results, meta)
    except KeyboardInterrupt:
        meta["interrupted"] = True
        if out is not None:
            write_results(out, results, meta)
        raise
    finally:
        bar.close()
    return results
