"""ONNX export: onnxruntime reproduces PyTorch's probabilities for both presets, nothing is
written when it does not, and predicting with the export needs neither torch nor the rest of
the training stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from tsformer.cli import main  # noqa: E402
from tsformer.config import DataShape, resolve  # noqa: E402
from tsformer.errors import ModelDirError  # noqa: E402
from tsformer.export import ExportError, export_onnx  # noqa: E402
from tsformer.inference import predict_logits  # noqa: E402
from tsformer.model_dir import SAMPLE_NAME  # noqa: E402
from tsformer.pipeline import load, save_run, train  # noqa: E402
from tsformer.runtime import ONNX_NAME, OnnxModel, load_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: What a slim install (pip install --no-deps tsformer; pip install numpy onnxruntime) lacks.
NOT_INSTALLED = ("torch", "sklearn", "matplotlib", "safetensors", "tqdm", "platformdirs",
                 "fastapi", "onnxscript", "onnx")


@pytest.fixture(scope="module")
def arrowhead():
    """36 ArrowHead training series (3 classes, 251 points) and 30 test series."""
    from tsformer.data import codes_for, encode_labels, load_dataset

    s = load_dataset("ArrowHead", download=False, progress=False)
    y, classes = encode_labels(s.y_train)
    return s.X_train[:36], y[:36], s.X_test[:30], codes_for(s.y_test[:30], classes, "test"), classes


def _run(path: Path, preset: str, data, overrides: dict) -> Path:
    """A run directory of ``preset`` trained for one epoch (with sample.json)."""
    X, y, Xte, yte, classes = data
    overrides = {**overrides, "train": {"epochs": 1, "verbose": 0, "validation_split": 0.0,
                                        **overrides.get("train", {})}}
    cfg = resolve(preset, DataShape.of(X, len(classes)), overrides, classes=list(classes),
                  data={"name": "ArrowHead"})
    result = train(cfg, X, y)
    return save_run(path, result, test_data=(Xte, np.asarray(classes)[yte]), plots=False)


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory, arrowhead) -> Path:
    """A seed run, calibrated (a temperature inside the model, conformal scores) on the test
    series, so the export must carry both."""
    run = _run(tmp_path_factory.mktemp("export") / "seed", "seed", arrowhead, {
        "model": {"num_blocks": 1, "head_size": 8, "num_heads": 2, "mlp_units": [8]}})
    held = run.parent / "held.tsv"
    X, y, classes = arrowhead[2], arrowhead[3], arrowhead[4]
    np.savetxt(held, np.column_stack([np.asarray(classes)[y], X[:, 0]]), delimiter="\t")
    assert main(["calibrate", str(run), "--data", str(held)]) == 0
    assert json.loads((run / "config.json").read_text())["calibration"]["temperature"] != 1
    return run


@pytest.fixture(scope="module")
def seed_onnx(seed_run) -> Path:
    path, diff = export_onnx(seed_run)
    assert path == seed_run / ONNX_NAME and diff <= 1e-4
    return path


def _torch_proba(run_dir: Path, X: np.ndarray) -> np.ndarray:
    model, cfg = load(run_dir, device="cpu")
    return torch.softmax(predict_logits(model, X, amp="off").double(), 1).numpy()


def _check_parity(run_dir: Path, onnx: Path, arrowhead) -> None:
    X = arrowhead[2]
    got = load_onnx(onnx).predict_proba(X)
    want = _torch_proba(run_dir, X)
    assert got.shape == want.shape == (len(X), 3)
    assert np.abs(got - want).max() <= 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.slow
def test_seed_export_matches_pytorch_and_carries_its_metadata(seed_run, seed_onnx, arrowhead):
    _check_parity(seed_run, seed_onnx, arrowhead)
    m = load_onnx(seed_run)  # the run directory finds model.onnx
    cfg = json.loads((seed_run / "config.json").read_text())
    assert m.classes == cfg["classes"] and (m.n_channels, m.n_timepoints) == (1, 251)
    assert m.info.config["preset"] == "seed" and m.info.tsformer_version
    names = [o.name for o in m.session.get_outputs()]
    assert [i.name for i in m.session.get_inputs()] == ["series"]
    assert names == ["logits", "probabilities"]
    # one series, and more than the trace saw: the batch axis is free
    logits, proba = m.run(arrowhead[2][:1])
    assert logits.shape == proba.shape == (1, 3)
    assert np.allclose(proba.sum(1), 1, atol=1e-5)
    assert m.logits(arrowhead[2], batch_size=7).shape == (30, 3)


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    {"members": 2, "model": {"stem": "rocket", "d_model": 16, "depth": 1, "n_heads": 2}},
    {"members": 1, "model": {"stem": "conv", "stem_width": 4, "d_model": 8, "depth": 1,
                             "n_heads": 1}},
], ids=["rocket-ensemble", "conv"])
def test_patchformer_export_matches_pytorch(tmp_path, arrowhead, overrides):
    run = _run(tmp_path / "pf", "patchformer", arrowhead, overrides)
    out = tmp_path / "elsewhere.onnx"
    path, diff = export_onnx(run, out)
    assert path == out and diff <= 1e-4 and not (run / ONNX_NAME).exists()
    _check_parity(run, out, arrowhead)


@pytest.mark.slow
def test_predict_onnx_runtime_gives_the_torch_labels(seed_run, seed_onnx, arrowhead, tmp_path,
                                                     capsys):
    X = tmp_path / "X.npy"
    np.save(X, arrowhead[2])
    assert main(["predict", str(seed_run), str(X), "--format", "json"]) == 0
    want = json.loads(capsys.readouterr().out)
    for target in (seed_run, seed_onnx):  # a run directory or the file itself
        assert main(["predict", str(target), str(X), "--format", "json",
                     "--runtime", "onnx"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert [r["label"] for r in got] == [r["label"] for r in want]
        assert max(abs(g["probabilities"][k] - w["probabilities"][k])
                   for g, w in zip(got, want, strict=True) for k in w["probabilities"]) <= 1e-4
    # conformal sets come from the calibration the export carries in its metadata
    sets = {}
    for runtime in ("torch", "onnx"):
        assert main(["predict", str(seed_run), str(X), "--format", "json", "--conformal",
                     "0.2", "--runtime", runtime]) == 0
        sets[runtime] = [r["set"] for r in json.loads(capsys.readouterr().out)]
    assert sets["onnx"] == sets["torch"] and any(sets["onnx"])


_BLOCKER = """
import sys
BLOCKED = {blocked!r}
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)",
                                      name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""


def _without_torch(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where torch and the other dependencies a
    ``--no-deps`` install lacks cannot be imported (a sitecustomize meta-path blocker)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_BLOCKER.format(blocked=set(NOT_INSTALLED)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_onnx_path_runs_without_torch(seed_run, seed_onnx, arrowhead, tmp_path):
    X = tmp_path / "X.csv"
    np.savetxt(X, arrowhead[2][:5, 0], delimiter=",")
    want = _torch_proba(seed_run, arrowhead[2][:5])
    lib = _without_torch(tmp_path, f"""
        import sys, numpy as np
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker let torch in")
        from tsformer.runtime import load_onnx
        m = load_onnx({str(seed_onnx)!r})
        np.save("p.npy", m.predict_proba(np.loadtxt("X.csv", delimiter=",")[:, None, :]))
        assert not any(k.split(".")[0] == "torch" for k in sys.modules)
        """)
    assert lib.returncode == 0, lib.stderr[-3000:]
    assert np.abs(np.load(tmp_path / "p.npy") - want).max() <= 1e-4
    cli = _without_torch(tmp_path, f"""
        import sys
        from tsformer.cli import main
        code = main(["predict", {str(seed_run)!r}, "X.csv", "--runtime", "onnx",
                     "--output", "out.csv"])
        assert not any(k.split(".")[0] == "torch" for k in sys.modules), "torch was imported"
        raise SystemExit(code)
        """)
    assert cli.returncode == 0, cli.stderr[-3000:]
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[0] == "index,label,p_0,p_1,p_2" and len(rows) == 6
    labels = [int(r.split(",")[1]) for r in rows[1:]]
    assert labels == want.argmax(1).tolist()
    # the PyTorch path in such an install: one line saying what is missing, exit 2
    torch_path = _without_torch(tmp_path, f"""
        from tsformer.cli import main
        raise SystemExit(main(["predict", {str(seed_run)!r}, "X.csv"]))
        """)
    assert torch_path.returncode == 2 and torch_path.stderr.count("\n") == 1
    assert "needs torch" in torch_path.stderr and "--runtime onnx" in torch_path.stderr


@pytest.mark.slow
def test_a_parity_failure_writes_nothing(seed_run, seed_onnx, tmp_path, monkeypatch):
    import tsformer.export as export

    graph = seed_onnx.read_bytes()
    monkeypatch.setattr(export, "to_onnx_bytes", lambda model, cfg: graph)  # skip the trace
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="does not reproduce"):
        export_onnx(seed_run, out, tolerance=1e-12)  # the real difference is ~1e-7
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(export, "parity", lambda *a: float("nan"))  # NaN outputs refused too
    assert main(["export", str(seed_run), "--format", "onnx", "--out", str(out)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_bad_targets_and_formats(seed_run, tmp_path, capsys, monkeypatch):
    import tsformer.export as export

    def no_trace(*a, **k):
        raise AssertionError("traced before the options were checked")

    monkeypatch.setattr(export, "to_onnx_bytes", no_trace)
    (tmp_path / "adir.onnx").mkdir()
    for argv, words in [
        ([str(seed_run), "--format", "torchscript"], "invalid choice"),
        ([str(seed_run)], "--format"),
        ([str(seed_run), "--format", "onnx", "--out", str(tmp_path / "no" / "m.onnx")],
         "does not exist"),
        ([str(seed_run), "--format", "onnx", "--out", str(tmp_path / "m.txt")], ".onnx"),
        ([str(seed_run), "--format", "onnx", "--out", str(tmp_path / "adir.onnx")],
         "directory"),
        ([str(tmp_path / "missing"), "--format", "onnx"], "does not exist"),
        ([str(seed_run), "--format", "onnx", "--tolerance", "2"], "tolerance"),
    ]:
        err = _exit_code(["export", *argv], capsys)
        assert err.startswith("2:") and words in err and err.count("\n") == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.onnx"]


def _exit_code(argv: list[str], capsys) -> str:
    """``CODE:stderr`` of the CLI."""
    code, _, err = run(capsys, *argv)
    return f"{code}:{err}"


def test_runtime_refuses_what_is_not_a_tsformer_export(tmp_path, seed_run, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ModelDirError, match="not a loadable ONNX model"):
        load_onnx(bad)
    with pytest.raises(ModelDirError, match="has no model.onnx"):
        load_onnx(tmp_path)
    with pytest.raises(ModelDirError, match="not an .onnx file"):
        load_onnx(seed_run / SAMPLE_NAME)
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["series"], ["logits"])], "g",
                          [helper.make_tensor_value_info("series", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])])
    foreign = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelDirError, match="not a tsformer export"):
        OnnxModel(foreign.SerializeToString())
    onnx.save(foreign, tmp_path / "foreign.onnx")
    assert main(["predict", str(tmp_path / "foreign.onnx"), str(bad), "--runtime",
                 "onnx"]) == 2
    assert "not a tsformer export" in capsys.readouterr().err


def test_the_cli_parser_names_explains_methods_without_importing_them():
    # cli/explain.py spells the methods out so that building the parser needs no torch
    import tsformer.cli.explain as cli_explain
    import tsformer.explain as explain

    assert cli_explain.METHODS == explain.METHODS


@pytest.mark.slow
def test_serve_onnx_runtime_answers_as_the_torch_model(seed_run, seed_onnx, arrowhead):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tsformer.serve import create_app

    body = {"instances": arrowhead[2][:6, 0].tolist()}
    answers = {}
    for runtime, target in (("torch", seed_run), ("onnx", seed_onnx)):
        with TestClient(create_app(target, runtime=runtime),
                        base_url="http://127.0.0.1") as client:
            r = client.post("/v1/predict", json=body)
            assert r.status_code == 200, r.text
            answers[runtime] = r.json()["predictions"]
            info = client.get("/v1/model").json()
            assert info["runtime"] == runtime and info["preset"] == "seed"
            assert info["input"]["n_timepoints"] == 251 and info["sample"]["available"]
            assert info["n_parameters"] == answers.get("n", info["n_parameters"])
            answers["n"] = info["n_parameters"]
            bad = client.post("/v1/predict", json={"instances": [[0.0] * 250]})
            assert bad.status_code == 422 and "251" in bad.json()["detail"]
    assert [p["label"] for p in answers["onnx"]] == [p["label"] for p in answers["torch"]]
    assert max(abs(o["probabilities"][k] - t["probabilities"][k])
               for o, t in zip(answers["onnx"], answers["torch"], strict=True)
               for k in t["probabilities"]) <= 1e-4
    from tsformer.errors import ConfigError

    with pytest.raises(ConfigError, match="runtime"):
        create_app(seed_run, runtime="tensorrt")


def test_export_onnx_refuses_api_misuse_before_tracing(tmp_path):
    from tsformer.errors import ConfigError

    net = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="RunConfig"):
        export_onnx(net, tmp_path / "m.onnx")  # a module needs its config
    with pytest.raises(ConfigError, match="output path"):
        export_onnx(net)  # only a run directory has a default output
    with pytest.raises(ConfigError, match="tolerance"):
        export_onnx(net, tmp_path / "m.onnx", tolerance=0)
    with pytest.raises(ConfigError, match="fitted TransformerClassifier"):
        export_onnx(42, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
