"""The app under uvicorn: ready before it says so, slow clients cut off, a clean stop.

* :class:`Server` calls ``on_ready`` only once uvicorn's start-up is complete, i.e. the
  listening socket accepts connections (printing "serving on ..." earlier lies to scripts
  that wait for that line).
* A signal (Ctrl-C, SIGTERM) is the normal way to stop a server: uvicorn finishes the requests
  in flight (up to ``graceful_timeout`` seconds) and :meth:`Server.serve` returns, instead of
  re-raising the signal afterwards as uvicorn does (which ends the process with
  KeyboardInterrupt or status 143).  A second Ctrl-C stops at once.
* uvicorn has no timeout for a request's headers: a client that connects and sends half a
  request line holds its connection for ever.  :func:`head_timeout_protocol` adds one to
  uvicorn's HTTP/1.1 protocol; the body has its own deadline in the ASGI middleware.  The
  same protocol answers a request uvicorn cannot parse with a JSON 400, as every other
  refusal, instead of uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from . import DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT
from .middleware import SECURITY_HEADERS, _error_body

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raw_response(status: bytes, detail: str) -> bytes:
    """A JSON refusal written straight to the socket (the connection then closes)."""
    body = _error_body(detail, None)
    head = [b"HTTP/1.1 " + status, b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(), b"connection: close",
            *(k + b": " + v for k, v in SECURITY_HEADERS)]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _timeout_response(seconds: float) -> bytes:
    return _raw_response(b"408 Request Timeout", f"the request headers did not arrive within "
                         f"{seconds:g} s (the server's --header-timeout)")


def head_timeout_protocol(base: type[asyncio.Protocol], seconds: float) -> type:
    """``base`` (uvicorn's h11 or httptools protocol) with a deadline for request headers.

    The clock starts when a connection opens, and again when a response is complete (then
    with uvicorn's keep-alive timeout added: the client may wait that long before it starts the
    next request); it stops when a request's headers are in (uvicorn then has a new request
    cycle).  At the deadline a connection that sent part of a request gets a JSON 408;
    one that sent nothing is closed quietly; either way it is closed.
    """
    response = _timeout_response(seconds)

    class HeadTimeoutProtocol(base):  # type: ignore[valid-type, misc]
        _head_timer: asyncio.TimerHandle | None = None
        _head_cycle: Any = None
        _head_bytes = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            self._head_bytes = True
            super().data_received(data)
            if self._head_timer is not None and getattr(self, "cycle", None) is not (
                    self._head_cycle):
                self._cancel_head_timer()  # a new request's headers are in

        def on_response_complete(self) -> None:
            # first: a pipelined request starts its cycle in the call below
            self._arm_head_timer(getattr(self, "timeout_keep_alive", 0))
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _arm_head_timer(self, idle: float = 0) -> None:
            self._cancel_head_timer()
            self._head_cycle, self._head_bytes = getattr(self, "cycle", None), False
            self._head_timer = self.loop.call_later(idle + seconds, self._head_expired)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers a request it cannot parse in plain text; every refusal here is
            # JSON (the connection closes either way)
            why = msg.strip().rstrip(".") or "unparseable request"
            self.transport.write(_raw_response(
                b"400 Bad Request", f"the request is not valid HTTP/1.1 ({why}); check the "
                "client or proxy sending it"))
            self.transport.close()

        def _head_expired(self) -> None:
            self._head_timer = None
            transport = self.transport
            if getattr(self, "cycle", None) is not self._head_cycle or transport is None or (
                    transport.is_closing()):
                return
            if self._head_bytes:
                transport.write(response)
            transport.close()

    HeadTimeoutProtocol.__name__ = f"HeadTimeout{base.__name__}"
    return HeadTimeoutProtocol


class Server(uvicorn.Server):
    """uvicorn's server that says when it is ready and treats a signal as a normal stop."""

    def __init__(self, config: uvicorn.Config,
                 on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_ready = on_ready
        self.stopped_by: int | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self.on_ready is not None:
            self.on_ready()

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.stopped_by is None:
            self.stopped_by = sig
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, without raising the signal again once the server has stopped."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def make_server(app: Any, *, host: str = "127.0.0.1", port: int = 0,
                on_ready: Callable[[], None] | None = None, log_level: str = "warning",
                access_log: bool = False, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
                graceful_timeout: float = 5.0) -> Server:
    """A :class:`Server` for ``app``; run it with ``server.run(sockets=[sock])``."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=access_log,
        http=head_timeout_protocol(AutoHTTPProtocol, header_timeout),
        timeout_keep_alive=keep_alive_timeout,  # type: ignore[arg-type]
        timeout_graceful_shutdown=graceful_timeout,  # type: ignore[arg-type]
        lifespan="on")
    return Server(config, on_ready=on_ready)


__all__ = ["Server", "head_timeout_protocol", "make_server"]
