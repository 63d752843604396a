"""Explanations: attributions of the input's shape for every kind of model, that land on the
evidence where it is known, a deletion test that tells faithful attributions from random ones,
and the same contract through the estimator, the CLI and the server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run
from torch import nn

pytest.importorskip("captum")

from tsformer import TransformerClassifier  # noqa: E402
from tsformer.config import DataShape, resolve  # noqa: E402
from tsformer.errors import ConfigError, DataError  # noqa: E402
from tsformer.explain import (  # noqa: E402
    delete_steps,
    deletion_test,
    explain,
    ignores_scale,
    occlusion_windows,
)
from tsformer.model_dir import save_model_dir  # noqa: E402
from tsformer.models import Ensemble, ZNormalized  # noqa: E402

METHODS = ("integrated_gradients", "occlusion")
#: The synthetic set: noise, and in class 1 a bump over steps WINDOW of T.
T, WINDOW = 128, slice(40, 61)


def bump_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 1, T)).astype(np.float32)
    y = np.arange(n) % 2
    steps = np.arange(WINDOW.start, WINDOW.stop)
    X[y == 1, 0, WINDOW] += 3.0 * np.sin(np.pi * (steps - WINDOW.start) / 20)
    return X, y


def window_share(attributions: np.ndarray) -> np.ndarray:
    """Per series: the share of the attribution's magnitude (summed over channels) that lies
    in the bump's window."""
    a = np.abs(attributions.sum(1))
    return a[:, WINDOW].sum(1) / a.sum(1)


def build(preset: str, n_channels: int = 1, n_timepoints: int = 32, n_train: int = 1000,
          **model: object) -> nn.Module:
    cfg = resolve(preset, DataShape(n_channels, n_timepoints, 3, n_train=n_train),
                  {"model": model}, classes=[0, 1, 2])
    torch.manual_seed(0)
    return cfg.build().eval()


class WindowModel(nn.Module):
    """A known answer: class 1's logit is the mean of the bump's window, class 0's is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0, WINDOW].mean(-1) * 3
        return torch.stack([torch.zeros_like(s), s], -1)


# --------------------------------------------------------------------------- every model kind


@pytest.mark.parametrize("kind", ["seed", "seed-zscore", "patchformer-conv",
                                  "patchformer-rocket-ensemble"])
@pytest.mark.parametrize("method", METHODS)
def test_attributions_have_the_input_shape_for_every_kind_of_model(kind: str, method: str
                                                                   ) -> None:
    small = {"head_size": 8, "num_heads": 2, "num_blocks": 1}
    if kind == "seed":
        model = build("seed", n_channels=2, **small)
    elif kind == "seed-zscore":
        model = ZNormalized(build("seed", n_channels=2, **small)).eval()
    elif kind == "patchformer-conv":
        model = build("patchformer", n_channels=2, depth=1, d_model=16)
    else:  # below 500 series the preset builds three members with the rocket stem
        model = build("patchformer", n_channels=2, n_train=40, depth=1, d_model=16)
        assert isinstance(model, Ensemble) and len(model.members) == 3
        for net in model.members:  # thresholds from training data, as training sets them
            net.init_from_data(torch.randn(8, 2, 32))
    X = np.random.default_rng(0).standard_normal((3, 2, 32)).astype(np.float32)
    X[:, 1] *= 3
    e = explain(model, X, method=method, n_steps=4)
    assert e.attributions.shape == X.shape and e.attributions.dtype == np.float32
    assert np.isfinite(e.attributions).all() and np.abs(e.attributions).sum() > 0
    with torch.no_grad():
        proba = torch.softmax(model(torch.from_numpy(X)), 1).numpy()
    np.testing.assert_array_equal(e.predicted, proba.argmax(1))
    np.testing.assert_allclose(e.probability, proba.max(1), rtol=1e-5)
    assert [d.fraction for d in e.deletion] == [0.1, 0.2]
    assert not model.training  # left in eval mode, as given
    if method == "integrated_gradients":  # normalising models get noise baselines
        assert e.baseline == ("mean" if kind == "seed" else "noise")


def test_rocket_thresholds_are_hard_again_after_a_gradient_explanation() -> None:
    from tsformer.models.rocket import RocketTokens

    model = build("patchformer", n_train=1000, depth=1, d_model=16, stem="rocket")
    model.init_from_data(torch.randn(8, 1, 32))
    X = np.random.default_rng(0).standard_normal((2, 1, 32)).astype(np.float32)
    before = model(torch.from_numpy(X))
    explain(model, X, n_steps=4, deletion=())
    assert all(m.soft is None for m in model.modules() if isinstance(m, RocketTokens))
    torch.testing.assert_close(model(torch.from_numpy(X)), before)


def test_ignores_scale_tells_normalising_models() -> None:
    x = torch.randn(4, 1, 32)
    assert ignores_scale(build("patchformer", depth=1, d_model=16), x)
    assert ignores_scale(ZNormalized(build("seed", head_size=8, num_blocks=1)), x)
    assert not ignores_scale(build("seed", head_size=8, num_blocks=1), x)


def test_integrated_gradients_target_and_completeness() -> None:
    """With the mean baseline, attributions sum to p(x) - p(baseline) (IG's completeness),
    and ``target`` explains the class asked for."""
    model = build("seed", head_size=8, num_heads=2, num_blocks=1)
    X = np.random.default_rng(1).standard_normal((4, 1, 32)).astype(np.float32)
    e = explain(model, X, target=2, n_steps=64, deletion=())
    assert (e.target == 2).all() and e.baseline == "mean"
    flat = torch.from_numpy(np.broadcast_to(X.mean(-1, keepdims=True), X.shape).copy())
    with torch.no_grad():
        p0 = torch.softmax(model(flat), 1)[:, 2].numpy()
    np.testing.assert_allclose(e.attributions.sum((1, 2)), e.target_probability - p0,
                               atol=2e-3)


# --------------------------------------------------------------------------- faithfulness


@pytest.mark.parametrize("method", METHODS)
def test_known_window_gets_the_attribution_and_deletion_beats_random(method: str) -> None:
    X, y = bump_data(20, 0)
    e = explain(WindowModel(), X[y == 1], method=method, target=1)
    assert window_share(e.attributions).mean() > 0.9
    for d in e.deletion:  # the model is sure (p = 0.99): deleting 10% only starts to tell
        assert d.top_drop > d.random_drop + 5 * d.random_sd + 0.05
    assert e.deletion[-1].top_drop > 0.5


def test_delete_steps_interpolates_linearly() -> None:
    X = np.array([[[0.0, 5.0, 5.0, 3.0, 10.0]]], dtype=np.float32)
    mask = np.array([[False, True, True, False, True]])
    np.testing.assert_allclose(delete_steps(X, mask)[0, 0], [0, 1, 2, 3, 3])


def test_deletion_test_of_random_attributions_is_no_better_than_random() -> None:
    X, y = bump_data(40, 1)
    X = X[y == 1]
    noise = np.random.default_rng(0).standard_normal(X.shape).astype(np.float32)
    rows = deletion_test(WindowModel(), X, noise, np.ones(len(X), dtype=np.int64))
    for d in rows:
        assert abs(d.top_drop - d.random_drop) < 0.1


def test_occlusion_windows_tile_the_series() -> None:
    for t in (1, 2, 7, 64, 96, 128, 251, 500):
        w, s = occlusion_windows(t)
        assert 1 <= s <= w <= t and (t - w) % s == 0
    assert occlusion_windows(128) == (8, 4)


@pytest.mark.slow
@pytest.mark.parametrize("preset,params", [
    ("seed", {"epochs": 30, "lr": 1e-3, "model_params": {"num_blocks": 1, "head_size": 16,
                                                         "num_heads": 2, "mlp_units": [32]}}),
    ("patchformer", {"epochs": 10, "members": 1, "model_params": {"depth": 1, "d_model": 32}}),
])
@pytest.mark.parametrize("method", METHODS)
def test_trained_models_attribute_the_bump(preset: str, params: dict, method: str,
                                           trained_bump: dict) -> None:
    """A quickly trained model of each preset puts most of class 1's attribution on the
    bump's 21 of 128 steps, and deleting its top steps lowers the probability far more than
    deleting random ones."""
    if preset not in trained_bump:  # one training per preset, shared by both methods
        trained_bump[preset] = TransformerClassifier(preset, random_state=0, verbose=0,
                                                     **params).fit(*bump_data(200, 0))
    clf = trained_bump[preset]
    X, y = bump_data(40, 1)
    assert (clf.predict(X) == y).mean() >= 0.9
    e = clf.explain(X[y == 1][:10], method=method)
    assert window_share(e.attributions).mean() > 0.4  # the window is 16% of the steps
    for d in e.deletion:
        assert d.top_drop > 0.1 and d.top_drop > d.random_drop + 3 * d.random_sd + 0.05


@pytest.fixture(scope="module")
def trained_bump() -> dict:
    return {}


# --------------------------------------------------------------------------- estimator


def test_estimator_explain_is_a_thin_shell(tmp_path: Path) -> None:
    X, y = bump_data(16, 0)
    labels = np.where(y == 1, "bump", "flat")
    clf = TransformerClassifier("seed", epochs=1, random_state=0, verbose=0,
                                model_params={"num_blocks": 1, "head_size": 8}).fit(X, labels)
    e = clf.explain(X[:3], method="occlusion", target="bump")
    assert e.attributions.shape == (3, 1, T) and e.labels(e.target) == ["bump"] * 3
    np.testing.assert_allclose(e.target_probability, clf.predict_proba(X[:3])[:, 0], rtol=1e-5)
    assert e.labels(e.predicted) == clf.predict(X[:3]).tolist()
    with pytest.raises(ConfigError, match="not one of the model's classes"):
        clf.explain(X[:1], target="other")
    with pytest.raises(ConfigError, match="unknown explanation method"):
        clf.explain(X[:1], method="shap")
    with pytest.raises(DataError, match="expecting"):
        clf.explain(X[:1, :, :10])
    with pytest.raises(Exception, match="not fitted"):
        TransformerClassifier().explain(X)


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = resolve("seed", DataShape(1, 64, 2), {"model": {"num_blocks": 1, "head_size": 8}},
                  classes=["a", "b"], data={"name": "toy"})
    torch.manual_seed(0)
    return save_model_dir(tmp_path_factory.mktemp("explain") / "model", cfg.build(), cfg)


@pytest.fixture(scope="module")
def series_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    X = np.random.default_rng(0).standard_normal((5, 64))
    path = tmp_path_factory.mktemp("data") / "five.tsv"
    rows = [["a", "b", "a", "b", "a"][i] + "\t" + "\t".join(f"{v:.6g}" for v in X[i])
            for i in range(5)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_cli_writes_figures_arrays_table_and_summary(run_dir: Path, series_file: Path,
                                                     tmp_path: Path, capsys) -> None:
    out = tmp_path / "why"
    code, stdout, err = run(capsys, "explain", run_dir, series_file, "--out", out,
                            "--limit", 3)
    assert code == 0, err
    assert "deletion test: deleting the top 10% of steps (6)" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "attributions.csv", "attributions.npy", "explanations.json", "series-0000.png",
        "series-0001.png", "series-0002.png"]
    A = np.load(out / "attributions.npy")
    assert A.shape == (3, 1, 64)
    lines = (out / "attributions.csv").read_text().splitlines()
    assert lines[0] == "series,channel,step,value,attribution" and len(lines) == 1 + 3 * 64
    last = lines[-1].split(",")
    assert last[:3] == ["2", "0", "63"] and float(last[4]) == pytest.approx(A[2, 0, 63],
                                                                            rel=1e-5)
    doc = json.loads((out / "explanations.json").read_text())
    assert doc["method"] == "integrated_gradients" and [s["true"] for s in doc["series"]] == [
        "a", "b", "a"]
    assert (out / "series-0000.png").read_bytes()[:4] == b"\x89PNG"
    # an existing output is refused, replaced with --overwrite, and a model directory never is
    code, _, err = run(capsys, "explain", run_dir, series_file, "--out", out)
    assert code == 2 and "already exists and is not empty" in err
    code, stdout, err = run(capsys, "explain", run_dir, series_file, "--out", out,
                            "--overwrite", "--method", "occlusion", "--target", "b")
    assert code == 0, err
    doc = json.loads((out / "explanations.json").read_text())
    assert doc["method"] == "occlusion" and {s["explained"] for s in doc["series"]} == {"b"}
    assert len(list(out.glob("*.png"))) == 5
    code, _, err = run(capsys, "explain", run_dir, series_file, "--out", run_dir,
                       "--overwrite")
    assert code == 2 and "not a tsformer explanations directory" in err
    assert (run_dir / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("argv,words", [
    (["--target", "zebra"], "not one of the model's classes (a, b)"),
    (["--method", "shap"], "invalid choice"),
    (["--limit", "-1"], "must be 0 or more"),
])
def test_cli_refuses_bad_options_before_reading_data(run_dir: Path, series_file: Path,
                                                     tmp_path: Path, capsys, no_data_reads,
                                                     argv: list[str], words: str) -> None:
    code, _, err = run(capsys, "explain", run_dir, series_file, "--out", tmp_path / "x", *argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- server


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("fastapi")
    from test_serve import MAX_BODY, MAX_INSTANCES, local, make_model_dir

    from tsformer.serve import create_app

    model_dir = make_model_dir(tmp_path_factory.mktemp("serve") / "model")
    with local(create_app(model_dir, max_body_bytes=MAX_BODY,
                          max_instances=MAX_INSTANCES)) as c:
        yield c


def test_explain_route_answers_with_attributions_and_is_in_the_schema(client) -> None:
    X = np.random.default_rng(0).standard_normal((3, 1, 64)).astype(np.float32)
    body = {"instances": [X[0, 0].tolist(), X[1].tolist(), X[2, 0].tolist()]}
    predicted = client.post("/v1/predict", json=body).json()["predictions"]
    r = client.post("/v1/explain", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["method"] == "integrated_gradients" and doc["classes"] == [-1, 1]
    assert [e["label"] for e in doc["explanations"]] == [p["label"] for p in predicted]
    for e, p in zip(doc["explanations"], predicted, strict=True):
        assert np.asarray(e["attributions"]).shape == (1, 64)
        assert e["probability"] == pytest.approx(p["probabilities"][str(p["label"])], rel=1e-5)
    assert [d["fraction"] for d in doc["deletion"]] == [0.1, 0.2]
    r = client.post("/v1/explain?method=occlusion&target=-1", json=body)
    assert r.status_code == 200 and {e["target"] for e in r.json()["explanations"]} == {-1}
    csv = "\n".join(",".join(str(v) for v in X[i, 0]) for i in range(3)).encode()
    r = client.post("/v1/explain", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and len(r.json()["explanations"]) == 3
    schema = client.get("/openapi.json").json()
    op, predict = (schema["paths"][p]["post"] for p in ("/v1/explain", "/v1/predict"))
    assert op["requestBody"] == predict["requestBody"]
    assert {"400", "408", "413", "415", "422", "503"} <= set(op["responses"])
    assert [p["name"] for p in op["parameters"]] == ["method", "target"]
    assert "ExplainResponse" in schema["components"]["schemas"]


def _json_cases() -> list:
    from test_serve import _JSON_CASES

    return [pytest.param(c[1], id=c[0]) for c in _JSON_CASES]


def _csv_cases() -> list:
    from test_serve import _CSV_CASES

    return [pytest.param(c[1], id=c[0]) for c in _CSV_CASES]


@pytest.mark.parametrize("body", _json_cases())
def test_explain_refuses_bad_json_as_predict_does(client, body: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    want = client.post("/v1/predict", content=body, headers=headers)
    got = client.post("/v1/explain", content=body, headers=headers)
    assert 400 <= want.status_code < 500
    assert (got.status_code, got.json()) == (want.status_code, want.json())


@pytest.mark.parametrize("body", _csv_cases())
def test_explain_refuses_bad_csv_as_predict_does(client, body: bytes) -> None:
    want = client.post("/v1/predict", files={"file": ("x.csv", body, "text/csv")})
    got = client.post("/v1/explain", files={"file": ("x.csv", body, "text/csv")})
    assert 400 <= want.status_code < 500
    assert (got.status_code, got.json()) == (want.status_code, want.json())


def test_explain_refuses_bad_options_and_requests(client) -> None:
    body = {"instances": [[0.5] * 64]}
    r = client.post("/v1/explain?method=shap", json=body)
    assert r.status_code == 422 and r.json()["field"] == "method"
    r = client.post("/v1/explain?target=7", json=body)
    assert r.status_code == 422 and "not one of the model's classes" in r.json()["detail"]
    r = client.post("/v1/explain", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert client.get("/v1/explain").status_code == 405
    r = client.post("/v1/explain", json={"instances": [[1e30] * 64]})  # beyond the model
    assert r.status_code == 422, r.text
    assert client.post("/v1/explain", json=body).status_code == 200  # still answering
