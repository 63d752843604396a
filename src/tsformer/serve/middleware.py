"""ASGI middleware of the server: what is refused before the app (or any parser) sees a byte.

In order, cheapest first:

* **Host** not in the allow-list: 400 (a page on another site that rebinds its DNS name to
  127.0.0.1 sends its own name in the Host header; refusing it keeps such pages out).  The
  matching is Starlette's :class:`~starlette.middleware.trustedhost.TrustedHostMiddleware`;
  only its refusal is replaced, by the JSON body every other error has.
* **Content-Length** over the limit: 413.  Bodies counted as they arrive (chunked transfer
  encoding has no Content-Length): 413 as soon as the count passes the limit.
* **A body that does not arrive** within ``body_timeout`` seconds: 408, and the connection is
  closed.  The deadline is for the whole body, so a client trickling a byte at a time is cut
  off too.

A refusal sent while the client is still sending its body would make the server close a
socket with unread data, and the kernel then answers with a TCP reset that most clients
(httpx, requests, curl) report instead of the 413.  So before a refusal the rest of the body is
read and thrown away, at most ``drain_bytes`` bytes and ``drain_timeout`` seconds, unless the
client asked ``Expect: 100-continue`` (it sends nothing until told to) or declared a body
bigger than the drain bound.

Every response, refusals included, carries the security headers (:data:`SECURITY_HEADERS`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterable

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import DEFAULT_BODY_TIMEOUT

#: The page may load scripts, styles and data from this server only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: On every response, refusals included.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
#: Host names always accepted: this machine's loopback names.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: Bound on reading and discarding the rest of a refused body (bytes, seconds).
DEFAULT_DRAIN_BYTES = 64 * 1024 * 1024
DEFAULT_DRAIN_TIMEOUT = 5.0

_ALLOWED = "tsformer.host_allowed"


def host_pattern(name: str) -> str:
    """``name`` as the Host allow-list compares it: lower case, IPv6 literals in brackets,
    ``*`` (any host) or ``*.example.com`` wildcards; ValueError when it cannot be a host."""
    text = name.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        if ipaddress.ip_address(text).version == 6:
            return f"[{text}]"
        return text
    except ValueError:
        pass
    if text == "*":
        return text
    label = text[2:] if text.startswith("*.") else text
    if (not label or len(label) > 253 or "*" in label or label.startswith(".")
            or not all(c.isalnum() or c in "-._" for c in label)):
        raise ValueError(f"{name!r} is not a host name ('*' for any host, '*.example.com' for "
                         "a domain and its subdomains)")
    return text


def _error_body(detail: str, field: str | None) -> bytes:
    return json.dumps({"detail": detail, "field": field}).encode()


async def send_error(send: Send, status: int, detail: str, field: str | None = None,
                     close: bool = True) -> None:
    """A JSON refusal ``{"detail", "field"}`` with the security headers."""
    body = _error_body(detail, field)
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _mark_allowed(scope: Scope, _receive: Receive, _send: Send) -> None:
    scope[_ALLOWED] = True


async def _nothing_received() -> Message:
    return {"type": "http.disconnect"}


async def _discard(_message: Message) -> None:
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "...")


class BodyLimitMiddleware:
    """The Host allow-list, the body size limit and the body deadline, in front of the app.

    ``allow_hosts``: Host patterns accepted (``None`` or one ``*``: any).  ``max_bytes``: the
    largest body.  ``body_timeout``: seconds for the whole body to arrive.  ``drain_bytes`` and
    ``drain_timeout`` bound what is read and discarded before a refusal.  A body that passes is
    buffered (at most ``max_bytes``) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, *,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT,
                 allow_hosts: Iterable[str] | None = None,
                 drain_bytes: int = DEFAULT_DRAIN_BYTES,
                 drain_timeout: float = DEFAULT_DRAIN_TIMEOUT) -> None:
        self.app, self.max_bytes, self.body_timeout = app, max_bytes, body_timeout
        self.drain_bytes, self.drain_timeout = drain_bytes, drain_timeout
        patterns = None if allow_hosts is None else [host_pattern(h) for h in allow_hosts]
        self.allow_hosts = patterns
        self._hosts = (None if patterns is None or "*" in patterns else
                       TrustedHostMiddleware(_mark_allowed, allowed_hosts=patterns,
                                             www_redirect=False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self._hosts is not None and not await self._host_allowed(scope):
            host = headers.get(b"host", b"").decode("latin-1")
            names = ", ".join(p.strip("[]") for p in self.allow_hosts or ())
            detail = (f"Host {_shown(host)} is not allowed: this server answers to {names}; "
                      f"start it with --allow-host NAME to accept another name (a guard "
                      "against DNS rebinding)" if host else
                      "the request has no Host header; send the name the server is reached by")
            await self._refuse(scope, receive, send, 400, detail, "Host")
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                await self._refuse(scope, receive, send, 400,
                                   "the Content-Length header is not a number",
                                   "Content-Length", drain=False)
                return
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, 413,
                                   f"request body is {size} bytes, over the limit of "
                                   f"{self.max_bytes} bytes; send fewer series per request",
                                   drain=size <= self.drain_bytes)
                return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message,
                           "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, replay, send_with_headers)

    async def _host_allowed(self, scope: Scope) -> bool:
        assert self._hosts is not None
        probe = dict(scope)
        await self._hosts(probe, _nothing_received, _discard)
        return bool(probe.get(_ALLOWED))

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering (too big, too slow) or a disconnect."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                await send_error(send, 408, f"the request body did not arrive within "
                                            f"{self.body_timeout:g} s; send the whole body at "
                                            "once (the server's --body-timeout)")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            more = message.get("more_body", False)
            if total > self.max_bytes:
                await self._refuse(scope, receive, send, 413,
                                   f"request body is over the limit of {self.max_bytes} bytes; "
                                   "send fewer series per request", started=True, more=more)
                return None
            chunks.append(chunk)
            if not more:
                return b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int,
                      detail: str, field: str | None = None, *, drain: bool = True,
                      started: bool = False, more: bool = True) -> None:
        """Answer ``status`` after reading and discarding the rest of the body (bounded)."""
        if drain and more:
            await self._drain(scope, receive, started)
        await send_error(send, status, detail, field)

    async def _drain(self, scope: Scope, receive: Receive, started: bool) -> None:
        headers = dict(scope["headers"])
        if not started:
            if headers.get(b"expect", b"").lower() == b"100-continue":
                return  # the client waits for a "100 Continue" that will not come
            if headers.get(b"content-length") in (None, b"0") and (
                    b"transfer-encoding" not in headers):
                return  # no body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        total = 0
        while total <= self.drain_bytes:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                return
            if message["type"] == "http.disconnect":
                return
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


__all__ = ["CSP", "DEFAULT_BODY_TIMEOUT", "LOOPBACK_HOSTS", "SECURITY_HEADERS",
           "BodyLimitMiddleware", "host_pattern", "send_error"]
