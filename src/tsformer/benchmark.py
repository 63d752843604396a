"""``tsformer benchmark``: train and test a preset on UCR/UEA datasets, beside MiniRocket.

One command gives the figures the project is judged on: test accuracy (mean/std over seeds)
and training time per dataset, next to MiniRocket's published accuracy and, when the optional
``aeon`` extra is importable, a live MiniRocket run on the same machine in the same run (in a
child process, see :func:`live_minirocket`).
The test split is read only for the final evaluation.  Results go to the terminal and to
``results.md``, ``results.csv`` and ``results.json`` in the output directory.

"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

#: MiniRocket's published mean test accuracy over 30 resamples (the development set).
PUBLISHED_MINIROCKET: dict[str, float] = {
    "FordA": 0.948182, "ArrowHead": 0.880952, "BME": 0.992222, "Beef": 0.761111,
    "BeetleFly": 0.906667, "Car": 0.921111, "Chinatown": 0.968999, "Coffee": 0.99881,
    "CricketY": 0.841368, "DiatomSizeReduction": 0.94281, "DistalPhalanxTW": 0.695923,
    "ECGFiveDays": 0.990476, "FacesUCR": 0.96865, "FiftyWords": 0.829011,
    "FreezerSmallTrain": 0.987322,
}
DEV_SET: tuple[str, ...] = tuple(PUBLISHED_MINIROCKET)


# --------------------------------------------------------------------------- one run


def _load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """Train/test arrays with integer codes; test labels mapped onto the training classes."""
    from .data import codes_for, encode_labels, load_dataset

    s = load_dataset(name, progress=False)
    y_train, classes = encode_labels(s.y_train)
    y_test = codes_for(s.y_test, classes, f"the {s.name} test split")
    return (np.asarray(s.X_train, np.float32), y_train, np.asarray(s.X_test, np.float32), y_test,
            classes)


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
    proba = predict_logits(model, X_test, amp=amp).softmax(1).numpy()
    pred = proba.argmax(1)
    out = {"accuracy": float((pred == y_test).mean()), "train_seconds": wall,
           "train_cpu_seconds": cpu,
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


def _minirocket(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                y_test: np.ndarray, n_jobs: int) -> dict[str, float]:
    from aeon.classification.convolution_based import MiniRocketClassifier

    clf = MiniRocketClassifier(n_jobs=n_jobs, random_state=0)
    t0 = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    acc = float((np.asarray(clf.predict(X_test)) == y_test).mean())
    return {"accuracy": acc, "train_seconds": seconds}


def live_minirocket(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                    y_test: np.ndarray, n_jobs: int) -> dict[str, float] | None:
    """aeon's MiniRocketClassifier on the same split, or None when aeon is not installed.

    It runs in a fresh child process: numba's thread pool, once started, stays in its process
    and made every later torch training step there 6-7x more CPU-costly (measured: the same 30
    steps took 0.75 CPU-s before a MiniRocket fit and 4.5-5.6 after), which would skew the
    table's times for every dataset after the first.
    """
    if importlib.util.find_spec("aeon") is None:
        return None
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_minirocket, X_train, y_train, X_test, y_test, n_jobs).result()


def _mean_live(lives: list[dict[str, float] | None]) -> dict[str, Any] | None:
    """Live MiniRocket over the resamples: mean accuracy and fit time, and each one's."""
    if not lives or any(v is None for v in lives):
        return None
    if len(lives) == 1:
        return lives[0]
    return {"accuracy": float(np.mean([v["accuracy"] for v in lives])),
            "train_seconds": float(np.mean([v["train_seconds"] for v in lives])),
            "per_resample": lives}


# --------------------------------------------------------------------------- the table


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def summarise(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Table header and rows (one per dataset plus the mean over datasets)."""
    header = ["dataset", "train", "length", "classes", "acc_mean", "acc_std", "resamples", "seeds",
              "train_s", "cpu_s", "minirocket_published", "delta", "minirocket_live",
              "minirocket_live_s"]
    rows = []
    for r in results:
        delta = (r["acc_mean"] - r["published"]) if r["published"] is not None else None
        live = r.get("minirocket_live") or {}
        rows.append([r["dataset"], str(r["n_train"]), str(r["length"]), str(r["n_classes"]),
                     _fmt(r["acc_mean"]), _fmt(r["acc_std"]), str(r.get("resamples", 1)),
                     str(len(r["runs"]) // r.get("resamples", 1)),
                     _fmt(r["train_seconds_mean"], ".1f"), _fmt(r["train_cpu_seconds_mean"], ".1f"),
                     _fmt(r["published"]), _fmt(delta, "+.4f"), _fmt(live.get("accuracy")),
                     _fmt(live.get("train_seconds"), ".1f")])
    if len(results) > 1:
        accs = [r["acc_mean"] for r in results]
        pub = [r["published"] for r in results if r["published"] is not None]
        both = len(pub) == len(results)
        rows.append(["mean", "", "", "", _fmt(float(np.mean(accs))), "", "", "",
                     _fmt(float(np.mean([r["train_seconds_mean"] for r in results])), ".1f"),
                     _fmt(float(np.mean([r["train_cpu_seconds_mean"] for r in results])), ".1f"),
                     _fmt(float(np.mean(pub))) if both else "",
                     _fmt(float(np.mean(accs) - np.mean(pub)), "+.4f") if both else "", "", ""])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_results(out: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """results.md / results.csv / results.json in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    header, rows = summarise(results)
    md = f"# Benchmark: preset {meta['preset']}\n\n`{meta['command']}`\n\n"
    md += markdown_table(header, rows) + "\n"
    by_seed = seed_line(results)
    if by_seed:
        md += f"\n{by_seed}\n"
    (out / "results.md").write_text(md, encoding="utf-8")
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1,
                                                 default=str), encoding="utf-8")


def _run_stats(runs: list[dict[str, Any]]) -> dict[str, float]:
    """A dataset's figures over its runs (seeds x resamples)."""
    accs = [r["accuracy"] for r in runs]
    return {"acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)),
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in runs])),
            "train_cpu_seconds_mean": float(np.mean([r["train_cpu_seconds"] for r in runs]))}


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
) -> list[dict[str, Any]]:
    """Every dataset x resample x seed, with one progress bar for the whole run; returns the
    results.  Resample 0 is the archive's split; ``resamples=30`` is the protocol of the
    published MiniRocket figures (:func:`tsformer.data.stratified_resample`)."""
    import torch
    from tqdm.auto import tqdm

    from .config import check_overrides
    from .data import stratified_resample

    check_overrides(preset, overrides)  # fail before any training on a bad option
    total = len(datasets) * resamples * seeds
    bar = tqdm(total=total, desc="benchmark", unit="run", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    results: list[dict[str, Any]] = []
    meta = {"preset": preset, "seeds": seeds, "first_seed": first_seed, "resamples": resamples,
            "overrides": overrides or {}, "max_epochs": max_epochs, "command": command,
            "date": time.strftime("%Y-%m-%d"),
            "torch_threads": torch.get_num_threads()}
    try:
        for name in datasets:
            bar.set_description(f"{name}: loading")
            archive = _load(name)
            classes = archive[4]
            runs, lives = [], []
            for rs in range(resamples):
                X, y, Xt, yt = stratified_resample(*archive[:4], rs)
                for seed in range(first_seed, first_seed + seeds):
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
                if minirocket:
                    bar.set_description(f"{name}: MiniRocket")
                    lives.append(live_minirocket(X, y, Xt, yt, n_jobs))
            live = _mean_live(lives)
            results.append({
                "dataset": name, "n_train": len(X), "n_test": len(Xt), "length": X.shape[2],
                "n_channels": X.shape[1], "resamples": resamples, "n_classes": len(classes),
                **_run_stats(runs), "published": PUBLISHED_MINIROCKET.get(name),
                "minirocket_live": live, "runs": runs,
            })
            if out is not None:  # keep partial results if a long run is stopped
                write_results(out, results, meta)
    finally:
        bar.close()
    return results
