"""The demo page in a real browser: headless Chromium (Debian's ``chromium``) via Playwright.

Playwright drives the system browser (``executable_path``), so no ``playwright install``
download is needed; the test skips when either is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api", reason="python package playwright missing")

from tsformer.config import DataShape, resolve  # noqa: E402
from tsformer.model_dir import SAMPLE_NAME, demo_sample, save_model_dir  # noqa: E402
from tsformer.serve import create_app  # noqa: E402

#: A real browser and a live server: seconds per test, so outside the fast lane.
pytestmark = pytest.mark.slow

T = 64

CHROMIUM = os.environ.get("TSFORMER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as e:
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


def _serve(model_dir: Path) -> Iterator[str]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(model_dir), log_level="error"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small seed model directory with a sample.json, as the CLI's train writes it."""
    import numpy as np
    import torch

    cfg = resolve("seed", DataShape(1, T, 2), classes=[-1, 1], data={"name": "FordA"})
    torch.manual_seed(0)
    m = cfg.build()
    X_test = np.random.default_rng(1).standard_normal((12, 1, T)).astype(np.float32)
    extra = {SAMPLE_NAME: demo_sample(X_test, np.array([-1, 1] * 6), n=6)}
    return save_model_dir(tmp_path_factory.mktemp("demo") / "model", m, cfg, extra_files=extra)


@pytest.fixture(scope="module")
def base_url(model_dir: Path) -> Iterator[str]:
    yield from _serve(model_dir)


def _page(browser, base_url: str):
    page = browser.new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("request", lambda r: None if r.url.startswith(base_url) or r.url.startswith("data:")
            else failed.append(f"external {r.url}"))
    page.goto(base_url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    return page, failed


def test_the_page_shows_a_prediction_of_the_first_example_on_load(browser, base_url: str
                                                                  ) -> None:
    import httpx2 as httpx

    sample = httpx.get(f"{base_url}/v1/sample").json()
    expected = httpx.post(f"{base_url}/v1/predict",
                          json={"instances": [sample["series"][0]]}).json()["predictions"][0]
    page, failed = _page(browser, base_url)
    try:
        page.wait_for_selector("#result[data-state=done]", timeout=15_000)  # no click
        assert page.text_content("#predicted-label") == str(expected["label"])
        assert page.text_content("#true-label") == str(sample["labels"][0])
        assert page.locator("#plot svg polyline").count() == 1
        assert not failed
    finally:
        page.close()


def test_example_prediction_matches_api(browser, base_url: str) -> None:
    import httpx2 as httpx

    sample = httpx.get(f"{base_url}/v1/sample").json()
    k = 2
    expected = httpx.post(f"{base_url}/v1/predict",
                          json={"instances": [sample["series"][k]]}).json()["predictions"][0]
    page, failed = _page(browser, base_url)
    try:
        assert "seed" in page.text_content("#card-summary")
        page.select_option("#example-select", str(k))
        page.click("#predict-example")
        page.wait_for_selector("#result[data-state=done]", timeout=15_000)
        assert page.text_content("#predicted-label") == str(expected["label"])
        assert page.text_content("#true-label") == str(sample["labels"][k])
        assert page.locator("#plot svg polyline").count() == 1
        best = page.locator(".bar-row.best")
        assert best.get_attribute("data-class") == str(expected["label"])
        p = expected["probabilities"][str(expected["label"])]
        assert best.locator(".bar-value").text_content() == f"{100 * p:.1f}%"
        # a refusal is shown as the server's message, and the page keeps working
        page.fill("#paste-input", "1, 2, 3")
        page.click("#predict-paste")
        page.wait_for_selector("#result[data-state=error]", timeout=15_000)
        assert f"expects {T}" in page.text_content("#error")
        page.fill("#paste-input", " ".join(str(v) for v in sample["series"][k][0]))
        page.click("#predict-paste")
        page.wait_for_selector("#result[data-state=done]", timeout=15_000)
        assert page.text_content("#predicted-label") == str(expected["label"])
        assert failed == []
    finally:
        page.close()


def test_csv_upload_and_no_sample_fallback(browser, model_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / SAMPLE_NAME).unlink()
    csv = tmp_path / "two.csv"
    csv.write_text("\n".join(",".join(str(0.1 * i * j) for j in range(T)) for i in (1, 2)))
    for url in _serve(bare):
        page, failed = _page(browser, url)
        try:
            assert page.is_visible("#no-sample") and not page.is_visible("#example-select")
            page.set_input_files("#csv-file", str(csv))
            page.click("#predict-csv")
            page.wait_for_selector("#result[data-state=done]", timeout=15_000)
            assert page.locator("#instance-select option").count() == 2
            assert page.text_content("#predicted-label") in ("-1", "1")
            assert failed == []
        finally:
            page.close()


def test_the_prediction_gets_an_attribution_band_from_explain(browser, base_url: str) -> None:
    """After a prediction the page asks /v1/explain and draws one band cell per time step
    behind the series; when the explanation is refused there is no band, only a note."""
    page, failed = _page(browser, base_url)
    try:
        page.wait_for_selector("#result[data-state=done]", timeout=15_000)
        page.wait_for_selector("#plot[data-explained=true] svg g.attribution rect",
                               timeout=30_000)
        assert page.locator("#plot svg g.attribution rect").count() == T
        assert page.locator("#plot svg polyline").count() == 1  # the series, over the band
        assert "Deleting its top 10% of steps" in page.text_content("#explain-note")
        assert not failed
    finally:
        page.close()
    page = browser.new_page()
    page.route("**/v1/explain*", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"detail": "the server is busy explaining other requests", "field": null}'))
    try:
        page.goto(base_url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        page.wait_for_function("document.querySelector('#explain-note').textContent"
                               ".startsWith('No explanation')", timeout=15_000)
        assert page.text_content("#predicted-label")
        assert page.locator("#plot svg g.attribution").count() == 0
        assert page.locator("#plot svg polyline").count() == 1
    finally:
        page.close()
