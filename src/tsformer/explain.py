"""Which time steps and channels a prediction rests on: attributions through Captum, and a
deletion test that measures whether they are faithful.

Every model is a black box ``nn.Module`` mapping float32 ``(n, C, T)`` to logits (a network,
a :class:`~tsformer.models.Ensemble`, a :class:`~tsformer.models.ZNormalized` wrapper...).
What is explained is the *probability* of the target class (the softmax of the logits), so
both methods and the deletion test speak the same unit: an attribution of 0.2 is 0.2 of
probability.

Methods:

* ``"integrated_gradients"`` (Captum ``IntegratedGradients``): gradients along the straight
  path from a baseline to the series.  The baseline is each channel's mean, a flat line (zeros
  for z-normalised data): it has the series' level and no shape.  A model that normalises each
  series (``patchformer``, ``normalize="zscore"``) sees every point of the path from a flat
  line to the series as the same series, so the path has nothing to integrate; for such a
  model (found by a probe: its output does not change when the deviations from the mean are
  halved) the baseline is Gaussian noise with each channel's mean and standard deviation
  instead (two draws, averaged), which keeps level and scale and removes only the shape.
  Rocket stems threshold softly for the duration
  (:func:`tsformer.models.rocket.relaxed_thresholds`), so gradients reach the input.
* ``"occlusion"`` (Captum ``Occlusion``): each window of about a sixteenth of the series, in
  one channel at a time, is replaced by that channel's mean; the attribution of a step is the
  mean drop in probability over the windows covering it.  Forward passes only, so it explains
  the model exactly as it predicts (hard rocket thresholds included).

The deletion test (:func:`deletion_test`) replaces the top-attributed time steps (10% and
20% of them by default) by linear interpolation between their kept neighbours and reports the
mean drop in the explained class's probability, against deleting as many random steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .errors import ConfigError, DataError, TsformerError

__all__ = ["METHODS", "Deletion", "Explanation", "delete_steps", "deletion_test", "explain",
           "ignores_scale", "occlusion_windows", "require_captum", "target_code"]

#: Method names, as ``explain(method=...)``, ``tsformer explain --method`` and the server take.
METHODS = ("integrated_gradients", "occlusion")
#: Integrated gradients' baselines ("auto": the mean unless the model ignores scale).
BASELINES = ("auto", "mean", "noise")
#: Noise baselines averaged per series by integrated gradients.
BASELINE_DRAWS = 2
#: A model whose probabilities move less than this when each series' deviations from its mean
#: are halved ignores scale (normalises each series): flat baselines are degenerate for it.
SCALE_FREE_TOLERANCE = 1e-3
#: Fractions of the time steps the deletion test deletes.
DELETION_FRACTIONS = (0.1, 0.2)
#: Random deletions per fraction and series, the reference the top-attributed steps beat.
RANDOM_DRAWS = 5

_MISSING = ("explanations need the optional 'explain' extra (Captum): install "
            "tsformer[explain], e.g. pip install 'tsformer[explain]'")


@dataclass(frozen=True)
class Deletion:
    """One row of the deletion test: deleting ``steps`` time steps (``fraction`` of the
    series) lowers the explained class's probability by ``top_drop`` on average when they are
    the top-attributed ones, by ``random_drop`` (``random_sd`` across draws) when random."""

    fraction: float
    steps: int
    top_drop: float
    random_drop: float
    random_sd: float

    def to_dict(self) -> dict[str, float | int]:
        return {"fraction": self.fraction, "steps": self.steps, "top_drop": self.top_drop,
                "random_drop": self.random_drop, "random_sd": self.random_sd}

    def __str__(self) -> str:
        return (f"deleting the top {100 * self.fraction:g}% of steps ({self.steps}) lowers the "
                f"probability by {self.top_drop:.3f}, random steps by {self.random_drop:.3f} "
                f"(sd {self.random_sd:.3f})")


@dataclass(frozen=True)
class Explanation:
    """Attributions ``(n, C, T)`` (in probability of the ``target`` class), the explained
    and predicted class codes, their probabilities, and the deletion test."""

    method: str
    attributions: np.ndarray
    target: np.ndarray
    target_probability: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    deletion: list[Deletion] = field(default_factory=list)
    classes: tuple[Any, ...] | None = None
    #: Integrated gradients' baseline, "mean" or "noise" (None for occlusion).
    baseline: str | None = None

    def labels(self, codes: np.ndarray) -> list[Any]:
        """Class codes as labels (the codes themselves when no classes are known)."""
        return [self.classes[int(c)] if self.classes is not None else int(c) for c in codes]

    def deletion_summary(self) -> str:
        """The deletion test in one line per fraction, for a log or a terminal."""
        return "\n".join(f"deletion test: {d}" for d in self.deletion)


def require_captum() -> Any:
    try:
        import captum.attr
    except ImportError as e:
        raise TsformerError(f"{_MISSING} ({e})") from None
    return captum.attr


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _probabilities(model: nn.Module) -> Callable[[Tensor], Tensor]:
    return lambda x: torch.softmax(model(x).float(), -1)


@torch.no_grad()
def _class_proba(model: nn.Module, X: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` as float64, or one DataError for non-finite
    outputs (a series beyond the model's range)."""
    from .inference import predict_logits, refuse_non_finite

    logits = refuse_non_finite(predict_logits(model, X, batch_size=batch_size, amp="off"), X)
    return torch.softmax(logits.double(), 1).numpy()


def _check_options(method: str, n_steps: int, window: int | None, fractions: Sequence[float],
                   n_timepoints: int) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; use one of "
                          f"{', '.join(METHODS)}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise ConfigError(f"n_steps must be a whole number of at least 2, not {n_steps!r}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                               or not 1 <= window <= n_timepoints):
        raise ConfigError(f"window must be a whole number of time steps in 1-{n_timepoints}, "
                          f"not {window!r}")
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
            raise ConfigError(f"deletion fractions must be numbers between 0 and 1, not {f!r}")


def _targets(target: Any, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    if target is None:
        return predicted.copy()
    t = np.asarray(target)
    if t.dtype.kind not in "iu" or t.ndim > 1 or (t.ndim == 1 and len(t) != len(predicted)):
        raise ConfigError(f"target must be None (the predicted class), a class code or one "
                          f"code per series, not {target!r}")
    if ((t < 0) | (t >= n_classes)).any():
        raise ConfigError(f"target class code {int(t.flat[0]) if t.size else t!r} is out of "
                          f"range: the model has {n_classes} classes (codes 0-{n_classes - 1})")
    return np.broadcast_to(t, predicted.shape).astype(np.int64)


def target_code(target: Any, classes: Sequence[Any]) -> int:
    """A class label as the model's class code (labels match by their text, as elsewhere), or
    one ConfigError naming the classes."""
    index = {str(c): i for i, c in enumerate(classes)}
    if str(target) not in index:
        raise ConfigError(f"target {target!r} is not one of the model's classes "
                          f"({', '.join(str(c) for c in classes)})")
    return index[str(target)]


def _noise_baselines(x: Tensor, draws: int, gen: torch.Generator) -> Tensor:
    """``draws`` Gaussian series per input with its channels' mean and standard deviation."""
    mean = x.mean(-1, keepdim=True)
    std = x.std(-1, keepdim=True, unbiased=False)
    noise = torch.randn((draws, *x.shape), generator=gen, dtype=x.dtype).to(x.device)
    return (mean + std * noise).flatten(0, 1)


def ignores_scale(model: nn.Module, x: Tensor) -> bool:
    """Whether ``model``'s probabilities for ``x`` stay put when each series' deviations from
    its channels' means are halved: a model that normalises each series.  Probed as integrated
    gradients sees it, rocket stems thresholding softly (a hard threshold flips on rounding
    differences)."""
    from .models.rocket import relaxed_thresholds

    mean = x.mean(-1, keepdim=True)
    with torch.no_grad(), relaxed_thresholds(model):
        p = _probabilities(model)(torch.cat([x, mean + 0.5 * (x - mean)]))
    return bool((p[:len(x)] - p[len(x):]).abs().max() < SCALE_FREE_TOLERANCE)


def _integrated_gradients(model: nn.Module, x: Tensor, target: Tensor, *, baseline: str,
                          n_steps: int, gen: torch.Generator, batch_size: int) -> Tensor:
    from .models.rocket import relaxed_thresholds

    attr = require_captum()
    draws = BASELINE_DRAWS if baseline == "noise" else 1
    base = (_noise_baselines(x, draws, gen) if baseline == "noise"
            else x.mean(-1, keepdim=True).expand_as(x))
    rows = draws * len(x)
    with relaxed_thresholds(model):
        ig = attr.IntegratedGradients(_probabilities(model))
        a = ig.attribute(x.repeat(draws, 1, 1), baselines=base, target=target.repeat(draws),
                         n_steps=n_steps, internal_batch_size=rows * max(1, 4 * batch_size // rows))
    return a.view(draws, *x.shape).mean(0)


def occlusion_windows(n_timepoints: int, window: int | None = None) -> tuple[int, int]:
    """Occlusion ``(window, stride)``: about T/16 wide by default, stride half of it, the
    window widened by less than a stride so the windows tile the series exactly (Captum
    leaves steps past the last whole window unexplained)."""
    t = n_timepoints
    w = min(t, window or max(2, round(t / 16)))
    stride = max(1, w // 2)
    return t - stride * ((t - w) // stride), stride


def _occlusion(model: nn.Module, x: Tensor, target: Tensor, *, window: int | None,
               batch_size: int) -> Tensor:
    attr = require_captum()
    w, stride = occlusion_windows(x.shape[-1], window)
    occ = attr.Occlusion(_probabilities(model))
    base = x.mean(-1, keepdim=True).expand_as(x).contiguous()
    with torch.no_grad():
        return occ.attribute(x, sliding_window_shapes=(1, w), strides=(1, stride),
                             baselines=base, target=target,
                             perturbations_per_eval=max(1, 4 * batch_size // len(x)))


def explain(
    model: nn.Module, X: np.ndarray | Tensor, *,
    method: Literal["integrated_gradients", "occlusion"] = "integrated_gradients",
    target: int | Sequence[int] | np.ndarray | None = None,
    baseline: Literal["auto", "mean", "noise"] = "auto", n_steps: int = 16,
    window: int | None = None,
    deletion: Sequence[float] = DELETION_FRACTIONS, seed: int = 0, batch_size: int = 16,
    classes: Sequence[Any] | None = None,
) -> Explanation:
    """Attributions per series, channel and time step for ``model``'s predictions on ``X``.

    ``X``: float32 ``(n, C, T)``.  ``target``: None explains each series' predicted class, a
    class code (an index into the model's outputs) or one code per series explains that class.
    ``baseline`` (integrated gradients): ``"mean"``, ``"noise"`` or ``"auto"`` (the mean,
    unless the model ignores scale; see the module docstring).  ``n_steps``: integration steps
    per baseline (integrated gradients); ``window``:
    occlusion window in time steps (default about T/16, stride half of it).  ``deletion``:
    the fractions of time steps the deletion test deletes (empty: no test).  ``seed`` fixes the
    baselines and random deletions; ``batch_size`` bounds the series explained at once.
    ``classes`` (labels in code order) are carried into the result for its ``labels()``.
    """
    X = np.asarray(X.detach().cpu() if isinstance(X, Tensor) else X, dtype=np.float32)
    if X.ndim != 3 or 0 in X.shape:
        raise DataError(f"X must be a non-empty array (n_series, n_channels, n_timepoints), "
                        f"not shape {X.shape}")
    _check_options(method, n_steps, window, tuple(deletion), X.shape[-1])
    if baseline not in BASELINES:
        raise ConfigError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive whole number, not {batch_size!r}")
    require_captum()
    was_training = model.training
    model.eval()
    try:
        proba = _class_proba(model, X, batch_size)
        predicted = proba.argmax(1)
        tgt = _targets(target, predicted, proba.shape[1])
        dev = _device(model)
        gen = torch.Generator().manual_seed(seed)
        out = np.empty_like(X)
        if method != "integrated_gradients":
            baseline = None
        elif baseline == "auto":
            probe = torch.from_numpy(X[:batch_size]).to(dev)
            baseline = "noise" if ignores_scale(model, probe) else "mean"
        for i in range(0, len(X), batch_size):
            x = torch.from_numpy(X[i:i + batch_size]).to(dev)
            t = torch.from_numpy(tgt[i:i + batch_size]).to(dev)
            if method == "integrated_gradients":
                a = _integrated_gradients(model, x, t, baseline=baseline, n_steps=n_steps,
                                          gen=gen, batch_size=batch_size)
            else:
                a = _occlusion(model, x, t, window=window, batch_size=batch_size)
            out[i:i + batch_size] = a.detach().float().cpu().numpy()
        rows = deletion_test(model, X, out, tgt, fractions=deletion, seed=seed,
                             batch_size=batch_size) if deletion else []
    finally:
        model.train(was_training)
    idx = np.arange(len(X))
    return Explanation(method=method, attributions=out, target=tgt,
                       target_probability=proba[idx, tgt], predicted=predicted,
                       probability=proba[idx, predicted], deletion=rows,
                       classes=tuple(classes) if classes is not None else None,
                       baseline=baseline)


def delete_steps(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``X`` ``(n, C, T)`` with the time steps where ``mask`` ``(n, T)`` is True replaced, in
    every channel, by linear interpolation between the nearest kept steps (constant beyond
    the first and last): no new level, no step edge for the model to react to."""
    out = X.copy()
    steps = np.arange(X.shape[-1])
    for i in range(len(X)):
        gone = mask[i]
        if not gone.any() or gone.all():
            continue
        for c in range(X.shape[1]):
            out[i, c, gone] = np.interp(steps[gone], steps[~gone], X[i, c, ~gone])
    return out


def deletion_test(
    model: nn.Module, X: np.ndarray, attributions: np.ndarray, target: np.ndarray, *,
    fractions: Sequence[float] = DELETION_FRACTIONS, draws: int = RANDOM_DRAWS, seed: int = 0,
    batch_size: int = 64,
) -> list[Deletion]:
    """Faithfulness, measured: for each fraction, the mean drop in the ``target`` class's
    probability when the time steps with the largest attribution (summed over channels) are
    deleted (:func:`delete_steps`), and when as many random steps are, over ``draws`` draws.

    Faithful attributions make the first drop clearly larger than the second.
    """
    X = np.asarray(X, dtype=np.float32)
    n, _, t = X.shape
    if attributions.shape != X.shape:
        raise DataError(f"attributions of shape {attributions.shape} do not match X's "
                        f"{X.shape}")
    idx = np.arange(n)
    tgt = np.asarray(target, dtype=np.int64)

    def proba(Z: np.ndarray) -> np.ndarray:
        return _class_proba(model, Z, batch_size)[idx, tgt]

    base = proba(X)
    order = np.argsort(-attributions.sum(1), axis=1, kind="stable")
    rng = np.random.default_rng(seed)
    rows = []
    for f in fractions:
        k = min(t - 1, max(1, round(f * t)))
        mask = np.zeros((n, t), dtype=bool)
        mask[idx[:, None], order[:, :k]] = True
        top = float(np.mean(base - proba(delete_steps(X, mask))))
        rand = []
        for _ in range(draws):
            mask = np.zeros((n, t), dtype=bool)
            mask[idx[:, None], rng.random((n, t)).argsort(1)[:, :k]] = True
            rand.append(float(np.mean(base - proba(delete_steps(X, mask)))))
        rows.append(Deletion(fraction=float(f), steps=k, top_drop=top,
                             random_drop=float(np.mean(rand)), random_sd=float(np.std(rand))))
    return rows
