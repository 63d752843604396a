"""``POST /v1/explain``: attributions of the served model's predictions
(:func:`tsformer.explain.explain`), with the same input formats, limits and refusals as
``/v1/predict``.

Explanations need gradients or many forward passes, so they do not go through the prediction
batcher: they run in the threadpool on a private copy of the model (the batcher's worker owns
the original), one request at a time, with at most :data:`MAX_WAITING` more waiting (then 503),
so explanations never slow predictions beyond the cores they share.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Awaitable, Callable
from importlib.util import find_spec
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from torch import nn

from ..errors import DataError, TsformerError
from ..explain import METHODS, Explanation, explain, require_captum, target_code
from .parsing import RequestError

#: Explanation requests that may wait while one runs; more are answered 503.
MAX_WAITING = 4


class SeriesExplanation(BaseModel):
    label: int | float | str
    probability: float
    target: int | float | str
    target_probability: float
    attributions: list[list[float]]


class DeletionRow(BaseModel):
    fraction: float
    steps: int
    top_drop: float
    random_drop: float
    random_sd: float


class ExplainResponse(BaseModel):
    method: str
    baseline: str | None
    classes: list[int | float | str]
    explanations: list[SeriesExplanation]
    deletion: list[DeletionRow]


def _parameters() -> list[dict[str, Any]]:
    return [
        {"name": "method", "in": "query", "required": False,
         "schema": {"type": "string", "enum": list(METHODS), "default": METHODS[0]},
         "description": "integrated_gradients or occlusion"},
        {"name": "target", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "explain this class for every series (default: the predicted one)"},
    ]


def add_explain_route(
    app: FastAPI, *, model: nn.Module | Any, classes: list[Any],
    read_series: Callable[[Request], Awaitable[tuple[np.ndarray, list[str]]]],
    predict: Callable[[np.ndarray], Awaitable[np.ndarray]],
    request_body: dict[str, Any], errors: dict[int | str, dict[str, Any]],
) -> None:
    """Add ``POST /v1/explain`` to ``app``: ``read_series`` is ``/v1/predict``'s body reader
    (formats, limits, refusals), ``predict`` its batcher (the overflow check), and
    ``request_body`` its OpenAPI request body.  ``model`` other than a PyTorch module (an
    exported graph) makes the route answer 501."""
    lock = threading.Lock()
    state: dict[str, Any] = {"waiting": 0, "model": None}
    keys = [str(c) for c in classes]

    def run(X: np.ndarray, method: str, target: int | None) -> Explanation:
        require_captum()  # the first request imports it, off the event loop
        with lock:
            if state["model"] is None:
                state["model"] = copy.deepcopy(model).eval()
            return explain(state["model"], X, method=method, target=target, classes=classes)

    def options(request: Request) -> tuple[str, int | None]:
        method = request.query_params.get("method", METHODS[0])
        if method not in METHODS:
            raise RequestError(422, f"unknown method {method[:40]!r}; use one of "
                                    f"{', '.join(METHODS)}", "method")
        target = request.query_params.get("target")
        if target is None:
            return method, None
        if target not in keys:
            raise RequestError(422, f"target {target[:40]!r} is not one of the model's "
                                    f"classes ({', '.join(keys)})", "target")
        return method, target_code(target, classes)

    @app.post("/v1/explain", response_model=None,
              openapi_extra={"requestBody": request_body, "parameters": _parameters()},
              responses={200: {"model": ExplainResponse}, **errors},
              summary="Explain the prediction of each series")
    async def explain_route(request: Request) -> JSONResponse:
        """Attributions of the predicted (or ``?target=``) class's probability to each time
        step and channel (``?method=integrated_gradients`` or ``occlusion``), with each
        series' prediction and the deletion test of the attributions' faithfulness."""
        method, target = options(request)
        if not isinstance(model, nn.Module):
            raise RequestError(501, "explanations need the PyTorch model; this server runs "
                                    "another runtime (serve with --runtime torch)")
        if find_spec("captum") is None:  # (importing it is for the threadpool: seconds)
            raise RequestError(501, "explanations need the optional 'explain' extra (Captum) "
                                    "on the server: pip install 'tsformer[explain]'")
        X, fields = await read_series(request)
        proba = await predict(X)
        bad = ~np.isfinite(proba).all(1)
        if bad.any():  # the same refusal as /v1/predict
            i = int(np.argmax(bad))
            raise RequestError(422, f"{fields[i]}'s values overflow the model (largest "
                                    f"magnitude {float(np.abs(X[i]).max()):.3g}): its outputs "
                                    "are not finite numbers; rescale the series (e.g. "
                                    "standardise it)", fields[i])
        if state["waiting"] >= MAX_WAITING:
            raise RequestError(503, "the server is busy explaining other requests; retry "
                                    "shortly")
        state["waiting"] += 1
        try:
            e = await run_in_threadpool(run, X, method, target)
        except DataError as err:
            raise RequestError(422, str(err)) from None
        except TsformerError as err:  # Captum missing or broken
            raise RequestError(501, str(err)) from None
        finally:
            state["waiting"] -= 1
        if not np.isfinite(e.attributions).all():
            i = int(np.argmax(~np.isfinite(e.attributions).all((1, 2))))
            raise RequestError(422, f"{fields[i]}'s attributions are not finite numbers: its "
                                    "values are beyond what the model's gradients can "
                                    "represent; rescale the series", fields[i])
        labels, targets = e.labels(e.predicted), e.labels(e.target)
        return JSONResponse({
            "method": e.method, "baseline": e.baseline, "classes": classes,
            "explanations": [
                {"label": labels[i], "probability": float(e.probability[i]),
                 "target": targets[i], "target_probability": float(e.target_probability[i]),
                 "attributions": e.attributions[i].tolist()} for i in range(len(X))],
            "deletion": [d.to_dict() for d in e.deletion],
        })
