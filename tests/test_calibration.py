"""Calibrated probabilities: ECE, temperature scaling (fitted on the validation split or on
held-out data, stored in config.json, applied after reload) and split-conformal sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run

import tsformer
from tsformer.calibration import (
    MAX_SCORES,
    Calibration,
    conformal_threshold,
    expected_calibration_error,
    fit_calibration,
    nll,
    prediction_sets,
    reliability,
    softmax,
)
from tsformer.cli import main
from tsformer.errors import ConfigError

#: A FordA slice the seed preset trains on in a few seconds on one thread.
N_TRAIN, N_TEST, LENGTH = 300, 200, 64


# ---------------------------------------------------------------------- ECE


def test_ece_matches_a_hand_computed_case():
    proba = np.array([[0.90, 0.10],   # confidence .90, right  -> bin 13 (0.867, 0.933]
                      [0.92, 0.08],   # confidence .92, wrong  -> bin 13
                      [0.30, 0.70],   # confidence .70, right  -> bin 10 (0.667, 0.733]
                      [0.62, 0.38]])  # confidence .62, wrong  -> bin 9  (0.6, 0.667]
    y = np.array([0, 1, 1, 1])
    # 2/4 |0.5 - 0.91| + 1/4 |1 - 0.70| + 1/4 |0 - 0.62|
    assert expected_calibration_error(proba, y) == pytest.approx(0.205 + 0.075 + 0.155)
    r = reliability(proba, y)
    assert r["count"][13] == 2 and r["count"][10] == 1 and r["count"][9] == 1
    assert sum(r["count"]) == 4 and r["accuracy"][0] is None
    # confidence 1 falls in the last bin, and a perfectly calibrated set scores 0
    assert reliability(np.array([[1.0, 0.0]]), np.array([0]))["count"][-1] == 1
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def _overconfident(n: int, k: int = 3, sharpen: float = 3.0, seed: int = 0):
    """Logits whose softmax is the true label distribution, and the model's sharpened ones."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 1.5, (n, k))
    p = softmax(true_logits)
    y = np.array([rng.choice(k, p=row) for row in p])
    return true_logits * sharpen, y


def test_temperature_scaling_undoes_overconfidence_without_changing_the_argmax():
    logits, y = _overconfident(3000)
    cal = fit_calibration(logits, y, "validation")
    assert cal.temperature == pytest.approx(3.0, rel=0.1)  # the sharpening it undoes
    assert cal.nll_after < cal.nll_before and cal.ece_after < cal.ece_before / 3
    assert cal.nll_after == pytest.approx(nll(logits, y, cal.temperature), abs=1e-5)
    assert (softmax(logits / cal.temperature).argmax(1) == logits.argmax(1)).all()


def test_no_temperature_where_it_does_not_help_or_data_are_too_few():
    logits, y = _overconfident(3000, sharpen=1.0)  # already calibrated: T ~ 1 at best
    cal = fit_calibration(logits, y, "validation")
    assert cal.temperature == pytest.approx(1.0, abs=0.1)
    few = fit_calibration(logits[:10], y[:10], "validation")
    assert few.temperature == 1.0 and "too few" in few.reason
    assert few.conformal_n == 10  # conformal scores are still kept


# ---------------------------------------------------------------------- conformal


@pytest.mark.parametrize("n_cal", [1000, MAX_SCORES + 7000])  # the second is thinned
@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_conformal_sets_cover_held_out_series(n_cal, alpha):
    logits, y = _overconfident(n_cal + 4000, seed=1)
    cal = fit_calibration(logits[:n_cal], y[:n_cal], "validation")
    assert len(cal.conformal_scores) == min(n_cal, MAX_SCORES) and cal.conformal_n == n_cal
    sets = prediction_sets(softmax(logits[n_cal:] / cal.temperature), cal.threshold(alpha))
    covered = sets[np.arange(len(sets)), y[n_cal:]].mean()
    assert 1 - alpha - 0.03 <= covered <= 1 - alpha + 0.05
    assert sets.sum(1).mean() < 3  # not the trivial all-labels set


def test_conformal_threshold_is_the_finite_sample_quantile_and_refuses_bad_alpha():
    scores = [i / 100 for i in range(1, 101)]  # n = 100
    # ceil(101 * 0.9) = 91 -> the 91st smallest
    assert conformal_threshold(scores, 100, 0.1) == pytest.approx(0.91)
    for bad in (0, 1, -0.1, 1.5, float("nan"), True):
        with pytest.raises(ConfigError, match="alpha must be a number in"):
            conformal_threshold(scores, 100, bad)
    with pytest.raises(ConfigError, match="too small for the 100 held-out series"):
        conformal_threshold(scores, 100, 0.005)
    with pytest.raises(ConfigError, match="no conformal scores"):
        Calibration(temperature=1.0, fitted_on="x", n=0).threshold(0.1)


def test_a_calibration_record_is_checked_and_round_trips():
    logits, y = _overconfident(200)
    cal = fit_calibration(logits, y, "validation")
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    d = cal.to_dict()
    for key, value, msg in [("temperature", -1.0, "temperature"),
                            ("conformal_scores", [0.5, 0.2], "sorted"),
                            ("surprise", 1, "unknown calibration key")]:
        with pytest.raises(ConfigError, match=msg):
            Calibration.from_dict({**d, key: value})


# ---------------------------------------------------------------------- real training


@pytest.fixture(scope="module")
def slice_data(forda_small):
    Xtr, ytr, Xte, yte = forda_small
    return Xtr[:N_TRAIN, :, :LENGTH], ytr[:N_TRAIN], Xte[:N_TEST, :, :LENGTH], yte[:N_TEST]


def _clf(**kw):
    params = {"epochs": 4, "random_state": 0, "verbose": 0, "lr": 1e-3,
              "model_params": {"num_blocks": 1, "head_size": 16}, **kw}
    return tsformer.TransformerClassifier("seed", **params)


@pytest.fixture(scope="module")
def calibrated(slice_data):
    """A seed-preset model calibrated on its own validation split (20% of the training
    series), and the same model's uncalibrated network."""
    from tsformer.models.calibrated import uncalibrated

    Xtr, ytr, _, _ = slice_data
    clf = _clf().fit(Xtr, ytr)
    return clf, uncalibrated(clf.model_)


def test_training_calibrates_on_exactly_the_validation_rows_the_loop_held_out(
        calibrated, slice_data):
    from tsformer.pipeline import held_out_rows
    from tsformer.training.loop import _split

    Xtr = slice_data[0]
    cfg = calibrated[0].config_
    n = len(Xtr)
    rows = held_out_rows(n, cfg)
    marked = np.arange(n, dtype=np.float32).reshape(n, 1, 1)
    _, _, Xv, _ = _split(marked, np.zeros(n, np.int64), cfg.train,
                         np.random.default_rng(cfg.train.seed), None)
    assert sorted(Xv.ravel().astype(int).tolist()) == rows.tolist()
    assert cfg.calibration.n == len(rows) == n - int(n * 0.8)


def test_validation_calibration_keeps_accuracy_and_lowers_nll(calibrated, slice_data):
    from tsformer.inference import predict_logits

    clf, raw = calibrated
    _, _, Xte, yte = slice_data
    cal = clf.config_.calibration
    assert cal is not None and cal.fitted_on == "validation"
    assert cal.nll_after <= cal.nll_before and cal.ece_after <= cal.ece_before
    raw_logits = predict_logits(raw, Xte).numpy()
    assert (clf.predict(Xte) == clf.classes_[raw_logits.argmax(1)]).all()
    np.testing.assert_allclose(clf.predict_proba(Xte), softmax(raw_logits / cal.temperature),
                               atol=1e-5)


def test_the_temperature_is_saved_and_applied_after_reload(calibrated, slice_data, tmp_path):
    clf, _ = calibrated
    _, _, Xte, _ = slice_data
    if clf.config_.calibration.temperature == 1.0:  # make sure a real T travels
        clf.config_.calibration.temperature = 1.7
        clf.model_ = clf.config_.calibrated(clf.model_)
    clf.save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["calibration"]["temperature"] == clf.config_.calibration.temperature
    assert saved["format_version"] == 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["calibration"]["temperature"] == clf.config_.calibration.temperature
    back = tsformer.load(tmp_path / "run", device="cpu")
    np.testing.assert_allclose(back.predict_proba(Xte), clf.predict_proba(Xte), atol=1e-6)
    np.testing.assert_array_equal(back.predict_set(Xte, 0.2), clf.predict_set(Xte, 0.2))


def test_a_calibrated_run_is_a_config_to_train_again(calibrated, tmp_path):
    from tsformer.cli.common import load_config_file

    clf, _ = calibrated
    clf.save(tmp_path / "run")
    plan = load_config_file(str(tmp_path / "run"))
    assert plan["preset"] == "seed" and "calibration" not in plan["overrides"]


def test_a_config_without_calibration_still_loads(calibrated, tmp_path):
    clf, _ = calibrated
    clf.save(tmp_path / "run")
    path = tmp_path / "run" / "config.json"
    doc = json.loads(path.read_text())
    del doc["calibration"]
    path.write_text(json.dumps(doc))
    back = tsformer.load(tmp_path / "run", device="cpu")
    assert back.config_.calibration is None
    with pytest.raises(ConfigError, match="no calibration data"):
        back.predict_set(np.zeros((1, 1, LENGTH), np.float32), 0.1)


def test_estimator_calibrates_on_held_out_series_when_it_trained_on_all(slice_data):
    Xtr, ytr, Xte, yte = slice_data
    clf = _clf(validation_split=0.0, epochs=2).fit(Xtr[:200], ytr[:200])
    assert clf.config_.calibration is None
    before = clf.predict(Xte)
    clf.calibrate(Xtr[200:], ytr[200:])
    cal = clf.config_.calibration
    assert cal.fitted_on == "user data" and cal.n == 100
    assert cal.nll_after <= cal.nll_before
    assert (clf.predict(Xte) == before).all()
    sets = clf.predict_set(Xte, 0.1)
    assert sets.shape == (len(Xte), 2) and sets.dtype == bool
    with pytest.raises(ConfigError, match="alpha must be"):
        clf.predict_set(Xte, 1.0)


# ---------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def uncalibrated_run(tmp_path_factory, slice_data, tsv_writer):
    """A run trained on every series (no calibration), and labelled held-out / test files."""
    Xtr, ytr, Xte, yte = slice_data
    folder = tmp_path_factory.mktemp("cal")
    clf = _clf(validation_split=0.0, epochs=2).fit(Xtr[:200], ytr[:200])
    clf.save(folder / "run")
    held, test = tsv_writer(folder, (Xtr[200:], ytr[200:], Xte, yte))
    return folder / "run", held, test


def test_cli_refuses_conformal_sets_without_calibration_or_with_a_bad_alpha(
        capsys, uncalibrated_run):
    run_dir, _, test = uncalibrated_run
    code, out, err = run(capsys, "predict", run_dir, test, "--conformal", "0.1")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "no calibration data" in err and "tsformer calibrate" in err
    for bad in ("0", "1", "abc", "-0.2"):
        code, _, err = run(capsys, "predict", run_dir, test, "--conformal", bad)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "ALPHA" in err


def test_cli_calibrate_then_conformal_predict_and_evaluate(capsys, tmp_path, uncalibrated_run):
    import shutil

    src, held, test = uncalibrated_run
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    weights = (run_dir / "model.safetensors").read_bytes()
    code, out, err = run(capsys, "calibrate", run_dir, "--data", held)
    assert code == 0, err
    assert "temperature" in out and "ECE" in out
    doc = json.loads((run_dir / "config.json").read_text())
    assert doc["calibration"]["fitted_on"] == "user data" and doc["calibration"]["n"] == 100
    assert (run_dir / "model.safetensors").read_bytes() == weights  # only the config changed
    code, out, err = run(capsys, "predict", run_dir, test, "--conformal", "0.2", "--format",
                         "json")
    assert code == 0, err
    rows = json.loads(out)
    assert all(set(r["set"]) <= set(r["probabilities"]) | {int(k) for k in r["probabilities"]}
               for r in rows)
    code, out, err = run(capsys, "predict", run_dir, test, "--conformal", "0.2")
    assert code == 0 and out.splitlines()[0].endswith("in_-1,in_1")
    code, out, err = run(capsys, "predict", run_dir, test, "--conformal", "0.001")
    assert code == 2 and "too small" in err and len(err.strip().splitlines()) == 1
    png = tmp_path / "rel.png"
    code, out, err = run(capsys, "evaluate", run_dir, "--file", test, "--json",
                         "--reliability", png)
    assert code == 0, err
    m = json.loads(out)
    assert 0 <= m["ece"] <= 1 and m["nll"] == m["loss"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_calibrate_refuses_unlabelled_data_in_one_line(capsys, tmp_path, uncalibrated_run,
                                                          slice_data):
    run_dir, _, _ = uncalibrated_run
    X = slice_data[0][:30, 0, :]
    plain = tmp_path / "plain.npy"
    np.save(plain, X)
    before = (run_dir / "config.json").read_text()
    code, out, err = run(capsys, "calibrate", run_dir, "--data", plain)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "label" in err
    assert (run_dir / "config.json").read_text() == before


def test_server_answers_conformal_sets_for_alpha_and_refuses_in_one_json_line(
        tmp_path, uncalibrated_run, slice_data):
    import shutil

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tsformer.serve import create_app

    src, held, _ = uncalibrated_run
    Xte = slice_data[2][:5]
    body = {"instances": Xte[:, 0, :].tolist()}
    plain = TestClient(create_app(src), base_url="http://127.0.0.1")
    r = plain.post("/v1/predict?alpha=0.2", json=body)
    assert r.status_code == 422 and "no calibration data" in r.json()["detail"]
    assert "set" not in plain.post("/v1/predict", json=body).json()["predictions"][0]
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    assert main(["calibrate", str(run_dir), "--data", str(held)]) == 0
    client = TestClient(create_app(run_dir), base_url="http://127.0.0.1")
    preds = client.post("/v1/predict?alpha=0.2", json=body).json()["predictions"]
    clf = tsformer.load(run_dir, device="cpu")
    sets = clf.predict_set(Xte, 0.2)
    assert [p["set"] for p in preds] == [clf.classes_[s].tolist() for s in sets]
    assert client.get("/v1/model").json()["calibration"]["n"] == 100
    for bad in ("0", "1.5", "x", "0.0001"):
        r = client.post(f"/v1/predict?alpha={bad}", json=body)
        assert r.status_code == 422 and r.json()["field"] == "alpha", r.text
