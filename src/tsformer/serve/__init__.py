"""``tsformer serve``: a model directory behind an HTTP API and a browser demo page.

This module imports nothing beyond the standard library and numpy, so the core package and
its CLI work without the optional ``serve`` extra; FastAPI and uvicorn are imported only when
an app is actually built (:func:`create_app`) or the command runs.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, TsformerError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_INSTANCES", "SAMPLE_NAME", "add_serve_command",
    "create_app", "write_demo_sample",
]

#: Largest request body accepted (bytes); checked before anything is parsed.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: Most series accepted in one request.
DEFAULT_MAX_INSTANCES = 256
#: File in a model directory holding a few test-split examples for the demo page.
SAMPLE_NAME = "sample.json"

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
    """The FastAPI app serving ``model_dir`` (see :func:`tsformer.serve.app.create_app`)."""
    _require_extra()
    from .app import create_app as _create

    return _create(model_dir, max_body_bytes=max_body_bytes, max_instances=max_instances,
                   **kwargs)


# --------------------------------------------------------------------------- demo sample


def write_demo_sample(
    dir_or_files: str | os.PathLike | MutableMapping[str, Any], X_test: Any, y_test: Any,
    n: int = 8, *, split: str = "test",
) -> Any:
    """Ship ``n`` test-split examples with a model so its demo page has something to show.

    ``dir_or_files`` is either a model directory (``sample.json`` is written into it) or the
    ``extra_files`` mapping passed to :func:`tsformer.io.save_pretrained` (the entry is added,
    so the sample is written atomically with the model).  Examples are picked round-robin over
    the classes, in test-split order, so every class shows up when ``n`` allows.  Values keep
    9 significant digits, which round-trips float32 exactly: the demo sees the true series.
    """
    X = np.asarray(X_test, dtype=np.float32)
    if X.ndim == 2:
        X = X[:, None, :]
    y = np.asarray(y_test)
    if X.ndim != 3 or len(X) != len(y):
        raise DataError(f"write_demo_sample needs X (n, channels, points) and one label per "
                        f"series; got X {X.shape} and {len(y)} labels")
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(y.tolist()):
        by_class.setdefault(str(label), []).append(i)
    picked: list[int] = []
    queues = [list(reversed(v)) for v in by_class.values()]
    while len(picked) < min(n, len(y)) and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop())
    picked.sort()
    doc = {
        "format": "tsformer-sample", "split": split,
        "labels": [y[i].item() if hasattr(y[i], "item") else y[i] for i in picked],
        "series": [[[float(f"{v:.9g}") for v in ch] for ch in X[i].tolist()] for i in picked],
    }
    text = json.dumps(doc, separators=(",", ":")) + "\n"
    if isinstance(dir_or_files, MutableMapping):
        dir_or_files[SAMPLE_NAME] = text
        return dir_or_files
    path = Path(dir_or_files) / SAMPLE_NAME
    tmp = path.with_name(f".{SAMPLE_NAME}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- CLI


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535 (0: any free port), not {port}")
    return port


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so a taken port is one line, not a log and exit 1."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise TsformerError(f"cannot resolve host {host!r} ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        hint = "; pick another with --port (0 = any free port)" if e.errno == 98 else ""
        raise TsformerError(f"cannot listen on {host}:{port} ({e.strerror}){hint}") from None
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model once, bind, then hand the socket to uvicorn until Ctrl+C."""
    _require_extra()
    import uvicorn

    from .app import create_app as _create

    app = _create(args.model_dir, max_body_bytes=args.max_body_bytes,
                  max_instances=args.max_instances)
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}, reachable from other machines; the server "
              "has no authentication", file=sys.stderr)
    print(f"serving {args.model_dir} on http://{shown}:{port}/ (demo page /, API /v1/predict, "
          "schema /openapi.json); Ctrl+C stops", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=args.host, port=port, log_level=args.log_level,
                            access_log=args.log_level == "debug", timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    """Add ``tsformer serve MODEL_DIR`` to the CLI (listed in ``cli.FEATURE_COMMANDS``)."""
    p = sub.add_parser("serve", help="serve a model directory: HTTP API and a demo page")
    p.add_argument("model_dir", help="a run/model directory written by 'tsformer train'")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument("--max-body-bytes", type=_positive, default=DEFAULT_MAX_BODY_BYTES,
                   help=f"largest request body (default {DEFAULT_MAX_BODY_BYTES})")
    p.add_argument("--max-instances", type=_positive, default=DEFAULT_MAX_INSTANCES,
                   help=f"most series per request (default {DEFAULT_MAX_INSTANCES})")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level (default warning; debug adds an access log)")
    p.set_defaults(func=cmd_serve)
