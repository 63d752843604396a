import json

import numpy as np
import pytest

from tsformer.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, forda_small, tsv_writer):
    """One short CLI training run shared by the tests that read its run directory."""
    import contextlib
    import io

    train, test = tsv_writer(tmp_path_factory.mktemp("data"), forda_small)
    out = tmp_path_factory.mktemp("runs") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["train", "--train", str(train), "--test", str(test), "--epochs", "2",
                     "--lr", "1e-3", "--out", str(out), "--quiet"])
    assert code == 0, stderr.getvalue()
    return out, stdout.getvalue(), stderr.getvalue()


def test_train_writes_a_complete_run_directory(trained):
    out, stdout, _ = trained
    assert "test accuracy:" in stdout and str(out) in stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.json", "confusion_matrix.png", "history.csv",
                     "metrics.json", "model.safetensors", "sample.json", "training_curves.png"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["classes"] == [-1, 1] and cfg["input"]["n_timepoints"] == 150
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 2 and len(m["test"]["confusion_matrix"]) == 2
    assert (out / "history.csv").read_text().startswith("epoch,loss,accuracy")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_default_run_is_capped_and_announced(tmp_path, small_tsv, capsys, monkeypatch):
    import tsformer.cli as cli

    monkeypatch.setattr(cli, "QUICK_EPOCHS", 1)
    train, test = small_tsv
    code, _, err = run(capsys, "train", "--train", str(train), "--test", str(test),
                       "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0 and "--full" in err and "at most 1 epochs" in err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["epochs_run"] == 1


def test_capped_note_states_the_full_schedule_stopping_rule(tmp_path, small_tsv, capsys,
                                                            monkeypatch):
    # patchformer's full schedule has no early stopping; the note must not claim one
    import tsformer.cli as cli

    monkeypatch.setattr(cli, "QUICK_EPOCHS", 1)
    train, test = small_tsv
    code, _, err = run(capsys, "train", "--train", str(train), "--test", str(test),
                       "--preset", "patchformer", "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0 and "epochs, no early stopping) is --full" in err


def test_evaluate_and_predict(trained, small_tsv, tmp_path, capsys):
    out, stdout, _ = trained
    _, test = small_tsv
    code, text, _ = run(capsys, "evaluate", str(out), "--file", str(test), "--json")
    assert code == 0
    acc = json.loads(text)["accuracy"]
    assert f"{acc:.4f}" in stdout  # same figure as at the end of training

    code, text, _ = run(capsys, "predict", str(out), str(test))
    rows = text.strip().splitlines()
    assert code == 0 and rows[0] == "index,label,p_-1,p_1" and len(rows) == 101
    # a file without the label column predicts the same
    data = np.loadtxt(test, delimiter="\t")
    unl = tmp_path / "unlabelled.csv"
    np.savetxt(unl, data[:, 1:], delimiter=",")
    code, text2, _ = run(capsys, "predict", str(out), str(unl))
    assert code == 0 and text2 == text
    code, js, _ = run(capsys, "predict", str(out), str(test), "--format", "json")
    pred = json.loads(js)
    assert len(pred) == 100 and set(pred[0]["probabilities"]) == {"-1", "1"}
    assert abs(sum(pred[0]["probabilities"].values()) - 1) < 1e-5


def test_summary_and_datasets(capsys):
    code, out, _ = run(capsys, "summary", "--preset", "seed", "--variant", "postnorm")
    assert code == 0 and "Total params: 93,130" in out
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "FordA" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "FordAA"], "FordA"),                   # unknown name, suggestion
    (["train", "--train", "missing.tsv"], "missing.tsv"),
    (["train", "--preset", "nope"], "unknown preset"),
    (["train", "--epochs", "ten"], "invalid int"),
    (["evaluate", "no/such/run"], "does not exist"),
    (["summary", "--variant", "sideways"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    (["train", "--config", "no-such-config.json"], "does not exist"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) if argv[0] == "frobnicate" or "ten" in argv or \
            "sideways" in argv else _noop() as e:
        code = main(argv)
    code = e.value.code if hasattr(e, "value") else code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


class _noop:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_predict_refuses_wrong_length_and_existing_out(trained, tmp_path, capsys):
    out, _, _ = trained
    bad = tmp_path / "short.csv"
    np.savetxt(bad, np.zeros((3, 20)), delimiter=",")
    code, _, err = run(capsys, "predict", str(out), str(bad))
    assert code == 2 and "never resampled" in err
    code, _, err = run(capsys, "train", "--train", str(bad), "--out", str(out))
    assert code == 2
    # unequal lengths (rows padded with trailing NaN) are resampled to the model's, and said so
    t = json.loads((out / "config.json").read_text())["input"]["n_timepoints"]
    ragged = np.full((2, 30), np.nan)
    ragged[0, :30], ragged[1, :12] = np.sin(np.arange(30)), np.cos(np.arange(12))
    var = tmp_path / "var.csv"
    np.savetxt(var, ragged, delimiter=",")
    code, text, err = run(capsys, "predict", str(out), str(var))
    assert code == 0 and len(text.strip().splitlines()) == 3
    assert f"tsformer: note: var.csv holds series of 12-30 points; resampled to {t}" in err
    # the same rows behind a label column of the model's classes: read as labelled
    np.savetxt(var, np.column_stack([[-1, 1], ragged]), delimiter=",")
    code, text2, err = run(capsys, "predict", str(out), str(var))
    assert code == 0 and text2 == text and "12-30 points" in err
    # whose longest series is the model's length: resampled all the same, and said so
    full = np.full((2, t + 1), np.nan)
    full[0, :t], full[1, :5] = np.sin(np.arange(t)), 1.0
    np.savetxt(var, full, delimiter=",")
    code, text3, err = run(capsys, "predict", str(out), str(var))
    assert code == 0 and f"of 5-{t} points; resampled to {t}" in err
    # values that are not classes are not labels, unless --labels says they are
    np.savetxt(var, np.column_stack([[7, 8], ragged]), delimiter=",")
    code, text4, err = run(capsys, "predict", str(out), str(var))
    assert code == 0 and "13-31 points" in err
    code, text5, err = run(capsys, "predict", str(out), str(var), "--labels")
    assert code == 0 and text5 == text and "12-30 points" in err
    # --no-labels on a file whose first column is text: that column, named, not a traceback
    txt = tmp_path / "text.csv"
    txt.write_text("a," + ",".join(["1"] * t) + "\n")
    code, _, err = run(capsys, "predict", str(out), str(txt), "--no-labels")
    assert code == 2 and "non-numeric value 'a'" in err and len(err.strip().splitlines()) == 1
    # evaluation needs labels: an unseen class is named, not taken for a value
    code, _, err = run(capsys, "evaluate", str(out), "--file", str(var))
    assert code == 2 and "7" in err and "class" in err


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"preset": "seed", "train": {"learnrate": 1}}', "unknown training option"),
    ('{"preset": "seed", "model": {"heads": 2}}', "no model option 'heads'"),
])
def test_bad_config_files_are_one_line(tmp_path, small_tsv, capsys, content, message):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(content)
    code, _, err = run(capsys, "train", "--train", str(small_tsv[0]), "--config", str(cfg),
                       "--out", str(tmp_path / "never"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "never").exists()
