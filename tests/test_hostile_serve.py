"""The server under hostile input, over a real loopback socket: every case is a 4xx with a JSON
body ``{"detail": ..., "field": ...}`` and the server keeps answering afterwards.

Classes (ids ``class/case``): bad JSON shapes, huge numbers, deep nesting, NaN/inf, values that
overflow the model, oversize bodies (with and without Content-Length, from httpx, requests and
curl), wrong content types, bad Host headers, stalled bodies and headers, bad multipart.
A bounded schemathesis run against ``/openapi.json`` is in the slow lane.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx2 as httpx  # noqa: E402

from tsformer.config import DataShape, resolve  # noqa: E402
from tsformer.model_dir import SAMPLE_NAME, demo_sample, save_model_dir  # noqa: E402
from tsformer.serve import create_app  # noqa: E402
from tsformer.serve.server import make_server  # noqa: E402

T = 32
MAX_BODY = 16 * 1024
MAX_INSTANCES = 8
BODY_TIMEOUT = 0.5
HEADER_TIMEOUT = 0.75
OK = [0.25] * T
BIG = 8 * 1024 * 1024
#: Valid float32 values whose squares are not: the model's normalisation overflows.
BIG20 = [1e20, -1e20] * (T // 2)
#: Slack on top of a timeout before a case counts as hanging (a shared 2-core machine).
SLACK = 2.5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = resolve("seed", DataShape(1, T, 2), classes=[-1, 1], data={"name": "noise"})
    torch.manual_seed(0)
    X = np.random.default_rng(0).standard_normal((8, 1, T)).astype(np.float32)
    extra = {SAMPLE_NAME: demo_sample(X, np.array([-1, 1] * 4), n=4)}
    return save_model_dir(tmp_path_factory.mktemp("hostile") / "model", cfg.build(), cfg,
                          extra_files=extra)


@dataclass
class Live:
    base: str
    port: int


@pytest.fixture(scope="module")
def live(model_dir: Path) -> Iterator[Live]:
    """The app under uvicorn on a free loopback port, with short timeouts."""
    app = create_app(model_dir, max_body_bytes=MAX_BODY, max_instances=MAX_INSTANCES,
                     body_timeout=BODY_TIMEOUT)
    server = make_server(app, log_level="critical", header_timeout=HEADER_TIMEOUT,
                         keep_alive_timeout=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


# --------------------------------------------------------------------------- clients


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float = 0.0


def _parse_raw(data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert m, f"no HTTP response, got {data[:200]!r}"
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    n = int(headers.get("content-length", len(body)))
    return Reply(int(m.group(1)), headers, body[:n])


def _read_response(s: socket.socket, deadline: float) -> bytes:
    """Bytes until the response is complete (Content-Length) or the server closes; bounded."""
    data = b""
    while time.monotonic() < deadline:
        s.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if sep and m and len(body) >= int(m.group(1)):
            break
    return data


def raw(live: Live, data: bytes, *, trickle: bytes = b"", every: float = 0.1,
        wait: float = 5.0) -> Reply:
    """Send ``data`` on a fresh socket, then ``trickle`` a byte at a time until the server
    answers (at most 40 bytes); the response, and the seconds it took."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port), timeout=wait) as s:
        s.sendall(data)
        for byte in trickle[:40]:
            if select.select([s], [], [], every)[0]:
                break  # the server answered
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
        data = _read_response(s, t0 + wait)
    reply = _parse_raw(data)
    reply.elapsed = time.monotonic() - t0
    return reply


def post(live: Live, body: bytes | Iterator[bytes], ctype: str | None = "application/json"
         ) -> Reply:
    headers = {} if ctype is None else {"Content-Type": ctype}
    t0 = time.monotonic()
    with httpx.Client(base_url=live.base, timeout=10) as h:
        r = h.post("/v1/predict", content=body, headers=headers)
    return Reply(r.status_code, dict(r.headers), r.content, time.monotonic() - t0)


def post_json(live: Live, doc: Any) -> Reply:
    return post(live, json.dumps(doc).encode())


def post_text(live: Live, text: str, ctype: str = "application/json") -> Reply:
    return post(live, text.encode(), ctype)


def upload(live: Live, files: Any = None, data: Any = None) -> Reply:
    t0 = time.monotonic()
    with httpx.Client(base_url=live.base, timeout=10) as h:
        r = h.post("/v1/predict", files=files, data=data)
    return Reply(r.status_code, dict(r.headers), r.content, time.monotonic() - t0)


def multipart_raw(live: Live, body: bytes, boundary: str | None) -> Reply:
    ctype = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
    return post(live, body, ctype)


def _row(values: list[Any]) -> str:
    return ",".join(str(v) for v in values)


def _digits(n: int) -> str:
    return "1" + "0" * (n - 1)


def _http(method: str, target: str, headers: dict[str, str], body: bytes = b"",
          version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _with_host(live: Live, host: str | None, body: bytes = b"") -> Reply:
    headers = {} if host is None else {"Host": host}
    headers |= {"Content-Type": "application/json", "Content-Length": str(len(body)),
                "Connection": "close"}
    return raw(live, _http("POST", "/v1/predict", headers, body, "1.0" if host is None else
                           "1.1"))


def _requests_oversize(live: Live, size: int = 4 * MAX_BODY) -> Reply:
    requests = pytest.importorskip("requests")
    r = requests.post(f"{live.base}/v1/predict", data=b" " * size,
                      headers={"Content-Type": "application/json"}, timeout=10)
    return Reply(r.status_code, dict(r.headers), r.content)


def _curl_oversize(live: Live, size: int, expect: bool = True) -> Reply:
    """curl uploading ``size`` bytes; ``expect=False``: the body follows the headers at once
    (no ``Expect: 100-continue``, which curl sends for big bodies)."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl")
    out = subprocess.run(
        [curl, "-sS", "--noproxy", "*", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
         "-H", "Content-Type: application/json", *(() if expect else ("-H", "Expect:")),
         "--data-binary", "@-", f"{live.base}/v1/predict"],
        input=b" " * size, capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    body, _, code = out.stdout.rpartition(b"\n")
    return Reply(int(code), {"content-type": "application/json"}, body)


def _raw_upload(live: Live, size: int, chunked: bool = False) -> Reply:
    """The whole over-limit body sent, then the response read to the end: the client must be
    able to send it all (no broken pipe) and the connection must end with a clean close, not a
    reset (the server read and discarded the body before closing)."""
    headers = {"Host": "localhost", "Content-Type": "application/json"}
    headers |= {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(size)}
    body = b" " * size
    if chunked:
        body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                        for i in range(0, size, 65536)) + b"0\r\n\r\n"
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        s.sendall(_http("POST", "/v1/predict", headers))
        try:
            s.sendall(body)
        except OSError as e:
            raise AssertionError(f"the server stopped reading the body: {e!r}") from None
        data, end = b"", None
        while end is None and time.monotonic() < t0 + 10:
            try:
                chunk = s.recv(65536)
            except OSError as e:
                end = repr(e)
                break
            end = None if chunk else "EOF"
            data += chunk
    assert end == "EOF", f"the connection ended with {end}, not a clean close"
    reply = _parse_raw(data)
    reply.elapsed = time.monotonic() - t0
    return reply


def _chunks(total: int, size: int = 4096) -> Iterator[bytes]:
    for _ in range(total // size + 1):
        yield b" " * size


# --------------------------------------------------------------------------- the cases

Case = tuple[str, int, Callable[[Live], Reply], str | None]
ONE = f'{{"instances": [[{_row(OK[1:])},%s]]}}'  # one series, the last value replaced
CASES: list[Case] = [
    # id, status, request, the field the refusal names (None: any)
    # ---- bad JSON shapes
    ("json-shape/not-object", 422, lambda lv: post_json(lv, [OK]), None),
    ("json-shape/lone-surrogate-key", 422,
     lambda lv: post_text(lv, '{"instances": [[1, 2]], "\\ud800": 1}'), None),
    ("json-shape/lone-surrogate-value", 422,
     lambda lv: post_text(lv, '{"instances": [["\\ud800"]]}'), None),
    ("json-shape/null-body", 422, lambda lv: post_text(lv, "null"), None),
    ("json-shape/instances-number", 422, lambda lv: post_json(lv, {"instances": 3}),
     "instances"),
    ("json-shape/instances-object", 422, lambda lv: post_json(lv, {"instances": {"a": OK}}),
     "instances"),
    ("json-shape/series-string", 422, lambda lv: post_json(lv, {"instances": ["1,2"]}),
     "instances[0]"),
    ("json-shape/series-object", 422, lambda lv: post_json(lv, {"instances": [{"v": OK}]}),
     "instances[0]"),
    ("json-shape/mixed-lists-numbers", 422, lambda lv: post_json(
        lv, {"instances": [[1.0, [1.0]]]}), "instances[0]"),
    ("json-shape/unknown-field", 422, lambda lv: post_json(lv, {"instances": [OK], "x": 1}),
     "x"),
    ("json-shape/empty-instances", 422, lambda lv: post_json(lv, {"instances": []}),
     "instances"),
    ("json-shape/boolean-value", 422, lambda lv: post_json(lv, {"instances": [[True] + OK[1:]]}),
     "instances[0][0]"),
    ("json-shape/null-value", 422, lambda lv: post_json(lv, {"instances": [[None] + OK[1:]]}),
     "instances[0][0]"),
    ("json-shape/wrong-length", 422, lambda lv: post_json(lv, {"instances": [OK[:-1]]}),
     "instances[0]"),
    ("json-shape/one-level-too-deep", 422, lambda lv: post_json(lv, {"instances": [[[OK]]]}),
     "instances[0][0][0]"),
    ("json-shape/truncated", 400, lambda lv: post_text(lv, '{"instances": [[1, 2,'), None),
    # ---- huge numbers
    ("huge-number/int-5000-digits", 422, lambda lv: post_text(lv, ONE % _digits(5000)),
     f"instances[0][{T - 1}]"),
    ("huge-number/negative-int-5000-digits", 422,
     lambda lv: post_text(lv, ONE % ("-" + _digits(5000))), f"instances[0][{T - 1}]"),
    ("huge-number/int-4301-digits", 422, lambda lv: post_text(lv, ONE % _digits(4301)),
     f"instances[0][{T - 1}]"),
    ("huge-number/int-400-digits", 422, lambda lv: post_text(lv, ONE % _digits(400)),
     f"instances[0][{T - 1}]"),
    ("huge-number/instances-is-huge-int", 422,
     lambda lv: post_text(lv, f'{{"instances": {_digits(5000)}}}'), "instances"),
    ("huge-number/exponent-1e999", 422, lambda lv: post_text(lv, ONE % "1e999"),
     f"instances[0][{T - 1}]"),
    ("huge-number/exponent-overflow", 422, lambda lv: post_text(lv, ONE % "-1e99999999999"),
     f"instances[0][{T - 1}]"),
    ("huge-number/beyond-float32", 422, lambda lv: post_text(lv, ONE % "1e39"),
     f"instances[0][{T - 1}]"),
    ("huge-number/huge-key", 422, lambda lv: post_text(lv, f'{{"{_digits(5000)}": 1}}'), None),
    # ---- deep nesting
    ("deep-nesting/8000-lists", 400, lambda lv: post_text(lv, "[" * 8000 + "]" * 8000), None),
    ("deep-nesting/2500-objects", 400,
     lambda lv: post_text(lv, '{"a":' * 2500 + "1" + "}" * 2500), None),
    ("deep-nesting/inside-a-series", 422,
     lambda lv: post_text(lv, '{"instances": [[' + "[" * 300 + "1" + "]" * 300 + "]]}"), None),
    # ---- NaN / inf
    ("nan-inf/json-NaN", 422, lambda lv: post_text(lv, ONE % "NaN"), f"instances[0][{T - 1}]"),
    ("nan-inf/json-Infinity", 422, lambda lv: post_text(lv, ONE % "Infinity"),
     f"instances[0][{T - 1}]"),
    ("nan-inf/json-minus-Infinity", 422, lambda lv: post_text(lv, ONE % "-Infinity"),
     f"instances[0][{T - 1}]"),
    ("nan-inf/csv-nan", 422, lambda lv: post_text(lv, _row(OK[1:] + ["nan"]), "text/csv"),
     None),
    ("nan-inf/csv-inf", 422, lambda lv: post_text(lv, _row(["inf"] + OK[1:]), "text/csv"),
     None),
    ("nan-inf/csv-1e999", 422, lambda lv: post_text(lv, _row(OK[1:] + ["1e999"]), "text/csv"),
     None),
    # ---- values that overflow the model (valid float32, non-finite outputs)
    ("overflow/1e20", 422, lambda lv: post_json(lv, {"instances": [BIG20]}), "instances[0]"),
    ("overflow/3e38", 422, lambda lv: post_json(lv, {"instances": [[3e38, -3e38] * (T // 2)]}),
     "instances[0]"),
    ("overflow/second-series", 422,
     lambda lv: post_json(lv, {"instances": [OK, BIG20]}), "instances[1]"),
    ("overflow/csv-line-3", 422, lambda lv: post_text(
        lv, "\n".join([_row([f"t{k}" for k in range(T)]), _row(OK), _row(BIG20)]),
        "text/csv"), "line 3"),
    ("overflow/upload", 422, lambda lv: upload(
        lv, files={"file": ("x.csv", _row(BIG20).encode(), "text/csv")}), "line 1"),
    # ---- oversize bodies
    ("oversize/httpx-content-length", 413, lambda lv: post(lv, b" " * (4 * MAX_BODY)), None),
    ("oversize/httpx-chunked", 413, lambda lv: post(lv, _chunks(4 * MAX_BODY)), None),
    ("oversize/requests-content-length", 413, _requests_oversize, None),
    ("oversize/curl", 413, lambda lv: _curl_oversize(lv, 4 * MAX_BODY), None),
    ("oversize/curl-no-expect", 413, lambda lv: _curl_oversize(lv, 4 * MAX_BODY, False), None),
    # bigger than the kernel's socket buffers: without reading the body first, a reset
    ("oversize/httpx-8MiB", 413, lambda lv: post(lv, b" " * BIG), None),
    ("oversize/httpx-chunked-8MiB", 413, lambda lv: post(lv, _chunks(BIG, 65536)), None),
    ("oversize/requests-8MiB", 413, lambda lv: _requests_oversize(lv, BIG), None),
    ("oversize/curl-no-expect-8MiB", 413, lambda lv: _curl_oversize(lv, BIG, False), None),
    ("oversize/curl-2MiB-expect-100", 413, lambda lv: _curl_oversize(lv, 2 * 1024 * 1024),
     None),
    ("oversize/raw-1MB-clean-close", 413, lambda lv: _raw_upload(lv, 1_000_000), None),
    ("oversize/raw-8MiB-clean-close", 413, lambda lv: _raw_upload(lv, BIG), None),
    ("oversize/raw-chunked-8MiB-clean-close", 413, lambda lv: _raw_upload(lv, BIG, True),
     None),
    ("oversize/lying-content-length", 413, lambda lv: raw(lv, _http("POST", "/v1/predict", {
        "Host": "localhost", "Content-Type": "application/json",
        "Content-Length": "99999999999"}, b"{}")), None),
    ("oversize/expect-100-continue", 413, lambda lv: raw(lv, _http("POST", "/v1/predict", {
        "Host": "localhost", "Content-Type": "application/json", "Expect": "100-continue",
        "Content-Length": str(4 * MAX_BODY)})), None),
    ("oversize/too-many-series", 413,
     lambda lv: post_json(lv, {"instances": [OK] * (MAX_INSTANCES + 1)}), "instances"),
    ("oversize/too-many-csv-rows", 413,
     lambda lv: post_text(lv, "\n".join([_row(OK)] * (MAX_INSTANCES + 1)), "text/csv"), None),
    # ---- wrong content types
    ("content-type/text-plain", 415, lambda lv: post(lv, _row(OK).encode(), "text/plain"),
     "Content-Type"),
    ("content-type/none", 415, lambda lv: post(lv, _row(OK).encode(), None), "Content-Type"),
    ("content-type/xml", 415, lambda lv: post(lv, b"<a/>", "application/xml"), "Content-Type"),
    ("content-type/form-urlencoded", 415,
     lambda lv: post(lv, b"instances=1", "application/x-www-form-urlencoded"), "Content-Type"),
    ("content-type/html", 415, lambda lv: post(lv, b"<p>", "text/html"), "Content-Type"),
    ("content-type/octet-stream", 415, lambda lv: post(lv, b"\x00\x01", "application/octet-stream"),
     "Content-Type"),
    ("content-type/text-json", 415, lambda lv: post(lv, b"{}", "text/json"), "Content-Type"),
    # ---- bad Host headers (DNS rebinding)
    ("host/evil-name", 400, lambda lv: _with_host(lv, "evil.example"), "Host"),
    ("host/evil-name-and-port", 400, lambda lv: _with_host(lv, "evil.example:8000"), "Host"),
    ("host/localhost-suffix", 400, lambda lv: _with_host(lv, "localhost.evil.example"), "Host"),
    ("host/rebinding-service", 400, lambda lv: _with_host(lv, "127.0.0.1.nip.io"), "Host"),
    ("host/other-ipv6", 400, lambda lv: _with_host(lv, "[::2]"), "Host"),
    ("host/lan-address", 400, lambda lv: _with_host(lv, "10.0.0.1"), "Host"),
    ("host/missing-http10", 400, lambda lv: _with_host(lv, None), "Host"),
    ("host/evil-with-body", 400,
     lambda lv: _with_host(lv, "evil.example", json.dumps({"instances": [OK]}).encode()), "Host"),
    # ---- stalled bodies and headers
    ("stalled/content-length-body", 408, lambda lv: raw(lv, _http("POST", "/v1/predict", {
        "Host": "localhost", "Content-Type": "application/json",
        "Content-Length": "100"}, b'{"inst')), None),
    ("stalled/chunked-body", 408, lambda lv: raw(lv, _http("POST", "/v1/predict", {
        "Host": "localhost", "Content-Type": "application/json",
        "Transfer-Encoding": "chunked"}, b"5\r\n{\"ins\r\n")), None),
    ("stalled/trickled-body", 408, lambda lv: raw(lv, _http("POST", "/v1/predict", {
        "Host": "localhost", "Content-Type": "application/json", "Content-Length": "100"}),
        trickle=b"{" * 40, every=0.1), None),
    ("stalled/half-headers", 408, lambda lv: raw(
        lv, b"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Le"), None),
    ("stalled/trickled-headers", 408, lambda lv: raw(
        lv, b"GET /healthz HTTP/1.1\r\n", trickle=b"X-A: " + b"b" * 35, every=0.1), None),
    # ---- not HTTP at all: uvicorn's parser refuses, still with a JSON body
    ("malformed/request-line", 400, lambda lv: raw(lv, b"GARBAGE\r\n\r\n"), None),
    ("malformed/header-without-colon", 400, lambda lv: raw(
        lv, b"GET /healthz HTTP/1.1\r\nHost localhost\r\n\r\n"), None),
    ("malformed/bad-chunk-size", 400, lambda lv: raw(lv, _http("POST", "/v1/predict", {
        "Host": "localhost", "Content-Type": "application/json",
        "Transfer-Encoding": "chunked"}, b"zz\r\n{}\r\n0\r\n\r\n")), None),
    # ---- bad multipart
    ("multipart/no-boundary", 400, lambda lv: multipart_raw(lv, b"--x\r\n", None), None),
    ("multipart/wrong-boundary", 400, lambda lv: multipart_raw(
        lv, b'--other\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
            b"1,2\r\n--other--\r\n", "expected"), None),
    ("multipart/truncated", 422, lambda lv: multipart_raw(
        lv, b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n', "b"),
     None),
    ("multipart/no-file-field", 422, lambda lv: upload(lv, data={"x": "1"},
                                                       files={"other": ("a.csv", b"1")}),
     "file"),
    ("multipart/file-as-text-field", 422, lambda lv: upload(lv, data={"file": _row(OK)},
                                                            files={"z": ("a", b"")}), "file"),
    ("multipart/two-files", 400, lambda lv: upload(lv, files=[
        ("file", ("a.csv", _row(OK).encode())), ("file", ("b.csv", _row(OK).encode()))]), None),
    ("multipart/too-many-fields", 400, lambda lv: upload(
        lv, data={f"f{k}": "1" for k in range(20)}, files={"file": ("a.csv", b"1")}), None),
    ("multipart/not-utf8-file", 400, lambda lv: upload(
        lv, files={"file": ("a.csv", b"\xff\xfe\x00\x81")}), None),
    ("multipart/empty-file", 422, lambda lv: upload(lv, files={"file": ("a.csv", b"")}), None),
    ("multipart/wrong-length-file", 422, lambda lv: upload(
        lv, files={"file": ("a.csv", _row(OK[:5]).encode())}), "line 1"),
]
#: Refusals that come from a deadline: they must also come in time.
TIMED = {"stalled/content-length-body": BODY_TIMEOUT, "stalled/chunked-body": BODY_TIMEOUT,
         "stalled/trickled-body": BODY_TIMEOUT, "stalled/half-headers": HEADER_TIMEOUT,
         "stalled/trickled-headers": HEADER_TIMEOUT, "oversize/lying-content-length": 0.0,
         "oversize/expect-100-continue": 0.0}


def assert_alive(live: Live) -> None:
    """Health and a real prediction still answered, on new connections."""
    with httpx.Client(base_url=live.base, timeout=10) as h:
        assert h.get("/healthz").json() == {"status": "ok"}
        r = h.post("/v1/predict", json={"instances": [OK]})
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 1


@pytest.mark.parametrize("status,send,field", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_input_is_a_json_4xx_and_the_server_keeps_answering(
        live: Live, request: pytest.FixtureRequest, status: int,
        send: Callable[[Live], Reply], field: str | None) -> None:
    case = request.node.callspec.id
    reply = send(live)
    assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
    assert reply.status == status, (reply.status, reply.body[:300])
    doc = json.loads(reply.body)
    assert isinstance(doc, dict) and set(doc) == {"detail", "field"}, doc
    assert isinstance(doc["detail"], str) and doc["detail"] and "\n" not in doc["detail"]
    assert len(doc["detail"]) < 400, doc["detail"]
    if field is not None:
        assert doc["field"] == field, doc
    if case in TIMED:
        assert reply.elapsed < TIMED[case] + SLACK, reply.elapsed
    assert_alive(live)


def test_case_classes_cover_the_issue() -> None:
    classes: dict[str, int] = {}
    for case_id, *_ in CASES:
        classes[case_id.split("/")[0]] = classes.get(case_id.split("/")[0], 0) + 1
    assert len(CASES) >= 30 and len(classes) >= 10 and min(classes.values()) >= 3, classes


# --------------------------------------------------------------------------- beyond the cases


def test_idle_connections_are_closed(live: Live) -> None:
    """A connection that sends nothing, or nothing after a response, is closed in time; one
    that stalls in the headers of its second request gets a 408."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        t0 = time.monotonic()
        assert _read_response(s, t0 + HEADER_TIMEOUT + SLACK) == b""  # closed, nothing said
        assert time.monotonic() - t0 < HEADER_TIMEOUT + SLACK
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        s.sendall(_http("GET", "/healthz", {"Host": "localhost"}))
        t0 = time.monotonic()
        assert _parse_raw(_read_response(s, t0 + 5)).status == 200
        assert _read_response(s, t0 + 1 + SLACK) == b""  # keep-alive timeout: closed
        assert time.monotonic() - t0 < 1 + SLACK
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        s.sendall(_http("GET", "/healthz", {"Host": "localhost"}))
        t0 = time.monotonic()
        assert _parse_raw(_read_response(s, t0 + 5)).status == 200
        s.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # the next request, stalled mid-headers
        reply = _parse_raw(_read_response(s, t0 + 1 + HEADER_TIMEOUT + SLACK))
        assert reply.status == 408 and json.loads(reply.body)["field"] is None
        assert time.monotonic() - t0 < 1 + HEADER_TIMEOUT + SLACK


def test_schema_lists_predict_and_its_refusals(live: Live) -> None:
    schema = httpx.get(f"{live.base}/openapi.json", timeout=10).json()
    predict = schema["paths"]["/v1/predict"]["post"]
    assert {"400", "408", "413", "415", "422", "503"} <= set(predict["responses"])
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert set(error["properties"]) == {"detail", "field"}
    assert set(predict["requestBody"]["content"]) == {"application/json", "multipart/form-data",
                                                      "text/csv"}


def test_every_response_has_the_security_headers(live: Live) -> None:
    with httpx.Client(base_url=live.base, timeout=10) as h:
        replies = [h.get("/"), h.get("/static/app.js"), h.get("/missing"), h.get("/v1/model"),
                   h.post("/v1/predict", content=b"x", headers={"Content-Type": "text/plain"}),
                   h.get("/healthz", headers={"Host": "evil.example"})]
    for r in replies:
        assert r.headers["referrer-policy"] == "no-referrer", r.url
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in r.headers["content-security-policy"]


def test_allow_host_widens_the_list(model_dir: Path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(model_dir, allow_hosts=["model.example", "*.lan"])
    for host, status in (("model.example", 200), ("a.b.lan", 200), ("localhost:9", 200),
                         ("[::1]:8000", 200), ("evil.example", 400), ("lan", 400)):
        with TestClient(app, base_url=f"http://{host}") as c:
            assert c.get("/healthz").status_code == status, host
    with TestClient(create_app(model_dir, allow_hosts=["*"]), base_url="http://any.example") as c:
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize("kwargs", [{"allow_hosts": ["bad host"]}, {"body_timeout": 0},
                                    {"body_timeout": float("nan")}, {"max_body_bytes": 0},
                                    {"max_instances": True}])
def test_create_app_refuses_bad_limits(model_dir: Path, kwargs: dict[str, Any]) -> None:
    from tsformer.errors import TsformerError

    with pytest.raises(TsformerError) as e:
        create_app(model_dir, **kwargs)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- schemathesis


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(model_dir: Path, tmp_path: Path) -> None:
    """A bounded schemathesis run (loopback only, 100 examples per operation, fixed seed)
    against ``tsformer serve`` itself: zero 5xx."""
    pytest.importorskip("schemathesis")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_PROXY": "*", "no_proxy": "*"}
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "tsformer", "serve", str(model_dir),
                             "--port", "0", "--body-timeout", "5"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert m, line
        url = m.group(0)
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
             "--checks", "not_a_server_error", "--max-examples", "100", "--seed", "20261202",
             "--workers", "1", "--continue-on-failure", "--request-timeout", "20"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
        summary = run.stdout[-3000:]
        generated = re.search(r"(\d+) generated", run.stdout)
        assert generated and int(generated.group(1)) >= 100, summary
        assert run.returncode == 0, summary
        assert "Server error" not in run.stdout, summary
        with httpx.Client(base_url=url, timeout=10) as h:
            assert h.get("/healthz").json() == {"status": "ok"}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0
