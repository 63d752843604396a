"""Hostile input to the command line and the Python API: every case ends in one line and exit
code 2 (CLI) or one exception of the library's family (API), and leaves nothing on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run

import tsformer
from tsformer import ConfigError, DataError, ModelDirError, TrainingError, TsformerError
from tsformer.cli import main

ROOT = Path(__file__).resolve().parents[1]


def one_line_exit_2(code: int, out: str, err: str, words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(("tsformer: error:", "tsformer ")), err
    assert words in lines[0], err
    assert "Traceback" not in err and out == ""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A labelled 40 x 24 two-class TSV pair and a seed model trained on it for one epoch."""
    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = rng.normal(size=(40, 24)) + y[:, None]
    np.savetxt(d / "T_TRAIN.tsv", np.column_stack([y, X]), delimiter="\t", fmt="%.5g")
    np.savetxt(d / "T_TEST.tsv", np.column_stack([y[:10], X[:10]]), delimiter="\t", fmt="%.5g")
    run_dir = d / "run"
    assert main(["train", "--train", str(d / "T_TRAIN.tsv"), "--test", str(d / "T_TEST.tsv"),
                 "--epochs", "1", "--out", str(run_dir), "--quiet", "--seed", "0"]) == 0
    return d, run_dir


# --------------------------------------------------------------------------- options

BAD_TRAIN_FLAGS = [
    (["--batch-size", "0"], "must be at least 1"),
    (["--batch-size", "-5"], "must be at least 1"),
    (["--batch-size", "2.5"], "not a whole number"),
    (["--epochs", "0"], "must be at least 1"),
    (["--epochs", "-3"], "must be at least 1"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--lr", "0"], "lr must be > 0"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--seed", str(2**70)], "seed must be >= 0"),
    (["--validation-split", "-0.2"], "validation_split must be >= 0"),
    (["--validation-split", "nan"], "validation_split must be a finite number"),
    (["--validation-split", "1.5"], "validation_split must be >= 0 and < 1"),
    (["--patience", "-1"], "patience must be >= 0"),
    (["--device", "tpu9"], "unknown device 'tpu9'"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--set", "train.epochs=ten"], "epochs must be a whole number"),
    (["--set", "train.augment=[\"crop\"]"], "augment must be a list of"),
    (["--set", "model.num_heads=0"], "num_heads must be >= 1"),
    (["--set", "model.nope=1"], "unknown model option 'nope'"),
    (["--set", "members=0"], "members must be a whole number in [1, 64]"),
    (["--set", "lr=1"], "--set wants model.NAME=VALUE"),
    (["--dataset", ""], "--dataset is empty"),
    (["--dataset", "ECG200", "--test", "missing.csv"], "--test goes with --train"),
    (["--dataset", "X", "--train", "y.tsv"], "either --dataset NAME or --train FILE"),
]


@pytest.mark.parametrize("argv, words", BAD_TRAIN_FLAGS,
                         ids=[" ".join(a)[:40] for a, _ in BAD_TRAIN_FLAGS])
def test_bad_train_options_fail_before_any_data_is_read(argv, words, tmp_path, monkeypatch,
                                                        capsys, no_data_reads):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "train", *argv, "--quiet")
    one_line_exit_2(code, out, err, words)
    assert list(tmp_path.iterdir()) == []  # no run directory, no temporary one


BAD_CONFIG_FILES = [
    ('{"preset": "seed", "train": {"epochs": "ten"}}', "epochs must be a whole number"),
    ('{"preset": "seed", "model": {"num_heads": 0}}', "num_heads must be >= 1"),
    ('{"preset": "seed", "train": {"lr": -1}}', "lr must be > 0"),
    ('{"preset": "seed", "bogus": 1}', "unknown key(s) bogus"),
    ('{"preset": 3}', "preset name"),
    ("[1, 2]", "JSON object"),
    ("{", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
]


@pytest.mark.parametrize("content, words", BAD_CONFIG_FILES,
                         ids=[c[:24] for c, _ in BAD_CONFIG_FILES])
def test_bad_config_files_fail_before_any_data_is_read(content, words, tmp_path, monkeypatch,
                                                       capsys, no_data_reads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text(content)
    code, out, err = run(capsys, "train", "--config", "c.json", "--quiet")
    one_line_exit_2(code, out, err, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


# --------------------------------------------------------------------------- corrupt model dirs

def _corrupt(run_dir: Path, dst: Path, change) -> Path:
    import shutil

    shutil.copytree(run_dir, dst)
    cfg = json.loads((dst / "config.json").read_text())
    change(cfg)
    (dst / "config.json").write_text(json.dumps(cfg) if not isinstance(cfg, str) else cfg)
    return dst


def _set(path: str, value):
    def change(cfg):
        keys = path.split(".")
        for k in keys[:-1]:
            cfg = cfg[k]
        cfg[keys[-1]] = value
    return change


CORRUPT = [
    ("format_version", "2", "format_version '2' is not supported"),
    ("format_version", 1, "retrain the model"),
    ("format_version", 9, "upgrade tsformer"),
    ("input.n_channels", "abc", "n_channels must be a whole number"),
    ("input.n_channels", -1, "n_channels must be a whole number"),
    ("input.n_timepoints", 10**13, "n_timepoints must be a whole number"),
    ("arch", ["x"], "unknown architecture"),
    ("classes", "ab", "classes must list at least two labels"),
    ("classes", [1, 1], "classes must be distinct"),
    ("classes", [1], "classes must list at least two labels"),
    ("model.head_size", 0, "head_size must be >= 1"),
    ("train.amp", "bf16-emulated", "amp must be"),
    ("members", 2, "does not match config.json"),
]


@pytest.mark.parametrize("key, value, words", CORRUPT, ids=[f"{k}={v!r}"[:30] for k, v, _ in
                                                             CORRUPT])
def test_corrupt_config_json_is_one_line_for_predict_and_load(key, value, words, tiny, tmp_path,
                                                             capsys):
    d, run_dir = tiny
    bad = _corrupt(run_dir, tmp_path / "bad", _set(key, value))
    code, out, err = run(capsys, "predict", bad, d / "T_TEST.tsv")
    one_line_exit_2(code, out, err, words)
    with pytest.raises(ModelDirError, match="config.json|model.safetensors"):
        tsformer.load(bad)


def test_non_finite_weights_are_blamed_on_the_file_not_the_input(tiny, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    d, run_dir = tiny
    bad = _corrupt(run_dir, tmp_path / "nan", lambda c: None)
    state = load_file(str(bad / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone().fill_(float("nan"))
    save_file(state, str(bad / "model.safetensors"))
    code, out, err = run(capsys, "predict", bad, d / "T_TEST.tsv")
    one_line_exit_2(code, out, err, f"non-finite weights (NaN or infinity) in {name}")
    assert "rescale" not in err


def test_deeply_nested_or_huge_config_json_is_refused_unparsed(tiny, tmp_path, capsys):
    d, run_dir = tiny
    nested = _corrupt(run_dir, tmp_path / "nested", lambda c: None)
    (nested / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    code, out, err = run(capsys, "evaluate", nested, "--file", d / "T_TEST.tsv")
    one_line_exit_2(code, out, err, "not valid JSON")
    (nested / "config.json").write_text(" " * (2 << 20))
    code, out, err = run(capsys, "evaluate", nested, "--file", d / "T_TEST.tsv")
    one_line_exit_2(code, out, err, "over the 1,048,576-byte limit")


def test_a_binary_history_does_not_stop_a_model_loading(tiny, tmp_path):
    _, run_dir = tiny
    copy = _corrupt(run_dir, tmp_path / "c", lambda c: None)
    (copy / "history.csv").write_bytes(b"\xff\xfe\x00binary")
    clf = tsformer.load(copy)
    assert clf.history_.rows == [] and len(clf.classes_) == 2


# --------------------------------------------------------------------------- outputs and paths

@pytest.mark.parametrize("where, words", [
    ("afile/run", "afile is not a directory"),
    ("/proc/tsformer-test/run", "not writable"),
    (".", "is the current directory"),
    ("..", "is the current directory or holds it"),
])
def test_unwritable_out_fails_before_training(where, words, tiny, tmp_path, monkeypatch, capsys):
    d, _ = tiny
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    code, out, err = run(capsys, "train", "--train", d / "T_TRAIN.tsv", "--out", where)
    one_line_exit_2(code, out, err, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("target, words", [
    ("missing-dir/p.csv", "does not exist"),
    (".", "is a directory"),
])
def test_predict_output_is_checked_before_work(target, words, tiny, tmp_path, monkeypatch,
                                               capsys):
    d, run_dir = tiny
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "predict", run_dir, d / "T_TEST.tsv", "--output", target)
    one_line_exit_2(code, out, err, words)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "0"], "must be at least 1"),
    (["--batch-size", "-1"], "must be at least 1"),
    (["--format", "xml"], "invalid choice"),
])
def test_predict_options(argv, words, tiny, capsys):
    d, run_dir = tiny
    code, out, err = run(capsys, "predict", run_dir, d / "T_TEST.tsv", *argv)
    assert code == 2 and words in err and "Traceback" not in err


def test_values_that_overflow_the_model_are_refused_not_printed_as_nan(tiny, tmp_path, capsys):
    d, run_dir = tiny
    huge = tmp_path / "huge.tsv"
    np.savetxt(huge, np.full((3, 24), 3e38), delimiter="\t")
    for fmt in ("json", "csv"):
        code, out, err = run(capsys, "predict", run_dir, huge, "--format", fmt, "--no-labels")
        one_line_exit_2(code, out, err, "overflow the model")
    labelled = tmp_path / "huge_l.tsv"
    np.savetxt(labelled, np.column_stack([[0, 1, 0], np.full((3, 24), 3e38)]), delimiter="\t")
    code, out, err = run(capsys, "evaluate", run_dir, "--file", labelled, "--json")
    one_line_exit_2(code, out, err, "overflow the model")


def test_diverged_training_is_an_error_and_saves_nothing(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 20)) * 3e37
    np.savetxt(tmp_path / "h.tsv", np.column_stack([np.arange(30) % 2, X]), delimiter="\t")
    code, out, err = run(capsys, "train", "--train", tmp_path / "h.tsv", "--epochs", "2",
                         "--out", tmp_path / "run", "--quiet")
    assert code == 2 and "training diverged in epoch 1" in err and "scale the data" in err
    assert err.strip().splitlines()[-1].startswith("tsformer: error:")
    assert not (tmp_path / "run").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["h.tsv"]


def test_a_dead_runs_temporary_directory_is_cleaned_up_by_the_next_save(tiny, tmp_path):
    from tsformer.model_dir import write_dir_atomic

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".run.tmp-{dead.pid}-abc"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    mine = tmp_path / f".run.tmp-{os.getpid()}-live"  # a live process's: left alone
    mine.mkdir()
    write_dir_atomic(tmp_path / "run", {"a.txt": "x"})
    assert not stale.exists() and mine.exists() and (tmp_path / "run" / "a.txt").exists()


@pytest.mark.slow
def test_sigterm_keeps_the_best_model_so_far_and_exits_non_zero(tiny, tmp_path):
    d, _ = tiny
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsformer", "train", "--train", str(d / "T_TRAIN.tsv"), "--test",
         str(d / "T_TEST.tsv"), "--epochs", "100000", "--out", str(out), "--set",
         "train.patience=null"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # wait for a finished epoch, then stop it as a scheduler would
        if line.startswith("epoch 2/") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "(interrupted: best model so far)" in stdout
    assert (out / "model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


# --------------------------------------------------------------------------- Python API

BAD_ESTIMATORS = [
    ({"batch_size": 0}, ConfigError, "batch_size must be >= 1"),
    ({"lr": float("nan")}, ConfigError, "lr must be a finite number"),
    ({"epochs": 0}, ConfigError, "epochs must be >= 1"),
    ({"validation_split": 1.5}, ConfigError, "validation_split"),
    ({"patience": -1}, ConfigError, "patience must be >= 0"),
    ({"predict_batch_size": 0}, ConfigError, "predict_batch_size"),
    ({"members": 0}, ConfigError, "members"),
    ({"model_params": {"nope": 1}}, ConfigError, "unknown model option 'nope'"),
    ({"model_params": "abc"}, ConfigError, "must be an object"),
    ({"train_params": {"seed": 1}}, ConfigError, "random_state= parameter"),
    ({"train_params": {"augment": "jitter"}}, ConfigError, "augment must be a list"),
    ({"random_state": "x"}, ConfigError, "random_state"),
    ({"verbose": "loud"}, ConfigError, "verbose"),
    ({"preset": "nope"}, ConfigError, "unknown preset"),
    ({"device": "tpu9"}, ConfigError, "unknown device"),
]


@pytest.mark.parametrize("params, error, words", BAD_ESTIMATORS,
                         ids=[str(p)[:30] for p, _, _ in BAD_ESTIMATORS])
def test_bad_estimator_parameters_fail_in_fit_before_the_data(params, error, words, monkeypatch):
    from tsformer import estimator

    def refuse(*a, **k):
        raise AssertionError("the data was looked at before the parameters were checked")

    monkeypatch.setattr(estimator, "_as_series", refuse)
    clf = tsformer.TransformerClassifier(**params)
    with pytest.raises(error) as e:
        clf.fit(np.zeros((4, 10)), [0, 1, 0, 1])
    assert isinstance(e.value, TsformerError) and words in str(e.value)
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("X, words", [
    (np.full((4, 10), np.nan), "NaN"),
    (np.zeros((4, 0)), "0 feature"),
    (np.zeros(10), "1-D"),
    (np.zeros((4, 10), dtype=complex), "Complex"),
    ([[1, 2], [3]], "ragged"),
])
def test_bad_training_arrays_are_one_data_error(X, words):
    with pytest.raises(DataError, match=words):
        tsformer.TransformerClassifier(epochs=1).fit(X, [0, 1, 0, 1][:len(X)])


def test_predicting_values_that_overflow_the_model_raises_not_nan(tiny):
    _, run_dir = tiny
    clf = tsformer.load(run_dir)
    with pytest.raises(DataError, match="overflow the model"):
        clf.predict_proba(np.full((2, 24), 3e38, np.float32))


def test_divergence_in_the_api_is_a_training_error():
    X = np.random.default_rng(0).normal(size=(20, 16)) * 3e37
    with pytest.raises(TrainingError, match="diverged"):
        tsformer.TransformerClassifier(epochs=2, verbose=0).fit(X, np.arange(20) % 2)


@pytest.mark.parametrize("argv, words", [
    (["benchmark", "--seeds", "100000000000", "--datasets", "X"], "must be 1-1000"),
    (["benchmark", "--resamples", "0", "--datasets", "X"], "must be at least 1"),
    (["benchmark", "--max-epochs", "0", "--datasets", "X"], "must be at least 1"),
    (["benchmark", "--first-seed", "-1", "--datasets", "X"], "must be 0 or more"),
    (["benchmark", "--merge", "afile"], "is not a directory written by"),
    (["benchmark", "--out", "afile", "--datasets", "X"], "is a file, not a directory"),
    (["tune", "--dataset", "X", "--trials", "1", "--seed", "-1"], "must be 0 or more"),
    (["tune", "--dataset", "X", "--trials", "1", "--epochs", "0"], "must be at least 1"),
    (["tune", "--dataset", "X", "--trials", "1", "--timeout", "nan"], "positive number of sec"),
    (["tune", "--dataset", "X", "--trials", "1", "--study", ""], "--study is empty"),
    (["tune", "--dataset", "X", "--trials", "1", "--device", "tpu"], "unknown device 'tpu'"),
    (["tune", "--dataset", "X", "--trials", "1", "--out", "afile"], "is a file, not a director"),
    (["tune", "--dataset", "X", "--trials", "1", "--validation-split", "1"], "above 0 and below"),
])
def test_benchmark_and_tune_refuse_bad_options_before_any_work(argv, words, tmp_path,
                                                              monkeypatch, capsys,
                                                              no_data_reads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    code, out, err = run(capsys, *argv)
    assert code == 2 and words in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_unopenable_study_storage_is_one_line(tmp_path, monkeypatch, capsys):
    from tsformer.tune import open_study

    with pytest.raises(ConfigError, match="cannot open the study storage foo://bar"):
        open_study("foo://bar", "s")


def test_a_full_or_closed_stdout_is_one_line_or_silence(tiny, capsys):
    d, run_dir = tiny
    full = subprocess.run(f"{sys.executable} -m tsformer summary > /dev/full", shell=True,
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert full.returncode == 2 and full.stderr.strip().splitlines() == [
        "tsformer: error: cannot write the output (No space left on device)"]
    closed = subprocess.run(f"{sys.executable} -m tsformer predict {run_dir} "
                            f"{d / 'T_TEST.tsv'} >&-", shell=True, capture_output=True,
                            text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert closed.returncode == 0 and "Traceback" not in closed.stderr


def test_overwrite_replaces_only_a_model_directory(tiny, tmp_path, capsys):
    d, _ = tiny
    user = tmp_path / "userdata"
    (user / "sub").mkdir(parents=True)
    (user / "thesis.txt").write_text("years of work")
    code, out, err = run(capsys, "train", "--train", d / "T_TRAIN.tsv", "--out", user,
                         "--overwrite", "--epochs", "1")
    one_line_exit_2(code, out, err, "will not overwrite")
    assert (user / "thesis.txt").read_text() == "years of work"


def test_predict_output_writes_through_a_symlink_and_into_a_device(tiny, tmp_path, capsys):
    d, run_dir = tiny
    target = tmp_path / "target.csv"
    target.write_text("old")
    (tmp_path / "link.csv").symlink_to(target)
    assert main(["predict", str(run_dir), str(d / "T_TEST.tsv"), "--output",
                 str(tmp_path / "link.csv")]) == 0
    assert (tmp_path / "link.csv").is_symlink() and target.read_text().startswith("index,")
    assert main(["predict", str(run_dir), str(d / "T_TEST.tsv"), "--output",
                 "/dev/null"]) == 0
    assert Path("/dev/null").is_char_device()


def test_resume_on_data_of_another_shape_is_one_line(tiny, tmp_path, capsys):
    d, run_dir = tiny
    np.savetxt(tmp_path / "short.tsv", np.column_stack([[0, 1], np.zeros((2, 10))]),
               delimiter="\t")
    import shutil

    shutil.copytree(run_dir, tmp_path / "run")
    code, out, err = run(capsys, "train", "--resume", tmp_path / "run", "--train",
                         tmp_path / "short.tsv", "--epochs", "3")
    one_line_exit_2(code, out, err, "but the model's are 1 x 24")


def test_classes_that_print_alike_and_huge_class_counts_are_refused_fast():
    from tsformer.config import DataShape, resolve

    with pytest.raises(ConfigError, match="classes must be distinct"):
        resolve("seed", DataShape(1, 8, 2), classes=["1", 1])
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="n_classes must be a whole number"):
        tsformer.create_model("seed", n_channels=1, n_timepoints=24, n_classes=10**9)
    assert time.perf_counter() - t0 < 5


def test_api_misuse_stays_in_the_library_error_family(tiny):
    from sklearn.exceptions import NotFittedError

    clf = tsformer.TransformerClassifier()
    with pytest.raises(TsformerError) as e:
        clf.predict(np.zeros((2, 5)))
    assert isinstance(e.value, NotFittedError)  # and scikit-learn's, as its checks expect
    for call in (lambda: tsformer.load(None), lambda: tsformer.load(5),
                 lambda: tsformer.create_model("seed", n_channels=1, n_timepoints=24,
                                               n_classes="2")):
        with pytest.raises(ConfigError):
            call()
