"""The ``tsformer`` command: run directories, reuse of a run's config, one-line user errors."""

import contextlib
import io
import json

import numpy as np
import pytest
from cli_helpers import run

import tsformer
from tsformer.cli import main

#: Series and points of the CLI's training data: small enough that the seed preset trains two
#: epochs in well under a second on one thread (its attention cost grows fast with length).
N_TRAIN, N_TEST, LENGTH = 80, 40, 64


def _quiet_main(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in argv])
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def small_tsv(tmp_path_factory, forda_small, tsv_writer):
    """Small_TRAIN.tsv / Small_TEST.tsv: 80 / 40 FordA series of 64 points (read-only)."""
    Xtr, ytr, Xte, yte = forda_small
    data = (Xtr[:N_TRAIN, :, :LENGTH], ytr[:N_TRAIN], Xte[:N_TEST, :, :LENGTH], yte[:N_TEST])
    return tsv_writer(tmp_path_factory.mktemp("data"), data)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_tsv):
    """One short CLI training run shared by the tests that read its run directory."""
    train, test = small_tsv
    out = tmp_path_factory.mktemp("runs") / "run"
    code, stdout, stderr = _quiet_main(["train", "--train", train, "--test", test, "--epochs",
                                        "2", "--lr", "1e-3", "--device", "cpu", "--out", out,
                                        "--quiet"])
    assert code == 0, stderr
    return out, stdout, stderr


def test_train_writes_a_complete_run_directory(trained):
    out, stdout, _ = trained
    assert "test accuracy:" in stdout and str(out) in stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.json", "confusion_matrix.png", "history.csv",
                     "metrics.json", "model.safetensors", "reliability.png", "sample.json",
                     "training_curves.png"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["classes"] == [-1, 1] and cfg["input"]["n_timepoints"] == LENGTH
    assert cfg["format_version"] == 2 and cfg["preset"] == "seed" and cfg["members"] == 1
    assert cfg["data"] == {"name": "Small_TRAIN", "source": "file"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 2 and len(m["test"]["confusion_matrix"]) == 2
    assert (out / "history.csv").read_text().startswith("epoch,loss,accuracy")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_default_run_is_capped_and_announced(tmp_path, small_tsv, capsys, monkeypatch):
    import tsformer.cli.train as train_cmd

    monkeypatch.setattr(train_cmd, "QUICK_EPOCHS", 1)
    train, test = small_tsv
    code, _, err = run(capsys, "train", "--train", train, "--test", test,
                       "--out", tmp_path / "r", "--quiet")
    assert code == 0 and "--full" in err and "at most 1 epochs" in err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["epochs_run"] == 1
    # the capped run keeps the full schedule's options but its epochs
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["train"]["epochs"] == 1


#: patchformer shrunk to train in a blink (the note is about its training schedule).
SMALL_PATCHFORMER = ["--set", "members=1", "--set", "model.stem=conv", "--set",
                     "model.stem_width=4", "--set", "model.d_model=8", "--set", "model.n_heads=1",
                     "--set", "model.depth=1"]


def test_capped_note_states_the_full_schedule_stopping_rule(tmp_path, small_tsv, capsys,
                                                            monkeypatch):
    # patchformer's full schedule has no early stopping; the note must not claim one
    import tsformer.cli.train as train_cmd

    monkeypatch.setattr(train_cmd, "QUICK_EPOCHS", 1)
    train, test = small_tsv
    code, _, err = run(capsys, "train", "--train", train, "--test", test,
                       "--preset", "patchformer", *SMALL_PATCHFORMER,
                       "--out", tmp_path / "r", "--quiet")
    assert code == 0 and "epochs, no early stopping) is --full" in err, err


def test_evaluate_and_predict(trained, small_tsv, tmp_path, capsys):
    out, stdout, _ = trained
    _, test = small_tsv
    code, text, _ = run(capsys, "evaluate", out, "--file", test, "--json")
    assert code == 0
    acc = json.loads(text)["accuracy"]
    assert f"{acc:.4f}" in stdout  # same figure as at the end of training

    code, text, _ = run(capsys, "predict", out, test)
    rows = text.strip().splitlines()
    assert code == 0 and rows[0] == "index,label,p_-1,p_1" and len(rows) == N_TEST + 1
    # a file without the label column predicts the same
    data = np.loadtxt(test, delimiter="\t")
    unl = tmp_path / "unlabelled.csv"
    np.savetxt(unl, data[:, 1:], delimiter=",")
    code, text2, _ = run(capsys, "predict", out, unl)
    assert code == 0 and text2 == text
    code, js, _ = run(capsys, "predict", out, test, "--format", "json")
    pred = json.loads(js)
    assert len(pred) == N_TEST and set(pred[0]["probabilities"]) == {"-1", "1"}
    assert abs(sum(pred[0]["probabilities"].values()) - 1) < 1e-5


def test_summary_and_datasets(capsys):
    code, out, _ = run(capsys, "summary", "--preset", "seed", "--set", "model.variant=postnorm")
    assert code == 0 and "Total params: 93,130" in out, out
    code, prenorm, _ = run(capsys, "summary", "--preset", "seed")
    assert code == 0 and "Total params: 93,130" in prenorm

    def layers(text):
        return [ln.split()[0] for ln in text.splitlines() if ln.startswith("blocks.0.")]

    # post-norm: the LayerNormalization follows the attention and feed-forward it normalises
    assert layers(out) != layers(prenorm) and sorted(layers(out)) == sorted(layers(prenorm))
    assert layers(prenorm)[0] == "blocks.0.attn_norm" != layers(out)[0]
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "FordA" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "FordAA"], "FordA"),                   # unknown name, suggestion
    (["train", "--train", "missing.tsv"], "missing.tsv"),
    (["train", "--preset", "nope"], "unknown preset"),
    (["train", "--epochs", "ten"], "'ten' is not a whole number"),
    (["evaluate", "no/such/run"], "does not exist"),
    (["summary", "--set", "model.variant=sideways"], "variant"),
    (["summary", "--variant", "postnorm"], "unrecognized arguments: --variant"),
    (["frobnicate"], "invalid choice"),
    (["train", "--config", "no-such-config.json"], "does not exist"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv, message", [
    (["--set", "train.lr=nan"], "training option lr must be"),
    (["--set", "model.nope=1"], "unknown model option 'nope'"),
    (["--batch-size", "0"], "--batch-size: must be at least 1, not 0"),
    (["--epochs", "0"], "--epochs: must be at least 1, not 0"),
    (["--device", "tpu9"], "unknown device 'tpu9'"),
    (["--dataset", ""], "--dataset is empty"),
    (["--test", "x.csv"], "--test goes with --train"),
    (["--out", "afile/run"], "afile is not a directory"),
])
def test_train_refuses_bad_options_before_reading_data(argv, message, tmp_path, monkeypatch,
                                                       capsys, no_data_reads):
    monkeypatch.chdir(tmp_path)  # the default run directory would land here
    (tmp_path / "afile").write_text("a regular file\n")
    code, out, err = run(capsys, "train", *argv, "--quiet")
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and out == ""
    left = sorted(p.name for p in tmp_path.rglob("*"))
    assert left == ["afile"], left  # no run directory, no .tmp- directory


def test_predict_refuses_wrong_length_and_existing_out(trained, tmp_path, capsys):
    out, _, _ = trained
    bad = tmp_path / "short.csv"
    np.savetxt(bad, np.zeros((3, 20)), delimiter=",")
    code, _, err = run(capsys, "predict", out, bad)
    assert code == 2 and "never resampled" in err
    code, _, err = run(capsys, "train", "--train", bad, "--out", out)
    assert code == 2 and "already exists" in err
    # unequal lengths (rows padded with trailing NaN) are resampled to the model's, and said so
    t = json.loads((out / "config.json").read_text())["input"]["n_timepoints"]
    ragged = np.full((2, 30), np.nan)
    ragged[0, :30], ragged[1, :12] = np.sin(np.arange(30)), np.cos(np.arange(12))
    var = tmp_path / "var.csv"
    np.savetxt(var, ragged, delimiter=",")
    code, text, err = run(capsys, "predict", out, var)
    assert code == 0 and len(text.strip().splitlines()) == 3
    assert f"tsformer: note: var.csv holds series of 12-30 points; resampled to {t}" in err
    # the same rows behind a label column of the model's classes: read as labelled
    np.savetxt(var, np.column_stack([[-1, 1], ragged]), delimiter=",")
    code, text2, err = run(capsys, "predict", out, var)
    assert code == 0 and text2 == text and "12-30 points" in err
    # whose longest series is the model's length: resampled all the same, and said so
    full = np.full((2, t + 1), np.nan)
    full[0, :t], full[1, :5] = np.sin(np.arange(t)), 1.0
    np.savetxt(var, full, delimiter=",")
    code, text3, err = run(capsys, "predict", out, var)
    assert code == 0 and f"of 5-{t} points; resampled to {t}" in err
    # values that are not classes are not labels, unless --labels says they are
    np.savetxt(var, np.column_stack([[7, 8], ragged]), delimiter=",")
    code, text4, err = run(capsys, "predict", out, var)
    assert code == 0 and "13-31 points" in err
    code, text5, err = run(capsys, "predict", out, var, "--labels")
    assert code == 0 and text5 == text and "12-30 points" in err
    # --no-labels on a file whose first column is text: that column, named, not a traceback
    txt = tmp_path / "text.csv"
    txt.write_text("a," + ",".join(["1"] * t) + "\n")
    code, _, err = run(capsys, "predict", out, txt, "--no-labels")
    assert code == 2 and "non-numeric value 'a'" in err and len(err.strip().splitlines()) == 1
    # evaluation needs labels: an unseen class is named, not taken for a value
    code, _, err = run(capsys, "evaluate", out, "--file", var)
    assert code == 2 and "7" in err and "class" in err


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"preset": "seed", "train": {"learnrate": 1}}', "unknown training option 'learnrate'"),
    ('{"preset": "seed", "model": {"heads": 2}}', "unknown model option 'heads'"),
    ('{"model": {"num_heads": 2}}', "preset name"),
])
def test_bad_config_files_are_one_line(tmp_path, small_tsv, capsys, content, message):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(content)
    code, _, err = run(capsys, "train", "--train", small_tsv[0], "--config", cfg,
                       "--out", tmp_path / "never")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- one config layout


def _config(run_dir):
    return json.loads((run_dir / "config.json").read_text())


def test_cli_run_and_estimator_save_write_the_same_layout(tmp_path, small_tsv):
    from tsformer.data import load_file

    train, _ = small_tsv
    cli_dir = tmp_path / "cli"
    code, _, err = _quiet_main(["train", "--train", train, "--epochs", "2", "--lr", "1e-3",
                                "--seed", "3", "--device", "cpu", "--quiet", "--out", cli_dir])
    assert code == 0, err
    X, y = load_file(train)
    clf = tsformer.TransformerClassifier("seed", epochs=2, lr=1e-3, random_state=3, verbose=0,
                                        device="cpu")
    est_dir = clf.fit(X, y).save(tmp_path / "est", data={"name": "Small_TRAIN",
                                                           "source": "file"})

    cli_cfg, est_cfg = _config(cli_dir), _config(est_dir)
    assert set(cli_cfg) == set(est_cfg) == {
        "format", "format_version", "tsformer_version", "preset", "arch", "members",
        "normalize", "model", "train", "input", "classes", "data", "calibration",
        "n_parameters"}
    assert est_cfg["model"] == cli_cfg["model"]
    assert est_cfg["train"] == cli_cfg["train"]
    assert est_cfg == cli_cfg  # preset, members, input, classes, data, counts: all the same
    assert sorted(p.name for p in est_dir.iterdir()) == sorted(p.name for p in cli_dir.iterdir())
    assert set(json.loads((est_dir / "metrics.json").read_text())) == \
        set(json.loads((cli_dir / "metrics.json").read_text()))

    # tsformer.load reads both, and one path trained the same weights
    from_cli, from_est = tsformer.load(cli_dir, device="cpu"), tsformer.load(est_dir, device="cpu")
    np.testing.assert_array_equal(from_cli.predict_proba(X), from_est.predict_proba(X))
    np.testing.assert_array_equal(from_est.predict_proba(X), clf.predict_proba(X))
    assert list(from_cli.classes_) == list(from_est.classes_) == [-1, 1]
    assert from_cli.get_params()["model_params"] == cli_cfg["model"]


@pytest.mark.parametrize("which", ["run_dir", "config.json"])
def test_train_config_of_a_run_trains_the_same_model_again(trained, small_tsv, tmp_path, which):
    out, stdout, _ = trained
    train, test = small_tsv
    config = out if which == "run_dir" else out / "config.json"
    again = tmp_path / "again"
    code, stdout2, err = _quiet_main(["train", "--config", config, "--train", train, "--test",
                                      test, "--quiet", "--out", again])
    assert code == 0, err
    first, second = _config(out), _config(again)
    for key in ("preset", "arch", "members", "model", "train", "input", "classes", "data"):
        assert second[key] == first[key], key
    assert second["train"]["epochs"] == 2 and second["train"]["lr"] == 1e-3  # not capped to 10
    X = np.loadtxt(test, delimiter="\t")[:, None, 1:].astype(np.float32)
    a, b = tsformer.load(out, device="cpu"), tsformer.load(again, device="cpu")
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    line = [ln for ln in stdout.splitlines() if ln.startswith("test accuracy:")]
    assert line and line[0] in stdout2


def test_config_flags_win_over_the_config_file(trained, small_tsv, tmp_path):
    out, _, _ = trained
    train, _ = small_tsv
    again = tmp_path / "again"
    code, _, err = _quiet_main(["train", "--config", out, "--train", train, "--epochs", "1",
                                "--set", "model.num_blocks=1", "--quiet", "--out", again])
    assert code == 0, err
    saved = _config(again)
    assert saved["train"]["epochs"] == 1 and saved["model"]["num_blocks"] == 1
    assert saved["train"]["lr"] == 1e-3  # the rest comes from the file
    assert {k: v for k, v in saved["model"].items() if k != "num_blocks"} == \
        {k: v for k, v in _config(out)["model"].items() if k != "num_blocks"}

