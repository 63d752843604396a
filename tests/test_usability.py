"""What a newcomer meets: progress from the first seconds, normalisation stored with the model,
a capped run that keeps its schedule's shape, files people can read."""

from __future__ import annotations

import json
import stat
import warnings

import numpy as np
import pytest
import torch

import tsformer
from tsformer.cli import main
from tsformer.config import DataShape, resolve
from tsformer.pipeline import NotNormalizedWarning, train
from tsformer.training import loop


def _data(n=24, t=32, scale=1.0, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 1, t)) + y[:, None, None] * np.sin(np.arange(t) / 3)
    return (X * scale + offset).astype(np.float32), y


TINY_SEED = {"num_blocks": 1, "head_size": 4, "num_heads": 1, "mlp_units": [8]}


def test_zscore_normalisation_is_stored_and_applied_at_prediction(tmp_path):
    X, y = _data()
    clf = tsformer.TransformerClassifier(epochs=2, normalize="zscore", model_params=TINY_SEED,
                                         random_state=0, verbose=0).fit(X * 1000 + 5, y)
    # the model normalises each series itself: scale and offset do not change a prediction
    p1 = clf.predict_proba(X)
    p2 = clf.predict_proba(X * 37.5 - 4)
    np.testing.assert_allclose(p1, p2, atol=1e-5)
    clf.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["normalize"] == "zscore"
    again = tsformer.load(tmp_path / "m")
    assert again.get_params()["normalize"] == "zscore"
    np.testing.assert_allclose(again.predict_proba(X * 3 + 1), p1, atol=1e-5)


def test_raw_scale_data_is_warned_about_unless_the_model_normalises():
    X, y = _data(scale=500, offset=800)
    shape = DataShape.of(X, 2)
    tiny = {"model": TINY_SEED, "train": {"epochs": 1, "verbose": 0}}
    with pytest.warns(NotNormalizedWarning, match="not z-normalised"):
        train(resolve("seed", shape, tiny), X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotNormalizedWarning)
        train(resolve("seed", shape, {**tiny, "normalize": "zscore"}), X, y)
        train(resolve("seed", shape, tiny), *_data()[:1], y)  # already z-normalised
        pf = {"model": {"d_model": 8, "depth": 1, "n_heads": 1, "stem_width": 4},
              "train": {"epochs": 1, "verbose": 0}, "members": 1}
        train(resolve("patchformer", shape, pf), X, y)  # instance norm inside


def test_normalize_is_validated_and_accepted_by_the_cli(tmp_path, capsys):
    with pytest.raises(tsformer.ConfigError, match="normalize must be 'none' or 'zscore'"):
        resolve("seed", DataShape(1, 8, 2), {"normalize": "minmax"})
    assert main(["summary", "--set", "normalize=zscore"]) == 0
    assert "norm (InstanceNorm)" in capsys.readouterr().out
    assert main(["summary", "--set", "normalize=l2"]) == 2
    assert "normalize must be" in capsys.readouterr().err


def test_a_run_without_a_progress_bar_reports_its_pace_and_duration(monkeypatch):
    monkeypatch.setattr(loop._Pace, "FIRST", 0.0)
    lines: list[str] = []
    X, y = _data(n=64)
    cfg = resolve("seed", DataShape.of(X, 2), {"model": TINY_SEED, "train": {
        "epochs": 3, "batch_size": 8, "validation_split": 0.0}})
    loop.fit(cfg.build(), X, y, cfg.train, log=lines.append)
    pace = [ln for ln in lines if "left of the run" in ln]
    assert pace and pace[0].startswith("epoch 1/3: step 1/8") and "(3 epochs;" in pace[0]
    assert sum("left of the run" in ln for ln in lines) == 1  # then every 30 s, not each step


def test_threads_flag_sets_torchs_threads(tmp_path, monkeypatch, capsys):
    X, y = _data()
    np.savetxt(tmp_path / "a.tsv", np.column_stack([y, X[:, 0]]), delimiter="\t")
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    assert main(["train", "--train", str(tmp_path / "a.tsv"), "--epochs", "1", "--threads", "1",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert seen == [1]
    with pytest.raises(SystemExit) as e:
        main(["train", "--train", str(tmp_path / "a.tsv"), "--threads", "0"])
    assert e.value.code == 2 and "--threads: must be at least 1" in capsys.readouterr().err


def test_run_directories_are_readable_like_any_other_files(tmp_path):
    X, y = _data()
    clf = tsformer.TransformerClassifier(epochs=1, model_params=TINY_SEED, verbose=0).fit(X, y)
    out = clf.save(tmp_path / "run")
    assert stat.S_IMODE(out.stat().st_mode) & 0o055 == 0o055  # group/others may list it
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044, f.name  # and read it


def test_balanced_class_weights_follow_scikit_learn_and_change_training():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 18 + [1] * 6)
    np.testing.assert_allclose(loop.class_weights(y, 2, "balanced"),
                               compute_class_weight("balanced", classes=np.arange(2), y=y))
    assert loop.class_weights(y, 3, "balanced")[2] == 0.0  # absent class: no weight
    assert loop.class_weights(y, 2, "none") is None
    X, _ = _data(n=24)
    fits = {}
    for rule in ("none", "balanced"):
        clf = tsformer.TransformerClassifier(epochs=2, model_params=TINY_SEED, random_state=0,
                                             verbose=0, validation_split=0.0,
                                             train_params={"class_weight": rule})
        fits[rule] = clf.fit(X, y).predict_proba(X)
    assert not np.allclose(fits["none"], fits["balanced"])
    with pytest.raises(tsformer.ConfigError, match="class_weight must be"):
        tsformer.TransformerClassifier(train_params={"class_weight": "auto"}).fit(X, y)


def test_on_epoch_end_sees_each_epoch_and_can_stop_training():
    X, y = _data()
    seen = []

    def callback(epoch, metrics):
        seen.append((epoch, round(metrics["loss"], 6)))
        return epoch == 2

    clf = tsformer.TransformerClassifier(epochs=10, model_params=TINY_SEED, verbose=0)
    clf.fit(X, y, on_epoch_end=callback)
    assert [e for e, _ in seen] == [1, 2] and len(clf.history_.rows) == 2
    with pytest.raises(tsformer.ConfigError, match="on_epoch_end must be a function"):
        clf.fit(X, y, on_epoch_end="stop")


def test_summary_header_names_what_differs_from_the_preset(capsys):
    assert main(["summary", "--set", "model.variant=postnorm"]) == 0
    assert capsys.readouterr().out.startswith('Model: "seed" (seed_transformer, variant=postnorm)')


def test_predict_says_both_readings_when_a_file_has_the_wrong_length(tmp_path, capsys):
    X, y = _data()
    clf = tsformer.TransformerClassifier(epochs=1, model_params=TINY_SEED, verbose=0).fit(X, y)
    clf.save(tmp_path / "m")
    np.savetxt(tmp_path / "x.csv", np.zeros((3, 100)), delimiter=",")
    assert main(["predict", str(tmp_path / "m"), str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "100 points (or 1 channel(s) x 99 points after a first column of labels)" in err


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, capsys):
    from tsformer.pipeline import resume, save_run

    X, y = _data(n=32)
    over = {"model": {"d_model": 8, "depth": 1, "n_heads": 1, "stem_width": 4},
            "train": {"epochs": 6, "verbose": 0, "validation_split": 0.0}, "members": 1}
    cfg = resolve("patchformer", DataShape.of(X, 2), over)
    whole = train(cfg, X, y).histories[0]

    def ctrl_c(epoch, row):
        if epoch == 3:
            raise KeyboardInterrupt

    cut = train(cfg, X, y, on_epoch_end=ctrl_c)
    assert cut.interrupted and len(cut.histories[0].rows) == 3
    save_run(tmp_path / "run", cut, plots=False)
    done = resume(tmp_path / "run", X, y).histories[0]
    assert [r["epoch"] for r in done.rows] == [1, 2, 3, 4, 5, 6]
    # the schedule goes on where it stopped: the learning rates of an uninterrupted run
    np.testing.assert_allclose([r["lr"] for r in done.rows], [r["lr"] for r in whole.rows],
                               rtol=1e-5)  # the saved epochs went through history.csv
    with pytest.raises(tsformer.ConfigError, match="already trained 6 of 6 epochs"):
        save_run(tmp_path / "run", type(cut)(cut.model, cut.config, [done]), plots=False,
                 overwrite=True)
        resume(tmp_path / "run", X, y)
    assert main(["train", "--resume", str(tmp_path / "run"), "--lr", "0.1"]) == 2
    assert "drop --lr" in capsys.readouterr().err
