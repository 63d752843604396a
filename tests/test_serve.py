"""The prediction server: answers equal the model's own, and every limit is a 4xx that leaves
the server answering."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from fastapi.testclient import TestClient  # noqa: E402

from tsformer.config import DataShape, resolve  # noqa: E402
from tsformer.errors import DataError  # noqa: E402
from tsformer.inference import predict_logits  # noqa: E402
from tsformer.model_dir import SAMPLE_NAME, demo_sample, load_model_dir, save_model_dir  # noqa: E402
from tsformer.serve import create_app  # noqa: E402
from tsformer.serve.batcher import Batcher  # noqa: E402
from tsformer.serve.middleware import BodyLimitMiddleware  # noqa: E402
from tsformer.serve.parsing import RequestError  # noqa: E402

T = 64
MAX_BODY = 64 * 1024
MAX_INSTANCES = 16


def make_model_dir(path: Path, *, n_channels: int = 1, n_timepoints: int = T,
                   sample: bool = True, metrics: dict[str, Any] | None = None) -> Path:
    """A small untrained seed model directory, shaped like the CLI's run directories."""
    cfg = resolve("seed", DataShape(n_channels, n_timepoints, 2), classes=[-1, 1],
                  data={"name": "FordA"})
    torch.manual_seed(0)
    m = cfg.build()
    extra: dict[str, Any] = {}
    if metrics is not None:
        extra["metrics.json"] = json.dumps(metrics)
    if sample:
        X_test, y_test = split_for_sample(n_channels, n_timepoints)
        extra[SAMPLE_NAME] = demo_sample(X_test, y_test, n=6)
    return save_model_dir(path, m, cfg, extra_files=extra)


@functools.lru_cache(maxsize=4)
def split_for_sample(n_channels: int, n_timepoints: int) -> tuple[np.ndarray, np.ndarray]:
    """FordA's test split cut to ``n_timepoints`` when it is on this machine, else noise."""
    if n_channels == 1:
        try:
            from tsformer.data import load_dataset

            s = load_dataset("FordA", download=False, progress=False)
            return s.X_test[:40, :, :n_timepoints], s.y_test[:40]
        except Exception:  # no offline FordA: synthetic examples will do
            pass
    rng = np.random.default_rng(1)
    X = rng.standard_normal((12, n_channels, n_timepoints)).astype(np.float32)
    return X, np.array([-1, 1, 1] * 4)


def direct_proba(model_dir: Path, X: np.ndarray) -> np.ndarray:
    model, cfg = load_model_dir(model_dir)
    return torch.softmax(predict_logits(model, X, amp=cfg.train.amp), 1).numpy()


def series(n: int, n_channels: int = 1, n_timepoints: int = T, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n_channels, n_timepoints)).astype(
        np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("serve") / "model",
                          metrics={"test": {"accuracy": 0.875, "loss": float("nan")}})


def local(app: Any) -> TestClient:
    """A TestClient that reaches the app by a loopback name (the Host allow-list refuses
    TestClient's default ``testserver``)."""
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def client(model_dir: Path):
    app = create_app(model_dir, max_body_bytes=MAX_BODY, max_instances=MAX_INSTANCES)
    with local(app) as c:
        yield c


def assert_alive(client: TestClient) -> None:
    """The server still answers, health and a real prediction, after a refusal."""
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.post("/v1/predict", json={"instances": [[0.5] * T]})
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- happy paths


def test_health_model_info_and_schema(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.head("/healthz").status_code == 200
    info = client.get("/v1/model").json()
    assert info["preset"] == "seed" and info["classes"] == [-1, 1]
    assert info["input"]["n_channels"] == 1 and info["input"]["n_timepoints"] == T
    assert info["metrics"]["test"] == {"accuracy": 0.875, "loss": None}  # NaN made JSON-safe
    assert info["card"]["title"].startswith("tsformer seed model on FordA")
    assert info["sample"] == {"available": True, "n": 6, "split": "test"}
    assert info["limits"] == {"max_body_bytes": MAX_BODY, "max_instances": MAX_INSTANCES,
                              "body_timeout_s": 20.0}
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/model", "/v1/sample", "/healthz"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/v1/predict"]["post"]["requestBody"][
        "content"]
    assert client.get("/docs").status_code == 404  # Swagger UI would need a CDN


def test_json_predictions_equal_direct_model_output(client: TestClient, model_dir: Path) -> None:
    X = series(5)
    # univariate series as flat lists and as one-channel lists: same meaning
    instances = [X[i, 0].tolist() if i % 2 else X[i].tolist() for i in range(len(X))]
    r = client.post("/v1/predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = direct_proba(model_dir, X)
    got = np.array([[p["probabilities"]["-1"], p["probabilities"]["1"]]
                    for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert [p["label"] for p in body["predictions"]] == [[-1, 1][k] for k in expected.argmax(1)]
    assert body["classes"] == [-1, 1]


def test_csv_upload_and_text_csv_equal_json(client: TestClient, model_dir: Path) -> None:
    X = series(3, seed=3)
    expected = direct_proba(model_dir, X)
    header = ",".join(f"t{k}" for k in range(T))
    plain = "\n".join(",".join(repr(float(v)) for v in x[0]) for x in X)
    labelled = "\n".join("1," + ",".join(repr(float(v)) for v in x[0]) for x in X)
    for text in (plain, f"{header}\n{plain}\n", "label," + header + "\n" + labelled):
        r = client.post("/v1/predict", files={"file": ("x.csv", text.encode(), "text/csv")})
        assert r.status_code == 200, r.text
        got = np.array([[p["probabilities"]["-1"], p["probabilities"]["1"]]
                        for p in r.json()["predictions"]])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    tsv = plain.replace(",", "\t")
    r = client.post("/v1/predict", content=tsv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3


def test_concurrent_requests_are_batched_without_mixing_answers(client: TestClient,
                                                                 model_dir: Path) -> None:
    X = series(24, seed=7)
    expected = direct_proba(model_dir, X)
    results: dict[int, list[float]] = {}
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(k, len(X), 6):
            r = client.post("/v1/predict", json={"instances": [X[i, 0].tolist()]})
            if r.status_code != 200:
                errors.append(r.text)
                return
            results[i] = list(r.json()["predictions"][0]["probabilities"].values())

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = np.array([results[i] for i in range(len(X))])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_multichannel_model(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "mc", n_channels=3, n_timepoints=16, sample=False)
    X = series(2, n_channels=3, n_timepoints=16)
    with local(create_app(d)) as c:
        r = c.post("/v1/predict", json={"instances": X.tolist()})
        assert r.status_code == 200, r.text
        got = np.array([list(p["probabilities"].values()) for p in r.json()["predictions"]])
        np.testing.assert_allclose(got, direct_proba(d, X), rtol=1e-5, atol=1e-6)
        r = c.post("/v1/predict", json={"instances": [X[0, 0].tolist()]})
        assert r.status_code == 422 and "expects 3 channels" in r.json()["detail"]
        r = c.post("/v1/predict", json={"instances": [X[0, :2].tolist()]})
        assert r.status_code == 422 and "has 2 channels but the model expects 3" in r.text
        row = ",".join(str(v) for v in X[1].reshape(-1).tolist())  # channel after channel
        r = c.post("/v1/predict", content=row, headers={"Content-Type": "text/csv"})
        assert r.status_code == 200
        np.testing.assert_allclose(list(r.json()["predictions"][0]["probabilities"].values()),
                                   got[1], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- limits

_ok = [0.5] * T
_JSON_CASES: list[tuple[str, bytes, int, str, str | None]] = [
    # id, body, status, words in detail, field
    ("too-many-series", json.dumps({"instances": [_ok] * (MAX_INSTANCES + 1)}).encode(), 413,
     f"over the limit of {MAX_INSTANCES}", "instances"),
    ("too-short", json.dumps({"instances": [_ok, [1.0] * (T - 1)]}).encode(), 422,
     f"has {T - 1} time points but the model expects {T}", "instances[1]"),
    ("too-long", json.dumps({"instances": [[1.0] * (T + 1)]}).encode(), 422,
     "never resampled", "instances[0]"),
    ("two-channels", json.dumps({"instances": [[_ok, _ok]]}).encode(), 422,
     "has 2 channels but the model expects 1", "instances[0]"),
    ("nan", ('{"instances": [[' + "1," * 3 + "NaN" + ",1" * (T - 4) + "]]}").encode(), 422,
     "NaN or infinite", "instances[0][3]"),
    ("infinity", ('{"instances": [[[' + "-Infinity" + ",1" * (T - 1) + "]]]}").encode(), 422,
     "NaN or infinite", "instances[0][0][0]"),
    ("overflow-float64", ('{"instances": [[' + "1e999" + ",1" * (T - 1) + "]]}").encode(), 422,
     "NaN or infinite", "instances[0][0]"),
    ("huge-int", ('{"instances": [[' + "1" + "0" * 400 + ",1" * (T - 1) + "]]}").encode(), 422,
     "NaN or infinite", "instances[0][0]"),
    ("overflow-float32", json.dumps({"instances": [[1e39] + _ok[1:]]}).encode(), 422,
     "float32 range", "instances[0][0]"),
    ("string", json.dumps({"instances": [_ok[:5] + ["1.5"] + _ok[6:]]}).encode(), 422,
     'is a string ("1.5"), not a number', "instances[0][5]"),
    ("boolean", json.dumps({"instances": [[True] + _ok[1:]]}).encode(), 422,
     "is a boolean (true), not a number", "instances[0][0]"),
    ("null", json.dumps({"instances": [[None] + _ok[1:]]}).encode(), 422,
     "is null, not a number; missing values", "instances[0][0]"),
    ("object-value", json.dumps({"instances": [[{"v": 1}] + _ok[1:]]}).encode(), 422,
     "is an object, not a number", "instances[0][0]"),
    ("series-not-list", json.dumps({"instances": ["1,2,3"]}).encode(), 422,
     "is a string", "instances[0]"),
    ("mixed", json.dumps({"instances": [[1.0, [1.0]]]}).encode(), 422,
     "mixes numbers and lists", "instances[0]"),
    ("empty-instances", b'{"instances": []}', 422, "instances is empty", "instances"),
    ("empty-series", b'{"instances": [[]]}', 422, "instances[0] is empty", "instances[0]"),
    ("empty-channel", b'{"instances": [[[]]]}', 422, "instances[0][0] is empty",
     "instances[0][0]"),
    ("instances-not-list", b'{"instances": 3}', 422, "must be a list of series", "instances"),
    ("missing-instances", b'{"series": []}', 422, "unknown field 'series'", "series"),
    ("no-instances", b"{}", 422, "has no 'instances' field", "instances"),
    ("not-object", b"[[1, 2]]", 422, "send a JSON object", None),
    ("empty-body", b"", 400, "body is empty", None),
    ("blank-body", b"  \n", 400, "body is empty", None),
    ("bad-json", b'{"instances": [[1, 2,]]}', 400, "not valid JSON", None),
    ("deep-json", b"[" * 30_000 + b"]" * 30_000, 400, "nests JSON too deeply", None),
    ("not-utf8", b'{"instances": [[\xff]]}', 400, "not", None),
]


@pytest.mark.parametrize("body,status,words,field", [c[1:] for c in _JSON_CASES],
                         ids=[c[0] for c in _JSON_CASES])
def test_json_limits(client: TestClient, body: bytes, status: int, words: str,
                     field: str | None) -> None:
    r = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert r.json()["field"] == field
    assert_alive(client)


def _csv(*rows: list[Any]) -> bytes:
    return "\n".join(",".join(str(v) for v in row) for row in rows).encode()


_CSV_CASES: list[tuple[str, bytes, int, str]] = [
    ("short-row", _csv(_ok, _ok[:10]), 422, "line 2 has 10 values but the model expects 64"),
    ("word", _csv(_ok, _ok[:3] + ["abc"] + _ok[4:]), 422,
     "line 2, column 4: non-numeric value 'abc'"),
    ("empty-cell", _csv(_ok[:3] + [""] + _ok[4:]), 422, "line 1, column 4 is empty"),
    ("nan-cell", _csv(["x"] + _ok[:3] + ["nan"] + _ok[4:]), 422,
     "line 1, column 5: value nan is missing or infinite"),
    ("no-rows", b"\n\n", 422, "holds no series"),
    ("header-only", b"a,b,c\n", 422, "header line but no series"),
    ("too-many-rows", _csv(*[_ok] * (MAX_INSTANCES + 1)), 413, "over the limit of 16"),
    ("not-utf8", b"\xff\xfe\x00", 400, "not UTF-8"),
]


@pytest.mark.parametrize("body,status,words", [c[1:] for c in _CSV_CASES],
                         ids=[c[0] for c in _CSV_CASES])
def test_csv_limits(client: TestClient, body: bytes, status: int, words: str) -> None:
    r = client.post("/v1/predict", files={"file": ("x.csv", body, "text/csv")})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    r = client.post("/v1/predict", content=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == status and words in r.json()["detail"]
    assert_alive(client)


def test_request_shape_refusals(client: TestClient) -> None:
    r = client.post("/v1/predict", content=b'{"instances": [[1]]}',
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and "unsupported Content-Type" in r.json()["detail"]
    r = client.post("/v1/predict", content=b"1,2")
    assert r.status_code == 415 and "'(none)'" in r.json()["detail"]
    r = client.post("/v1/predict", content=b"1,2", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["field"] == "Content-Type"  # as docs/serve.md says
    r = client.post("/v1/predict", files={"other": ("x.csv", b"1,2", "text/csv")})
    assert r.status_code == 422 and r.json()["field"] == "file"
    r = client.post("/v1/predict", content=b"--x\r\n", headers={
        "Content-Type": "multipart/form-data"})  # no boundary
    assert 400 <= r.status_code < 500
    assert client.get("/v1/predict").status_code == 405
    assert_alive(client)


def test_body_limit_content_length(client: TestClient) -> None:
    body = json.dumps({"instances": [[0.123456789] * T] * 15}).encode()
    body += b" " * (MAX_BODY + 1 - len(body))
    r = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and f"{MAX_BODY + 1} bytes, over the limit" in r.text
    r = client.post("/v1/predict", files={"file": ("x.csv", b"1," * MAX_BODY, "text/csv")})
    assert r.status_code == 413
    assert_alive(client)


def test_body_limit_chunked(client: TestClient) -> None:
    def chunks():
        for _ in range(MAX_BODY // 1024 + 4):
            yield b" " * 1024

    r = client.post("/v1/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    assert_alive(client)


def test_body_limit_middleware_stops_reading_and_never_calls_the_app() -> None:
    called, received, sent = [], [], []

    async def app(scope, receive, send) -> None:
        called.append(scope)

    async def receive() -> dict[str, Any]:
        received.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}  # endless

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    mw = BodyLimitMiddleware(app, max_bytes=10_000, drain_bytes=5_000)
    scope = {"type": "http", "method": "POST", "path": "/v1/predict",
             "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(mw(scope, receive, send))
    # 11 chunks to pass the limit, then the rest read and discarded up to the drain bound
    assert not called and len(received) == 11 + 6
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    sent.clear()
    bad = {**scope, "headers": [(b"content-length", b"12abc")]}
    asyncio.run(mw(bad, receive, send))
    assert sent[0]["status"] == 400 and not called


def test_busy_server_answers_503_not_a_queue_without_bound() -> None:
    gate = threading.Event()

    class Slow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gate.wait(5)
            return torch.zeros(len(x), 2)

    b = Batcher(Slow(), max_batch=8, batch_size=8, max_pending=4)
    first = b.submit(np.zeros((3, 1, 4), np.float32))
    with pytest.raises(RequestError) as e:
        b.submit(np.zeros((2, 1, 4), np.float32))
    assert e.value.status == 503
    gate.set()
    assert first.result(5).shape == (3, 2)
    assert b.submit(np.zeros((2, 1, 4), np.float32)).result(5).shape == (2, 2)
    b.close()


# --------------------------------------------------------------------------- demo page, sample


def test_demo_page_assets_are_all_local(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    import re

    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(u.startswith("/") for u in refs), refs
    for u in refs:
        assert client.get(u).status_code == 200, u
    for name in ("app.js", "style.css"):
        text = client.get(f"/static/{name}").text
        urls = set(re.findall(r"https?://[^\s\"')]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, urls  # an XML namespace, not a fetch


def test_sample_endpoint_and_fallback_without_sample(client: TestClient, model_dir: Path,
                                                     tmp_path: Path) -> None:
    s = client.get("/v1/sample").json()
    assert len(s["series"]) == len(s["labels"]) == 6 and s["split"] == "test"
    assert sorted(set(s["labels"])) == [-1, 1]
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / SAMPLE_NAME).unlink()
    (bare / "metrics.json").unlink()
    with local(create_app(bare)) as c:
        assert c.get("/v1/model").json()["sample"]["available"] is False
        assert c.get("/v1/model").json()["metrics"] is None
        r = c.get("/v1/sample")
        assert r.status_code == 404 and "no usable sample.json" in r.json()["detail"]
        assert c.get("/").status_code == 200
    (bare / SAMPLE_NAME).write_text('{"series": [[1, 2]], "labels": [1]}')  # wrong length
    with local(create_app(bare)) as c:
        assert c.get("/v1/sample").status_code == 404


def test_demo_sample() -> None:
    X = np.random.default_rng(0).standard_normal((30, 2, 5)).astype(np.float32)
    y = np.array(["a"] * 27 + ["b"] * 3)
    doc = json.loads(demo_sample(X, y, n=6))
    assert doc["format"] == "tsformer-sample" and doc["split"] == "test"
    assert doc["labels"].count("b") == 3 and len(doc["labels"]) == 6  # every class shows up
    picked = [i for i in range(30) if any(
        np.array_equal(np.asarray(s, np.float32), X[i]) for s in doc["series"])]
    assert len(picked) == 6  # values round-trip float32 exactly
    for s, label in zip(doc["series"], doc["labels"], strict=True):  # each with its label
        i = next(i for i in range(30) if np.array_equal(np.asarray(s, np.float32), X[i]))
        assert y[i] == label
    doc = json.loads(demo_sample(X[:, 0], y, n=2))  # 2-D: univariate
    first = doc["series"][0][0]
    assert np.array_equal(np.asarray(first, np.float32), X[0, 0])
    assert len(json.loads(demo_sample(X[:3], y[:3], n=8))["labels"]) == 3  # n beyond the data
    with pytest.raises(DataError, match="one label per series"):
        demo_sample(X, y[:-1])


# --------------------------------------------------------------------------- CLI


def test_cli_serve_registered_and_errors_are_one_line(model_dir: Path, capsys, monkeypatch
                                                      ) -> None:
    from tsformer import cli

    args = cli.build_parser().parse_args(["serve", str(model_dir)])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    assert "serve" in cli.COMMANDS
    assert cli.main(["serve", str(model_dir / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert cli.main(["serve", str(model_dir), "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot listen on 127.0.0.1" in err
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)
    assert cli.main(["serve", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "install tsformer[serve]" in err


def test_live_server_chunked_upload_and_bad_content_length(model_dir: Path) -> None:
    """Over a real socket: uvicorn, chunked transfer encoding, a lying header."""
    import httpx2 as httpx

    from tsformer.serve.server import make_server

    app = create_app(model_dir, max_body_bytes=MAX_BODY)
    server = make_server(app, log_level="error")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            base = f"http://127.0.0.1:{port}"

            def chunks():
                for _ in range(MAX_BODY // 4096 + 2):
                    yield b" " * 4096

            with httpx.Client(base_url=base, timeout=10) as h:
                r = h.post("/v1/predict", content=chunks(),
                           headers={"Content-Type": "application/json"})
                assert r.status_code == 413 and "over the limit" in r.json()["detail"]
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                    raw.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\n"
                                b"Content-Length: 99999999999\r\n"
                                b"Content-Type: application/json\r\n\r\n{}")
                    assert raw.recv(4096).startswith(b"HTTP/1.1 413 ")
                assert h.get("/healthz").json() == {"status": "ok"}
                r = h.post("/v1/predict", json={"instances": [[0.0] * T]})
                assert r.status_code == 200
                assert h.get("/healthz", headers={"Host": "rebound.example"}).status_code == 400
        finally:
            server.should_exit = True
            thread.join(10)


def _start_cli_server(model_dir: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``tsformer serve --port 0`` in a subprocess, and the URL from its ready line."""
    proc = subprocess.Popen([sys.executable, "-m", "tsformer", "serve", str(model_dir),
                             "--port", "0", *extra], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"on (http://127\.0\.0\.1:(\d+))/ ", line)
    if not m:
        proc.kill()
        pytest.fail(f"no ready line: {line!r} {proc.communicate(timeout=10)[1]!r}")
    return proc, m.group(1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_serve_is_ready_when_it_says_and_stops_cleanly(model_dir: Path,
                                                          sig: signal.Signals) -> None:
    """The "serving on" line comes once the socket accepts; a signal lets the request in
    flight finish, then one "stopped" line and exit 0."""
    proc, url = _start_cli_server(model_dir, "--body-timeout", "10")
    try:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # ready: accepts
            body = json.dumps({"instances": [[0.5] * T]}).encode()
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                      + body[:10])
            time.sleep(0.3)  # the request is in flight: headers in, body coming
            proc.send_signal(sig)
            time.sleep(0.3)
            s.sendall(body[10:])
            answer = b""
            while b"predictions" not in answer:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert err.strip().splitlines() == [f"tsformer: serve stopped ({sig.name}) after 1 request"]


def test_cli_serve_flags(model_dir: Path, capsys) -> None:
    from tsformer import cli

    args = cli.build_parser().parse_args(["serve", str(model_dir), "--allow-host", "Model.LAN",
                                          "--allow-host", "::1", "--body-timeout", "2.5"])
    assert args.allow_host == ["model.lan", "[::1]"] and args.body_timeout == 2.5
    assert (args.header_timeout, args.keep_alive_timeout) == (10.0, 5.0)
    for bad in (["--body-timeout", "0"], ["--header-timeout", "nan"],
                ["--keep-alive-timeout", "-1"], ["--allow-host", "a b"]):
        with pytest.raises(SystemExit) as e:
            cli.build_parser().parse_args(["serve", str(model_dir), *bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert bad[0] in err


def test_cli_serve_ctrl_c_while_loading_is_a_stop_not_an_error(model_dir: Path, capsys,
                                                               monkeypatch) -> None:
    import tsformer.serve as serve
    from tsformer import cli

    def interrupted(*_a: Any, **_k: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "create_app", interrupted)
    assert cli.main(["serve", str(model_dir)]) == 0
    assert capsys.readouterr().err == "tsformer: serve stopped before it started serving\n"
