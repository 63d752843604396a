"""The prediction server: one model directory, a JSON/CSV API and a demo page, on FastAPI.

Design, and why:

* Requests are checked before they reach the model, cheapest check first: body size while the
  bytes arrive (Content-Length or counted chunks, so a chunked upload cannot slip past), then
  JSON/CSV syntax, series count, shape, and values.  Every refusal is a 4xx whose ``detail``
  says what is wrong and ``field`` says where (``instances[3][0][17]``, ``line 4, column 2``).
* One worker thread owns the model.  Requests queue their series and the worker runs whatever
  is waiting as one batch: concurrent requests share a forward pass (throughput), the model is
  never used from two threads (safety), and the event loop never runs PyTorch (latency of
  ``/healthz`` and the page stays low while the model works).  Parsing runs in the threadpool.
* Every asset of the demo page is served from ``static/`` and a Content-Security-Policy of
  ``'self'`` enforces it: the page works on machines without internet.  For the same reason
  the Swagger/ReDoc pages (CDN assets) are off; the schema is at ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..inference import predict_logits
from ..model_dir import CARD_NAME, SAMPLE_NAME, load_model_dir
from ..models import count_parameters
from . import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES

log = logging.getLogger("tsformer.serve")

STATIC_DIR = Path(__file__).parent / "static"
#: The page may load scripts, styles and data from this server only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_SAMPLE_MAX_BYTES = 8 * 1024 * 1024
_CARD_MAX_CHARS = 64 * 1024


class RequestError(Exception):
    """A request the server refuses: HTTP status, a message saying what to fix, and where."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field = status, detail, field


# --------------------------------------------------------------------------- body limit


async def _send_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail, "field": None}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` before the app (or any parser) sees a byte of them.

    A declared Content-Length over the limit is refused at once; otherwise the body is read
    chunk by chunk and counted, which also covers chunked transfer encoding, then replayed to
    the app.  Buffering is bounded by the limit itself.  Also adds the security headers.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        too_big = (f"request body is over the limit of {limit} bytes; send fewer series per "
                   "request")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_error(send, 400, "the Content-Length header is not a number")
                return
            if size > limit:
                await _send_error(send, 413, f"request body is {size} bytes, over the limit of "
                                             f"{limit} bytes; send fewer series per request")
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await _send_error(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()),
                            (b"x-content-type-options", b"nosniff")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, replay, send_with_headers)


# --------------------------------------------------------------------------- validation

_NUMBER_TYPES = frozenset((int, float))


def _describe(v: Any) -> str:
    """A JSON value's type in JSON words, for error messages."""
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if v is None:
        return "null"
    if isinstance(v, str):
        shown = v if len(v) <= 20 else v[:20] + "..."
        return f"a string ({json.dumps(shown)})"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    return "a number"


def _check_numbers(row: list[Any], path: str) -> None:
    if _NUMBER_TYPES.issuperset(map(type, row)):
        return
    for j, v in enumerate(row):
        if type(v) not in _NUMBER_TYPES:
            hint = "; missing values are not supported" if v is None else ""
            raise RequestError(422, f"{path}[{j}] is {_describe(v)}, not a number{hint}",
                               f"{path}[{j}]")


def _length_error(path: str, got: int, n_t: int) -> RequestError:
    return RequestError(422, f"{path} has {got} time points but the model expects {n_t}; "
                             "series are never resampled: crop, pad or resample them first", path)


def _check_instance(x: Any, path: str, n_ch: int, n_t: int) -> tuple[list[list[Any]], bool]:
    """A series as channels x points, and whether it came as a flat (univariate) list."""
    shape = (f"a list of {n_t} numbers" if n_ch == 1 else
             f"a list of {n_ch} channels, each a list of {n_t} numbers")
    if not isinstance(x, list):
        raise RequestError(422, f"{path} is {_describe(x)}; each series must be {shape}", path)
    if not x:
        raise RequestError(422, f"{path} is empty; each series must be {shape}", path)
    nested = [type(v) is list for v in x]
    if all(nested):
        if len(x) != n_ch:
            raise RequestError(422, f"{path} has {len(x)} channels but the model expects "
                                    f"{n_ch}; each series must be {shape}", path)
        for c, channel in enumerate(x):
            cpath = f"{path}[{c}]"
            if not channel:
                raise RequestError(422, f"{cpath} is empty; each channel must be a list of "
                                        f"{n_t} numbers", cpath)
            _check_numbers(channel, cpath)
            if len(channel) != n_t:
                raise _length_error(cpath, len(channel), n_t)
        return x, False
    if any(nested):
        raise RequestError(422, f"{path} mixes numbers and lists; each series must be {shape}",
                           path)
    _check_numbers(x, path)
    if n_ch != 1:
        raise RequestError(422, f"{path} is a flat list of numbers (one channel) but the model "
                                f"expects {n_ch} channels; send {shape}", path)
    if len(x) != n_t:
        raise _length_error(path, len(x), n_t)
    return [x], True


def _to_float32(values: list[Any], locate: Callable[[int, int, int], tuple[str, str]]
                ) -> np.ndarray:
    """float32 ``(n, channels, points)``, refusing NaN, infinities and float32 overflow."""
    try:
        arr = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer literal beyond float64: report it like an infinity
        arr = np.array([[[float(v) if abs(v) < 1e308 else math.inf for v in ch] for ch in s]
                        for s in values], dtype=np.float64)
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    for data, why in ((arr, "is NaN or infinite (or beyond ±1.8e308)"),
                      (out, "is beyond the float32 range (±3.4e38); rescale the series")):
        bad = ~np.isfinite(data)
        if bad.any():
            i, c, t = (int(k) for k in np.argwhere(bad)[0])
            where, field = locate(i, c, t)
            raise RequestError(422, f"{where} {why}; only finite numbers are accepted", field)
    return out


def parse_instances(doc: Any, n_ch: int, n_t: int, max_instances: int,
                    name: str = "instances") -> np.ndarray:
    """Validate decoded JSON series; float32 ``(n, n_ch, n_t)`` or a precise RequestError."""
    if not isinstance(doc, list):
        raise RequestError(422, f"{name} is {_describe(doc)}; it must be a list of series", name)
    if not doc:
        raise RequestError(422, f"{name} is empty; send at least one series", name)
    if len(doc) > max_instances:
        raise RequestError(413, f"{name} has {len(doc)} series, over the limit of "
                                f"{max_instances} per request; split it into smaller requests",
                           name)
    series, flat = [], []
    for i, x in enumerate(doc):
        s, f = _check_instance(x, f"{name}[{i}]", n_ch, n_t)
        series.append(s)
        flat.append(f)

    def locate(i: int, c: int, t: int) -> tuple[str, str]:
        field = f"{name}[{i}][{t}]" if flat[i] else f"{name}[{i}][{c}][{t}]"
        return field, field

    return _to_float32(series, locate)


def parse_json_body(body: bytes, n_ch: int, n_t: int, max_instances: int) -> np.ndarray:
    """``{"instances": [...]}`` bytes to validated series."""
    if not body.strip():
        raise RequestError(400, 'the request body is empty; send {"instances": [series, ...]}')
    try:
        doc = json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "the request body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the request body is not valid JSON ({e.msg} at line "
                                f"{e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise RequestError(400, "the request body nests JSON too deeply") from None
    if not isinstance(doc, dict):
        raise RequestError(422, f'the request body is {_describe(doc)}; send a JSON object '
                                '{"instances": [series, ...]}')
    unknown = sorted(set(doc) - {"instances"})
    if unknown:
        raise RequestError(422, f"unknown field {unknown[0]!r} in the request body; the only "
                                "field is 'instances'", unknown[0])
    if "instances" not in doc:
        raise RequestError(422, "the request body has no 'instances' field; send "
                                '{"instances": [series, ...]}', "instances")
    return parse_instances(doc["instances"], n_ch, n_t, max_instances)


def _float_cell(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def parse_csv_text(text: str, n_ch: int, n_t: int, max_instances: int) -> np.ndarray:
    """CSV series, one per line; a first line of names is a header; a label column is skipped.

    A line holds ``n_t`` values (``n_ch * n_t`` for several channels, channel after channel),
    or one more when its first column is a label, as in a UCR test file.  The delimiter is
    the first of comma, tab, semicolon found in the first line, else whitespace.
    """
    lines = [(k, line) for k, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise RequestError(422, "the CSV holds no series; send one series per line")
    first = lines[0][1]
    delim = next((d for d in (",", "\t", ";") if d in first), None)

    def cells_of(line: str) -> list[str]:
        return [c.strip() for c in (line.split(delim) if delim is not None else line.split())]

    if all(_float_cell(c) is None for c in cells_of(first) if c):
        lines = lines[1:]  # a header line
        if not lines:
            raise RequestError(422, "the CSV has a header line but no series")
    if len(lines) > max_instances:
        raise RequestError(413, f"the CSV has {len(lines)} series, over the limit of "
                                f"{max_instances} per request; split it into smaller requests")
    width = n_ch * n_t
    rows: list[list[list[float]]] = []
    for lineno, line in lines:
        cells = cells_of(line)
        if len(cells) not in (width, width + 1):
            layout = (f"{n_t} values" if n_ch == 1 else
                      f"{width} values ({n_ch} channels x {n_t} points, channel after channel)")
            raise RequestError(422, f"line {lineno} has {len(cells)} values but the model "
                                    f"expects {layout}, optionally after a label column; series "
                                    "are never resampled", f"line {lineno}")
        skip = len(cells) - width
        values: list[float] = []
        for j, cell in enumerate(cells[skip:], skip + 1):
            v = _float_cell(cell)
            if v is None:
                where = f"line {lineno}, column {j}"
                what = "is empty; missing values are not supported" if not cell else (
                    f"is {cell[:20]!r}, not a number")
                raise RequestError(422, f"{where} {what}", where)
            values.append(v)
        rows.append([values[c * n_t:(c + 1) * n_t] for c in range(n_ch)])
    offsets = [len(cells_of(line)) - width for _, line in lines]

    def locate(i: int, c: int, t: int) -> tuple[str, str]:
        where = f"line {lines[i][0]}, column {offsets[i] + c * n_t + t + 1}"
        return where, where

    return _to_float32(rows, locate)


# --------------------------------------------------------------------------- batching


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


# --------------------------------------------------------------------------- model info


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf floats (possible in metrics) become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _read_json(path: Path, max_bytes: int | None = None) -> Any:
    """A JSON file's content, or None (with a warning) when missing, too big or unreadable."""
    if not path.is_file():
        return None
    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            log.warning("%s is over %d bytes; ignored", path, max_bytes)
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        log.warning("%s is unreadable (%s); ignored", path, e)
        return None


def _read_card(path: Path) -> dict[str, str] | None:
    try:
        text = path.read_text(encoding="utf-8")[:_CARD_MAX_CHARS]
    except (OSError, UnicodeDecodeError):
        return None
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            text = text[end + 4:].lstrip("\n")
    title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), "")
    return {"title": title.replace("`", ""), "markdown": text}


def _load_sample(path: Path, n_ch: int, n_t: int) -> dict[str, Any] | None:
    doc = _read_json(path, _SAMPLE_MAX_BYTES)
    if doc is None:
        return None
    try:
        if not isinstance(doc, dict) or not isinstance(doc.get("labels"), list):
            raise RequestError(422, "it needs 'series' and 'labels' lists")
        X = parse_instances(doc.get("series"), n_ch, n_t, 10_000, name="series")
        if len(doc["labels"]) != len(X):
            raise RequestError(422, f"it has {len(X)} series but {len(doc['labels'])} labels")
    except RequestError as e:
        log.warning("%s does not fit the model (%s); the demo page will have no examples",
                    path, e.detail)
        return None
    return {"split": str(doc.get("split", "test")), "labels": doc["labels"],
            "series": X.tolist()}


# --------------------------------------------------------------------------- app


class Prediction(BaseModel):
    label: int | float | str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    classes: list[int | float | str]


class ErrorResponse(BaseModel):
    detail: str
    field: str | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": why} for code, why in (
        (400, "malformed body (not JSON, bad CSV upload)"),
        (413, "body over the byte limit, or too many series"),
        (415, "unsupported Content-Type"),
        (422, "series of the wrong shape, or with NaN/inf/non-number values"),
        (503, "busy or shutting down; retry"),
    )
}


def _predict_openapi(n_ch: int, n_t: int, max_instances: int) -> dict[str, Any]:
    numbers = {"type": "array", "items": {"type": "number"}, "minItems": n_t, "maxItems": n_t}
    series = {"oneOf": [numbers, {"type": "array", "items": numbers,
                                  "minItems": n_ch, "maxItems": n_ch}]}
    if n_ch != 1:
        series = series["oneOf"][1]
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {
            "type": "object", "required": ["instances"], "additionalProperties": False,
            "properties": {"instances": {"type": "array", "items": series, "minItems": 1,
                                         "maxItems": max_instances}}}},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "CSV, one series per line"}}}},
        "text/csv": {"schema": {"type": "string", "description": "one series per line"}},
    }}}


def create_app(
    model_dir: str | os.PathLike, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_instances: int = DEFAULT_MAX_INSTANCES, batch_size: int = 32,
    max_pending: int | None = None,
) -> FastAPI:
    """An app serving the model in ``model_dir``, loaded once, here.

    ``max_body_bytes`` and ``max_instances`` bound each request; ``batch_size`` bounds the
    memory of one forward pass; ``max_pending`` (default 8 x ``max_instances``) bounds the
    series waiting for the model before requests are answered 503.
    """
    model_dir = Path(model_dir)
    model, cfg = load_model_dir(model_dir)
    n_ch, n_t = cfg.n_channels, cfg.n_timepoints
    classes: list[Any] = list(cfg.classes)
    keys = [str(c) for c in classes]
    batcher = Batcher(model, max_batch=max(max_instances, batch_size), batch_size=batch_size,
                      max_pending=max_pending or 8 * max_instances, amp=cfg.train.amp)
    batcher.predict_now(np.zeros((1, n_ch, n_t), np.float32))  # fail now, not on request 1
    sample = _load_sample(model_dir / SAMPLE_NAME, n_ch, n_t)
    metrics = _read_json(model_dir / "metrics.json", 1024 * 1024)
    info = _finite({
        "name": model_dir.resolve().name,
        "preset": cfg.preset, "arch": cfg.arch, "members": cfg.members,
        "server_version": __version__,
        "input": {"n_channels": n_ch, "n_timepoints": n_t,
                  "layout": "(n_channels, n_timepoints) per series"},
        "classes": classes,
        "data": cfg.data,
        "normalization": ("per series, inside the model" if
                          cfg.model.to_dict().get("instance_norm") else "none"),
        "n_parameters": count_parameters(model),
        "metrics": metrics if isinstance(metrics, dict) else None,
        "card": _read_card(model_dir / CARD_NAME),
        "sample": {"available": sample is not None,
                   "n": len(sample["labels"]) if sample else 0,
                   "split": sample["split"] if sample else None},
        "limits": {"max_body_bytes": max_body_bytes, "max_instances": max_instances},
    })

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(batcher.close)

    app = FastAPI(
        title="tsformer prediction server",
        version=__version__,
        description=f"Serves the tsformer model in `{model_dir.name}` ({n_ch} channel(s) x "
                    f"{n_t} points, classes {', '.join(keys)}).",
        docs_url=None, redoc_url=None, lifespan=lifespan,
    )
    app.state.batcher, app.state.info, app.state.config = batcher, info, cfg
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(RequestError)
    async def _refuse(_request: Request, exc: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse({"detail": exc.detail, "field": exc.field}, exc.status,
                            headers=headers)

    async def _read_series(request: Request) -> np.ndarray:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json" or ctype.endswith("+json"):
            body = await request.body()
            return await run_in_threadpool(parse_json_body, body, n_ch, n_t, max_instances)
        if ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=8)
            try:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise RequestError(422, "the upload has no file field named 'file'", "file")
                data = await upload.read()
            finally:
                await form.close()
            return await run_in_threadpool(_parse_csv_bytes, data)
        if ctype in ("text/csv", "text/plain", "text/tab-separated-values"):
            return await run_in_threadpool(_parse_csv_bytes, await request.body())
        raise RequestError(415, f"unsupported Content-Type {ctype or '(none)'!r}; send "
                                'application/json {"instances": [...]}, text/csv, or a '
                                "multipart/form-data upload with a 'file' field")

    def _parse_csv_bytes(data: bytes) -> np.ndarray:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RequestError(400, "the CSV is not UTF-8 text") from None
        return parse_csv_text(text, n_ch, n_t, max_instances)

    @app.post("/v1/predict", response_model=None, openapi_extra=_predict_openapi(
        n_ch, n_t, max_instances), responses={200: {"model": PredictResponse}, **_ERRORS},
        summary="Predict the class of each series")
    async def predict(request: Request) -> JSONResponse:
        """Labels (in the training label space) and class probabilities, one per series."""
        X = await _read_series(request)
        proba = await batcher.predict(X)
        rows = proba.tolist()
        best = proba.argmax(1).tolist()
        return JSONResponse({
            "predictions": [{"label": classes[b], "probabilities": dict(zip(keys, row,
                                                                            strict=True))}
                            for b, row in zip(best, rows, strict=True)],
            "classes": classes,
        })

    @app.get("/v1/model", summary="What the model is, expects and scored")
    async def model_info() -> dict[str, Any]:
        """Preset, input shape, classes, metrics and card of the served model, and the limits."""
        return info

    @app.get("/v1/sample", responses={404: {"model": ErrorResponse}},
             summary="Example series shipped with the model")
    async def model_sample() -> Any:
        """A few test-split series with their true labels, from the model's sample.json."""
        if sample is None:
            return JSONResponse({"detail": f"this model directory has no usable {SAMPLE_NAME}",
                                 "field": None}, 404)
        return sample

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """Answers while the process and its event loop are alive."""
        return {"status": "ok"}

    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    return app


__all__ = ["Batcher", "BodyLimitMiddleware", "RequestError", "create_app", "parse_csv_text",
           "parse_instances", "parse_json_body"]
