"""``tsformer serve``: a model directory behind an HTTP API and a browser demo page.

This module imports nothing beyond the standard library and numpy, so the core package and
its CLI work without the optional ``serve`` extra; FastAPI and uvicorn are imported only when
an app is actually built (:func:`create_app`) or the command runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import TsformerError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["DEFAULT_BODY_TIMEOUT", "DEFAULT_HEADER_TIMEOUT", "DEFAULT_KEEP_ALIVE_TIMEOUT",
           "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_INSTANCES", "create_app"]

#: Largest request body accepted (bytes); checked before anything is parsed.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: Most series accepted in one request.
DEFAULT_MAX_INSTANCES = 256
#: Seconds the whole request body may take to arrive (then 408 and the connection closes).
DEFAULT_BODY_TIMEOUT = 20.0
#: Seconds a new connection, or one between requests, may take to send a request's headers.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Seconds an idle keep-alive connection is kept open (uvicorn's ``timeout_keep_alive``).
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0

_MISSING_EXTRA = (
    "the serve command needs the optional 'serve' extra (FastAPI, uvicorn, python-multipart): "
    "install tsformer[serve], e.g. pip install 'tsformer[serve]'"
)


def _require_extra() -> None:
    """One clear line instead of an ImportError traceback when the extra is not installed."""
    from importlib.util import find_spec

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise TsformerError(f"{_MISSING_EXTRA} ({e})") from None
    if find_spec("python_multipart") is None and find_spec("multipart") is None:
        raise TsformerError(f"{_MISSING_EXTRA} (python-multipart, for CSV uploads, is missing)")


def create_app(model_dir: str | os.PathLike, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_instances: int = DEFAULT_MAX_INSTANCES, **kwargs: Any) -> FastAPI:
    """The FastAPI app serving ``model_dir`` (see :func:`tsformer.serve.app.create_app` for
    the keyword arguments: ``body_timeout``, ``allow_hosts``, ``batch_size``,
    ``max_pending``)."""
    _require_extra()
    from .app import create_app as _create

    return _create(model_dir, max_body_bytes=max_body_bytes, max_instances=max_instances,
                   **kwargs)
