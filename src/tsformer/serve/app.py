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

import json
import logging
import math
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from .._version import __version__
from ..calibration import prediction_sets
from ..errors import ConfigError, ModelDirError
from ..model_dir import CARD_NAME, SAMPLE_NAME
from . import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES
from .batcher import Batcher, load_predictor
from .explain_route import add_explain_route
from .middleware import (
    DEFAULT_BODY_TIMEOUT,
    LOOPBACK_HOSTS,
    SECURITY_HEADERS,
    BodyLimitMiddleware,
    host_pattern,
)
from .parsing import RequestError, parse_csv_text, parse_instances, parse_json_body

log = logging.getLogger("tsformer.serve")

STATIC_DIR = Path(__file__).parent / "static"
_SAMPLE_MAX_BYTES = 8 * 1024 * 1024
_CARD_MAX_CHARS = 64 * 1024


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
    set: list[int | float | str] | None = None  # with ?alpha=: the conformal prediction set


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    classes: list[int | float | str]


class ErrorResponse(BaseModel):
    detail: str
    field: str | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": why} for code, why in (
        (400, "malformed body (not JSON, bad CSV upload), or a Host not allowed"),
        (408, "the body did not arrive in time"),
        (413, "body over the byte limit, or too many series"),
        (415, "unsupported Content-Type"),
        (422, "series of the wrong shape, with NaN/inf/non-number values, or with values "
              "that overflow the model"),
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
    }}, "parameters": [{
        "name": "alpha", "in": "query", "required": False,
        "schema": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "description": "also return each series' split-conformal prediction set, which holds "
                       "the true label at least 1 - alpha of the time (calibrated models)"}]}


def _check_limits(**limits: Any) -> None:
    """Positive whole numbers (sizes, counts) and positive finite seconds, or a ConfigError."""
    for name, value in limits.items():
        if value is None:
            continue
        if name.endswith("timeout"):
            ok = (isinstance(value, int | float) and not isinstance(value, bool)
                  and math.isfinite(value) and value > 0)
            what = "a positive number of seconds"
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            what = "a positive whole number"
        if not ok:
            raise ConfigError(f"{name} must be {what}, not {value!r}")


def create_app(
    model_dir: str | os.PathLike, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_instances: int = DEFAULT_MAX_INSTANCES, batch_size: int = 32,
    max_pending: int | None = None, body_timeout: float = DEFAULT_BODY_TIMEOUT,
    allow_hosts: Sequence[str] = (), runtime: str = "torch",
) -> FastAPI:
    """An app serving the model in ``model_dir``, loaded once, here.  ``runtime="onnx"``:
    the exported graph (a .onnx file, or ``model_dir/model.onnx``) in onnxruntime answers
    /v1/predict (see :func:`tsformer.serve.batcher.load_predictor`).

    ``max_body_bytes`` and ``max_instances`` bound each request; ``body_timeout`` is the
    seconds a request body may take to arrive (then 408); ``batch_size`` bounds the memory of
    one forward pass; ``max_pending`` (default 8 x ``max_instances``) bounds the series waiting
    for the model before requests are answered 503.  The Host header must be a loopback name
    (``localhost``, ``127.0.0.1``, ``[::1]``) or one of ``allow_hosts`` (``"*"``: any;
    ``"*.example.com"``: a domain and its subdomains), else 400: a guard against DNS
    rebinding.
    """
    _check_limits(max_body_bytes=max_body_bytes, max_instances=max_instances,
                  batch_size=batch_size, max_pending=max_pending, body_timeout=body_timeout)
    if isinstance(allow_hosts, str):
        allow_hosts = [allow_hosts]
    try:
        hosts = list(dict.fromkeys(host_pattern(h) for h in (*LOOPBACK_HOSTS, *allow_hosts)))
    except (ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"allow_hosts: {e}") from None
    model, cfg, model_dir, n_parameters = load_predictor(model_dir, runtime)
    n_ch, n_t = cfg.n_channels, cfg.n_timepoints
    classes: list[Any] = _finite(list(cfg.classes))
    keys = [str(c) for c in classes]
    batcher = Batcher(model, max_batch=max(max_instances, batch_size), batch_size=batch_size,
                      max_pending=max_pending or 8 * max_instances, amp=cfg.train.amp)
    warm = batcher.predict_now(np.zeros((1, n_ch, n_t), np.float32))  # fail now, not later
    if not np.isfinite(warm).all():
        raise ModelDirError(f"{model_dir}: the model outputs NaN/inf even for an all-zero "
                            "series, so its weights are broken (did training diverge?); "
                            "retrain it")
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
        "n_parameters": n_parameters, "runtime": runtime,
        "calibration": cfg.calibration.summary() if cfg.calibration is not None else None,
        "metrics": metrics if isinstance(metrics, dict) else None,
        "card": _read_card(model_dir / CARD_NAME),
        "sample": {"available": sample is not None,
                   "n": len(sample["labels"]) if sample else 0,
                   "split": sample["split"] if sample else None},
        "limits": {"max_body_bytes": max_body_bytes, "max_instances": max_instances,
                   "body_timeout_s": body_timeout},
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
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, body_timeout=body_timeout,
                       allow_hosts=hosts)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(RequestError)
    async def _refuse(_request: Request, exc: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse({"detail": exc.detail, "field": exc.field}, exc.status,
                            headers=headers)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own refusals (404, 405, a multipart the parser rejects) in our shape."""
        detail, field = str(exc.detail), None
        if exc.status_code == 400:  # only the form parser raises these here
            detail, field = f"the multipart upload is malformed: {detail}", "file"
        return JSONResponse({"detail": detail, "field": field}, exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        return JSONResponse({"detail": str(first.get("msg", "invalid request")),
                             "field": field}, 422)

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        """A bug, not the client's mistake: still one JSON line, and the log has the trace."""
        log.error("unexpected error answering a request", exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); this is a bug "
                                       "in the server, not in the request", "field": None}, 500,
                            headers={k.decode(): v.decode() for k, v in SECURITY_HEADERS})

    async def _read_series(request: Request) -> tuple[np.ndarray, list[str]]:
        """The request's series, and the field that names each one in a refusal."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json" or (ctype.startswith("application/")
                                           and ctype.endswith("+json")):
            body = await request.body()
            X = await run_in_threadpool(parse_json_body, body, n_ch, n_t, max_instances)
            return X, [f"instances[{i}]" for i in range(len(X))]
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
        if ctype in ("text/csv", "text/tab-separated-values"):
            return await run_in_threadpool(_parse_csv_bytes, await request.body())
        shown = ctype if len(ctype) <= 60 else ctype[:60] + "..."
        raise RequestError(415, f"unsupported Content-Type {shown or '(none)'!r}; send "
                                'application/json {"instances": [...]}, text/csv, or a '
                                "multipart/form-data upload with a 'file' field",
                           "Content-Type")

    def _parse_csv_bytes(data: bytes) -> tuple[np.ndarray, list[str]]:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RequestError(400, "the CSV is not UTF-8 text") from None
        lines: list[int] = []
        X = parse_csv_text(text, n_ch, n_t, max_instances, row_lines=lines)
        return X, [f"line {k}" for k in lines]

    @app.post("/v1/predict", response_model=None, openapi_extra=_predict_openapi(
        n_ch, n_t, max_instances), responses={200: {"model": PredictResponse}, **_ERRORS},
        summary="Predict the class of each series")
    async def predict(request: Request) -> JSONResponse:
        """Labels (in the training label space) and class probabilities, one per series;
        with ``?alpha=A`` also each series' split-conformal prediction set (``"set"``)."""
        threshold = _conformal_threshold(request.query_params.get("alpha"))
        X, fields = await _read_series(request)
        proba = await batcher.predict(X)
        bad = ~np.isfinite(proba).all(1)
        if bad.any():  # never a NaN in the answer: the series' scale is beyond the model
            i = int(np.argmax(bad))
            biggest = float(np.abs(X[i]).max())
            raise RequestError(422, f"{fields[i]}'s values overflow the model (largest "
                                    f"magnitude {biggest:.3g}): its outputs are not finite "
                                    "numbers; rescale the series (e.g. standardise it)",
                               fields[i])
        rows = proba.tolist()
        best = proba.argmax(1).tolist()
        predictions = [{"label": classes[b], "probabilities": dict(zip(keys, row, strict=True))}
                       for b, row in zip(best, rows, strict=True)]
        if threshold is not None:
            for p, inside in zip(predictions, prediction_sets(proba, threshold), strict=True):
                p["set"] = [c for c, i in zip(classes, inside, strict=True) if i]
        return JSONResponse({"predictions": predictions, "classes": classes})

    def _conformal_threshold(alpha: str | None) -> float | None:
        """The conformal threshold for the ``alpha`` query parameter, or one 422 line."""
        if alpha is None:
            return None
        if cfg.calibration is None:
            raise RequestError(422, "this model has no calibration data for conformal sets "
                                    "(calibrate it: tsformer calibrate RUN_DIR --data FILE)",
                               "alpha")
        try:
            return cfg.calibration.threshold(float(alpha))
        except ValueError:
            raise RequestError(422, "alpha must be a number in (0, 1), e.g. 0.1", "alpha"
                               ) from None
        except ConfigError as e:
            raise RequestError(422, str(e), "alpha") from None

    if runtime == "torch":  # attributions need the PyTorch model's gradients
        add_explain_route(app, model=model, classes=classes, read_series=_read_series,
                          predict=batcher.predict, errors=_ERRORS, request_body=_predict_openapi(
                              n_ch, n_t, max_instances)["requestBody"])

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
