"""Calibrated probabilities: expected calibration error, temperature scaling and split
conformal prediction sets.

* ECE (Naeini et al. 2015; Guo et al. 2017): equal-width bins on the top-class confidence,
  the bins' |accuracy - mean confidence| weighted by their share of the series.
* Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017):
  one scalar ``T > 0`` minimising the NLL of ``logits / T`` on held-out data.  It never
  changes the argmax, so accuracy is unchanged.
* Split conformal prediction (Vovk et al. 2005; Angelopoulos & Bates 2021): score
  ``1 - p(true class)`` on held-out series; the set of a new series is every label whose
  score is at most the ``ceil((n + 1)(1 - alpha)) / n`` empirical quantile, which covers the
  true label with probability >= 1 - alpha when held-out and new series are exchangeable.

:class:`Calibration` is the record saved under ``"calibration"`` in ``config.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError

#: Bins of the expected calibration error and the reliability diagram.
N_BINS = 15
#: Held-out series below which no temperature is fitted (too few to estimate one).
MIN_SERIES = 20
#: Bounds of the temperature search (log-uniform), and of a stored temperature.
T_LOW, T_HIGH = 0.05, 20.0
#: Conformal scores kept in config.json: more held-out series are thinned to this many
#: order statistics (conservatively, see :func:`conformal_threshold`).
MAX_SCORES = 5000

__all__ = ["MAX_SCORES", "N_BINS", "Calibration", "conformal_threshold",
           "expected_calibration_error", "fit_calibration", "fit_temperature", "nll",
           "prediction_sets", "reliability", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (scipy's, stable for large logits)."""
    from scipy.special import softmax as _softmax

    return _softmax(np.asarray(logits, dtype=np.float64), axis=1)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of codes ``y`` under ``softmax(logits / temperature)``."""
    from scipy.special import log_softmax

    z = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-z[np.arange(len(y)), np.asarray(y, dtype=np.int64)].mean())


def reliability(proba: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> dict[str, list]:
    """Per bin of top-class confidence ``((m-1)/M, m/M]``: series count, mean confidence and
    accuracy (None for an empty bin): the reliability diagram's data."""
    proba = np.asarray(proba, dtype=np.float64)
    conf = proba.max(1)
    correct = proba.argmax(1) == np.asarray(y)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, acc = conf_sum / count, acc_sum / count
    return {"edges": np.linspace(0, 1, n_bins + 1).round(6).tolist(), "count": count.tolist(),
            "confidence": [None if c == 0 else float(v) for c, v in zip(count, mean_conf,
                                                                          strict=True)],
            "accuracy": [None if c == 0 else float(v) for c, v in zip(count, acc, strict=True)]}


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = N_BINS
                               ) -> float:
    """ECE: sum over bins of (share of series) x |accuracy - mean confidence|."""
    r = reliability(proba, y, n_bins)
    n = sum(r["count"])
    if n == 0:
        return 0.0
    return float(sum(c / n * abs(a - f) for c, a, f in zip(r["count"], r["accuracy"],
                                                           r["confidence"], strict=True) if c))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The ``T`` in [T_LOW, T_HIGH] minimising the NLL of ``logits / T`` (bounded Brent on
    log T: the NLL is smooth in it and the search cannot leave T > 0)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    res = minimize_scalar(lambda u: nll(logits, y, math.exp(u)), method="bounded",
                          bounds=(math.log(T_LOW), math.log(T_HIGH)),
                          options={"xatol": 1e-4})
    return float(math.exp(res.x))


def conformal_scores(proba: np.ndarray, y: np.ndarray) -> tuple[list[float], int]:
    """Sorted nonconformity scores ``1 - p(true class)`` (rounded up to 6 decimals, so never
    lower than the exact ones), thinned to at most :data:`MAX_SCORES` order statistics; and
    how many series they came from."""
    s = 1.0 - np.asarray(proba, dtype=np.float64)[np.arange(len(y)), np.asarray(y)]
    s = np.sort(np.clip(np.ceil(s * 1e6) / 1e6, 0.0, 1.0))
    if len(s) > MAX_SCORES:
        s = s[_thinned(len(s), MAX_SCORES)]
    return [float(v) for v in s], len(y)


def _thinned(n: int, m: int) -> np.ndarray:
    """Indices of the ``m`` order statistics kept of ``n`` (first and last included)."""
    return np.round(np.linspace(0, n - 1, m)).astype(np.int64)


def conformal_threshold(scores: list[float], n: int, alpha: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1)(1 - alpha))``-th smallest of ``n``
    scores (of thinned scores, the nearest kept one at or above that rank).  Refuses an
    ``alpha`` outside (0, 1) or below ``1 / (n + 1)``, where no finite set has the
    guarantee."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"alpha must be a number in (0, 1), e.g. 0.1 for sets that hold the "
                          f"true label 90% of the time, not {alpha!r}")
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    if k > n:
        raise ConfigError(f"alpha={alpha:g} is too small for the {n} held-out series the "
                          f"model was calibrated on: the smallest is {1 / (n + 1):.4g} "
                          "(1 / (n + 1)); use a larger alpha or calibrate on more series")
    if len(scores) == n:
        return float(scores[k - 1])
    j = int(np.searchsorted(_thinned(n, len(scores)), k - 1, side="left"))
    return float(scores[min(j, len(scores) - 1)])


def prediction_sets(proba: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean ``(n_cases, n_classes)``: the labels whose score ``1 - p`` is at most the
    conformal threshold (``p >= 1 - threshold``)."""
    return (1.0 - np.asarray(proba, dtype=np.float64)) <= threshold + 1e-12


def _num(where: str, v: Any, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or not low <= v <= high:
        raise ConfigError(f"calibration {where} must be a finite number in [{low:g}, {high:g}], "
                          f"not {v!r}")
    return float(v)


@dataclass
class Calibration:
    """What was fitted on held-out series: the temperature the model's logits are divided by
    (1: none, with ``reason``), the scores before and after, and the conformal scores."""

    temperature: float
    fitted_on: str
    n: int
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    reason: str | None = None
    conformal_scores: list[float] = field(default_factory=list)
    conformal_n: int = 0

    def __post_init__(self) -> None:
        _num("temperature", self.temperature, T_LOW, T_HIGH)
        if not isinstance(self.fitted_on, str) or len(self.fitted_on) > 200:
            raise ConfigError("calibration fitted_on must be a short text")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise ConfigError(f"calibration n must be a whole number >= 0, not {self.n!r}")
        for key in ("nll_before", "nll_after", "ece_before", "ece_after"):
            if getattr(self, key) is not None:
                _num(key, getattr(self, key), 0.0)
        if self.reason is not None and (not isinstance(self.reason, str)
                                        or len(self.reason) > 500):
            raise ConfigError("calibration reason must be a short text")
        s = self.conformal_scores
        if not isinstance(s, list) or len(s) > MAX_SCORES:
            raise ConfigError(f"calibration conformal_scores must be a list of at most "
                              f"{MAX_SCORES} numbers")
        self.conformal_scores = [_num("conformal score", v, 0.0, 1.0) for v in s]
        if any(a > b for a, b in zip(s, s[1:], strict=False)):
            raise ConfigError("calibration conformal_scores must be sorted")
        if isinstance(self.conformal_n, bool) or not isinstance(self.conformal_n, int) \
                or self.conformal_n < len(s) or (s and self.conformal_n > 10**9):
            raise ConfigError("calibration conformal_n must count at least the stored scores")

    def threshold(self, alpha: float) -> float:
        """The conformal threshold for miscoverage ``alpha``; one ConfigError line when the
        model has no held-out scores or ``alpha`` does not fit them."""
        if not self.conformal_scores:
            raise ConfigError("this model has no conformal scores (calibrate it on held-out "
                              "series first: tsformer calibrate RUN_DIR --data FILE)")
        return conformal_threshold(self.conformal_scores, self.conformal_n, alpha)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"temperature": self.temperature, "fitted_on": self.fitted_on,
                             "n": self.n}
        for key in ("nll_before", "nll_after", "ece_before", "ece_after", "reason"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        d["conformal_n"] = self.conformal_n
        d["conformal_scores"] = list(self.conformal_scores)
        return d

    def summary(self) -> dict[str, Any]:
        """The record without the scores (for metrics.json and messages)."""
        d = self.to_dict()
        d.pop("conformal_scores")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        if not isinstance(d, Mapping):
            raise ConfigError("calibration must be an object (temperature, fitted_on, n, ...)")
        known = {"temperature", "fitted_on", "n", "nll_before", "nll_after", "ece_before",
                 "ece_after", "reason", "conformal_scores", "conformal_n"}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ConfigError(f"unknown calibration key(s) {', '.join(unknown)}")
        for key in ("temperature", "fitted_on", "n"):
            if key not in d:
                raise ConfigError(f"calibration lacks {key!r}")
        return cls(**dict(d))


def fit_calibration(logits: np.ndarray, y: np.ndarray, fitted_on: str) -> Calibration:
    """Temperature and conformal scores from a model's raw ``logits`` on held-out codes
    ``y``.  T != 1 only where it lowers the held-out NLL; else T = 1 and the reason."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    before = softmax(logits)
    nll0, ece0 = nll(logits, y), expected_calibration_error(before, y)
    t, reason = 1.0, None
    if n < MIN_SERIES:
        reason = f"{n} held-out series are too few to fit a temperature (at least {MIN_SERIES})"
    else:
        t = round(fit_temperature(logits, y), 6)
        if not nll(logits, y, t) < nll0 - 1e-9:
            t, reason = 1.0, "temperature scaling did not lower the held-out NLL"
    after = softmax(logits / t)
    scores, m = conformal_scores(after, y)
    return Calibration(temperature=t, fitted_on=fitted_on, n=n,
                       nll_before=round(nll0, 6), nll_after=round(nll(logits, y, t), 6),
                       ece_before=round(ece0, 6),
                       ece_after=round(expected_calibration_error(after, y), 6),
                       reason=reason, conformal_scores=scores, conformal_n=m)
