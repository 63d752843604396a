"""One worker thread owns the model and runs every waiting request's series as one batch:
concurrent requests share a forward pass, and the model is never used from two threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading

import numpy as np
import torch

from ..inference import predict_logits
from .parsing import RequestError

log = logging.getLogger("tsformer.serve")


class Batcher:
    """One thread owns the model and runs every waiting request's series as one batch."""

    def __init__(self, model: torch.nn.Module, *, max_batch: int, batch_size: int,
                 max_pending: int, amp: str = "auto") -> None:
        self._model, self._amp = model, amp
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
        with torch.inference_mode():
            return torch.softmax(predict_logits(self._model, X, batch_size=self._batch_size,
                                                amp=self._amp), 1).numpy()

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
