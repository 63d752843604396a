"""``tsformer serve``: the prediction server and demo page for a model directory."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from ..errors import TsformerError
from .common import positive_int


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535 (0: any free port), not {port}")
    return port


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
    from ..serve import create_app

    app = create_app(args.model_dir, max_body_bytes=args.max_body_bytes,
                  max_instances=args.max_instances)
    import uvicorn

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


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..serve import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES

    p = sub.add_parser("serve", help="serve a model directory: HTTP API and a demo page")
    p.add_argument("model_dir", help="a run/model directory written by 'tsformer train'")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument("--max-body-bytes", type=positive_int, default=DEFAULT_MAX_BODY_BYTES,
                   help=f"largest request body (default {DEFAULT_MAX_BODY_BYTES})")
    p.add_argument("--max-instances", type=positive_int, default=DEFAULT_MAX_INSTANCES,
                   help=f"most series per request (default {DEFAULT_MAX_INSTANCES})")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level (default warning; debug adds an access log)")
    p.set_defaults(func=cmd_serve)
