"""``tsformer serve``: the prediction server and demo page for a model directory."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
import sys
from typing import Any

from ..errors import TsformerError
from .common import positive_int, positive_seconds


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


def _host_name(text: str) -> str:
    from ..serve.middleware import host_pattern

    try:
        return host_pattern(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> Any:
    from ..serve import create_app

    bound = [] if _is_unspecified(args.host) else [args.host]  # 0.0.0.0 is no one's name
    app = create_app(args.model_dir, max_body_bytes=args.max_body_bytes,
                     max_instances=args.max_instances, body_timeout=args.body_timeout,
                     allow_hosts=[*bound, *(args.allow_host or [])], runtime=args.runtime)
    from ..serve.server import make_server

    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}, reachable from other machines; the server "
              "has no authentication; it answers requests whose Host header is a loopback "
              f"name{''.join(', ' + h for h in bound)} or an --allow-host name",
              file=sys.stderr)

    def ready() -> None:
        print(f"serving {args.model_dir} on http://{shown}:{port}/ (demo page /, API "
              "/v1/predict, schema /openapi.json); Ctrl+C stops", file=sys.stderr, flush=True)

    server = make_server(app, host=args.host, port=port, on_ready=ready,
                         log_level=args.log_level, access_log=args.log_level == "debug",
                         header_timeout=args.header_timeout,
                         keep_alive_timeout=args.keep_alive_timeout)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise TsformerError("the server did not start (see the log above)")
    return server


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model once, bind, then serve until Ctrl+C or SIGTERM: the requests in flight
    are answered, then one line says the server stopped, and the exit status is 0."""
    try:
        server = _serve(args)
    except KeyboardInterrupt:  # while loading the model, before there was a server to stop
        print("tsformer: serve stopped before it started serving", file=sys.stderr, flush=True)
        return 0
    why = signal.Signals(server.stopped_by).name if server.stopped_by else "shut down"
    n = server.server_state.total_requests
    print(f"tsformer: serve stopped ({why}) after {n} request{'s' * (n != 1)}",
          file=sys.stderr, flush=True)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..serve import (
        DEFAULT_BODY_TIMEOUT,
        DEFAULT_HEADER_TIMEOUT,
        DEFAULT_KEEP_ALIVE_TIMEOUT,
        DEFAULT_MAX_BODY_BYTES,
        DEFAULT_MAX_INSTANCES,
    )

    p = sub.add_parser("serve", help="serve a model directory: HTTP API and a demo page")
    p.add_argument("model_dir", help="a run/model directory written by 'tsformer train' "
                   "(with --runtime onnx: an exported .onnx file, or a directory holding "
                   "model.onnx)")
    p.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                   help="torch (default): the PyTorch model; onnx: the graph 'tsformer export' "
                   "wrote, in onnxruntime (needs tsformer[onnx]; /v1/explain is then absent)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument("--allow-host", action="append", type=_host_name, metavar="NAME",
                   help="also accept requests whose Host header is NAME (repeatable; '*': any; "
                        "'*.example.com': a domain); by default only loopback names and "
                        "--host are accepted, a guard against DNS rebinding")
    p.add_argument("--max-body-bytes", type=positive_int, default=DEFAULT_MAX_BODY_BYTES,
                   help=f"largest request body (default {DEFAULT_MAX_BODY_BYTES})")
    p.add_argument("--max-instances", type=positive_int, default=DEFAULT_MAX_INSTANCES,
                   help=f"most series per request (default {DEFAULT_MAX_INSTANCES})")
    p.add_argument("--body-timeout", type=positive_seconds, default=DEFAULT_BODY_TIMEOUT,
                   metavar="SECONDS", help="seconds the whole request body may take to arrive; "
                   f"then 408 and the connection closes (default {DEFAULT_BODY_TIMEOUT:g})")
    p.add_argument("--header-timeout", type=positive_seconds, default=DEFAULT_HEADER_TIMEOUT,
                   metavar="SECONDS", help="seconds a connection may take to send a request's "
                   f"headers (default {DEFAULT_HEADER_TIMEOUT:g})")
    p.add_argument("--keep-alive-timeout", type=positive_seconds,
                   default=DEFAULT_KEEP_ALIVE_TIMEOUT,
                   metavar="SECONDS", help="seconds an idle keep-alive connection stays open "
                   f"(default {DEFAULT_KEEP_ALIVE_TIMEOUT:g})")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level (default warning; debug adds an access log)")
    p.set_defaults(func=cmd_serve)
