"""One worker thread owns the model and runs every waiting request's series as one batch:
concurrent requests share a forward pass, and the model is never used from two threads.

The model is a PyTorch module or any predictor with ``predict_proba(X, batch_size,
finite_only=False)`` (an exported graph in onnxruntime, :class:`tsformer.runtime.OnnxModel`);
torch is imported only for a module."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .parsing import RequestError

log = logging.getLogger("tsformer.serve")


class Predictor(Protocol):
    """What the server predicts with: class probabilities ``(n, n_classes)`` for ``X``, NaN/inf
    left in (the server names the series that overflow)."""

    def predict_proba(self, X: np.ndarray, batch_size: int, *, finite_only: bool
                      ) -> np.ndarray: ...


class TorchPredictor:
    """A PyTorch module as a :class:`Predictor`, in the precision it trained in."""

    def __init__(self, model: Any, amp: str = "auto") -> None:
        self.model, self.amp = model, amp

    def predict_proba(self, X: np.ndarray, batch_size: int, *, finite_only: bool = False
                      ) -> np.ndarray:
        import torch

        from ..inference import predict_logits

        with torch.inference_mode():
            return torch.softmax(predict_logits(self.model, X, batch_size=batch_size,
                                                amp=self.amp), 1).numpy()


class Batcher:
    """One thread owns the model and runs every waiting request's series as one batch."""

    def __init__(self, model: Any, *, max_batch: int, batch_size: int,
                 max_pending: int, amp: str = "auto") -> None:
        self._model, self._amp = model, amp
        self._predictor: Predictor = (
            model if callable(getattr(model, "predict_proba", None)) else
            TorchPredictor(model, amp))
        self._max_batch, self._batch_size, self._max_pending = max_batch, batch_size, max_pending
        self._queue: queue.SimpleQueue[tuple[np.ndarray, concurrent.futures.Future] | None] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, X: np.ndarray) -> concurrent.futures.Future:
        """Queue ``X``; the future's result is its class probabilities ``(n, n_classes)``."""
        with self._lock:
            if self._closed:
                raise RequestError(503, "the server is shutting down")
            if self._pending and self._pending + len(X) > self._max_pending:
                raise RequestError(503, f"the server is busy ({self._pending} series waiting); "
                                        "retry shortly")
            self._pending += len(X)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tsformer-inference",
                                                daemon=True)
                self._thread.start()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((X, fut))
        return fut

    async def predict(self, X: np.ndarray) -> np.ndarray:
        return await asyncio.wrap_future(self.submit(X))

    def predict_now(self, X: np.ndarray) -> np.ndarray:
        """Synchronous inference, for warm-up before the worker starts."""
        return self._predictor.predict_proba(X, self._batch_size, finite_only=False)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            jobs, n, stop = [item], len(item[0]), False
            while n < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
                n += len(nxt[0])
            live = [(X, f) for X, f in jobs if f.set_running_or_notify_cancel()]
            try:
                if live:
                    X = live[0][0] if len(live) == 1 else np.concatenate([x for x, _ in live])
                    proba = self.predict_now(X)
                    start = 0
                    for x, f in live:
                        f.set_result(proba[start:start + len(x)])
                        start += len(x)
            except Exception as e:  # handed to the waiting requests
                log.exception("inference failed")
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
            finally:
                with self._lock:
                    self._pending -= n
            if stop:
                return

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        self._queue.put(None)
        if thread is not None:
            thread.join(timeout)


RUNTIMES = ("torch", "onnx")


def load_predictor(target: str | os.PathLike, runtime: str = "torch"
                   ) -> tuple[Any, Any, Path, int | None]:
    """What a server serves: the model (a PyTorch module, or with ``runtime="onnx"`` an
    exported graph in onnxruntime, from a .onnx file or a directory holding model.onnx), its
    :class:`~tsformer.config.RunConfig` (an export carries it in its metadata), the directory
    of its companion files (sample.json, metrics.json, README.md) and its parameter count."""
    from ..errors import ConfigError, ModelDirError

    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be 'torch' or 'onnx', not {runtime!r}")
    target = Path(target)
    if runtime == "torch":
        from ..model_dir import load_model_dir
        from ..models import count_parameters

        model, cfg = load_model_dir(target)
        return model, cfg, target, count_parameters(model)
    from ..config import RunConfig
    from ..runtime import load_onnx

    model = load_onnx(target)
    try:
        cfg = RunConfig.from_dict(model.info.config)
    except ConfigError as e:
        raise ModelDirError(f"{model.path}: its tsformer.config metadata is not a config this "
                            f"tsformer reads ({e}); export the model again") from None
    if (list(cfg.classes), cfg.n_channels, cfg.n_timepoints) != (
            model.classes, model.n_channels, model.n_timepoints):
        raise ModelDirError(f"{model.path}: its metadata disagrees with itself (classes or "
                            "input shape); export the model again")
    n = model.info.config.get("n_parameters")
    return model, cfg, model.path.parent, n if isinstance(n, int) else None
