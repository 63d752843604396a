"""Hostile data files: every one is refused in one DataError line that names the file, quickly
and without allocating more than a small bound; plus regressions for input that used to be
silently misread (a ``nan`` label, ``1_000`` read as 1000, text arrays read as numbers).

Each case in ``CASES`` builds its file(s) in a temporary directory and returns a call and the
text the message must contain (the file's name).  The classes: ``sizes`` (headers that claim
more than the file holds, dtypes that are not numbers, the per-file ceiling), ``ts`` and
``text`` (hostile .ts and .csv/.tsv content: binary junk, invalid UTF-8, NUL bytes, odd
number spellings, absurd lines and labels), ``paths`` (what is at the path is not a readable
regular file).
"""

from __future__ import annotations

import builtins
import io
import os
import signal
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from tsformer import data
from tsformer.errors import DataError

#: What one hostile case may allocate (tracemalloc peak) and take.
PEAK_BYTES = 32 << 20
SECONDS = 10.0

Call = Callable[[], object]


@dataclass(frozen=True)
class Case:
    id: str
    cls: str  # sizes | ts | text | paths
    build: Callable[[Path], tuple[Call, str]]  # -> (the call, text the message must name)
    env: dict[str, str] = field(default_factory=dict)


def _load(p: Path, **kw) -> Call:
    return lambda: data.load_file(p, **kw)


# --------------------------------------------------------------------------- file makers


def _npy_bytes(shape, descr: str = "<f8", version=(1, 0), payload: bytes = b"") -> bytes:
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue() + payload


def _npy(tmp: Path, name: str, raw: bytes) -> Path:
    p = tmp / name
    p.write_bytes(raw)
    return p


def _saved(tmp: Path, name: str, arr: np.ndarray) -> Path:
    p = tmp / name
    with open(p, "wb") as f:
        np.lib.format.write_array(f, arr, allow_pickle=True)
    return p


def _zip(tmp: Path, name: str, members: dict[str, bytes], method=zipfile.ZIP_STORED) -> Path:
    p = tmp / name
    with zipfile.ZipFile(p, "w", compression=method) as z:
        for key, raw in members.items():
            z.writestr(key, raw)
    return p


def _patch_zip(p: Path, *, flag: int | None = None, method: int | None = None) -> Path:
    """Set the general-purpose flag / compression method of every member, as a hostile tool
    could (local headers at +6/+8, central directory entries at +8/+10)."""
    raw = bytearray(p.read_bytes())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = raw.find(sig)
        while i != -1:
            if flag is not None:
                raw[i + off : i + off + 2] = flag.to_bytes(2, "little")
            if method is not None:
                raw[i + off + 2 : i + off + 4] = method.to_bytes(2, "little")
            i = raw.find(sig, i + 4)
    p.write_bytes(bytes(raw))
    return p


def _text(tmp: Path, name: str, content: str | bytes) -> Path:
    p = tmp / name
    if isinstance(content, str):
        content = content.encode()
    p.write_bytes(content)
    return p


def _ts(rows: list[str], header: str = "@classLabel true a b") -> str:
    return "@problemName Hostile\n" + header + "\n@data\n" + "\n".join(rows) + "\n"


_JUNK = np.random.default_rng(0).bytes(200_000) + b"\xff\xfe"  # never valid UTF-8
_HUGE = (10**6, 1, 10**6)  # 10**12 float64 values: 7.3 TiB


def _symlink(tmp: Path, name: str, target: str) -> Path:
    p = tmp / name
    os.symlink(target, p)
    return p


def _fifo(tmp: Path) -> Path:
    p = tmp / "pipe.csv"
    os.mkfifo(p)
    return p


def _denied(p: Path) -> Call:
    """Reading ``p`` fails with EACCES (simulated: the tests may run as root)."""

    def call():
        real = builtins.open

        def fake(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(p):
                raise PermissionError(13, "Permission denied", str(p))
            return real(file, *args, **kwargs)

        with mock.patch("builtins.open", fake):
            return data.load_file(p)

    return call


def _dataset_dir_with_train_dir(tmp: Path) -> tuple[Call, str]:
    d = tmp / "Odd"
    (d / "Odd_TRAIN.tsv").mkdir(parents=True)
    (d / "Odd_TEST.tsv").write_text("1\t0\t1\n2\t1\t0\n")
    return (lambda: data.load_dataset(d / "Odd_TEST.tsv")), "Odd_TRAIN.tsv"


_LONG = "x" * 5000 + ".csv"
_LONG_LABEL = "L" * 300_000


# --------------------------------------------------------------------------- the cases

CASES: list[Case] = [
    # ---- sizes: what a header claims is checked against the file before allocating
    Case("npy_claims_7TiB", "sizes",
         lambda t: (_load(_npy(t, "huge.npy", _npy_bytes(_HUGE))), "huge.npy")),
    Case("npy_v2_claims_7TiB", "sizes",
         lambda t: (_load(_npy(t, "huge2.npy", _npy_bytes(_HUGE, version=(2, 0)))), "huge2.npy")),
    Case("npy_shape_overflows_int64", "sizes",
         lambda t: (_load(_npy(t, "ovf.npy", _npy_bytes((2**62, 2**62)))), "ovf.npy")),
    Case("npy_negative_shape", "sizes",
         lambda t: (_load(_npy(t, "neg.npy", _npy_bytes((-1, 4), payload=b"\0" * 64))),
                    "neg.npy")),
    Case("npy_truncated_data", "sizes",
         lambda t: (_load(_npy(t, "short.npy", _npy_bytes((100, 1, 100), payload=b"\0" * 80))),
                    "short.npy")),
    Case("npy_header_garbage", "sizes",
         lambda t: (_load(_npy(t, "hdr.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': <f8, }\n")),
                    "hdr.npy")),
    Case("npy_header_unbalanced", "sizes",  # numpy's tokenizer raised TokenError (fuzzing)
         lambda t: (_load(_npy(t, "tok.npy", b"\x93NUMPY\x01\x00\x40\x00{'descr': '<f8', "
                               b"'shape': (3, 4), (" + b" " * 27 + b"\n" + b"\0" * 96)),
                    "tok.npy")),
    Case("npy_object_dtype", "sizes",
         lambda t: (_load(_saved(t, "obj.npy", np.array([[{}, 1]], dtype=object))), "obj.npy")),
    Case("npy_text_dtype", "sizes",
         lambda t: (_load(_saved(t, "text.npy", np.array([["1", "2"], ["3", "4"]]))),
                    "text.npy")),
    Case("npy_datetime_dtype", "sizes",
         lambda t: (_load(_saved(t, "when.npy", np.zeros((2, 3), dtype="M8[s]"))), "when.npy")),
    Case("npy_structured_dtype", "sizes",
         lambda t: (_load(_saved(t, "rec.npy", np.zeros((2, 3), dtype=[("a", "<f8")]))),
                    "rec.npy")),
    Case("npz_member_claims_7TiB", "sizes",
         lambda t: (_load(_zip(t, "huge.npz", {"X.npy": _npy_bytes(_HUGE)})), "huge.npz")),
    Case("npz_split_member_claims_7TiB", "sizes",
         lambda t: ((lambda p: lambda: data.load_dataset(p))(_zip(
             t, "split.npz", {"X_train.npy": _npy_bytes(_HUGE), "y_train.npy": b"",
                              "X_test.npy": b"", "y_test.npy": b""})), "split.npz")),
    Case("npz_deflate_bomb_over_ceiling", "sizes",
         lambda t: (_load(_zip(t, "bomb.npz", {"X.npy": _npy_bytes(
             (2000, 1, 1000), payload=bytes(2000 * 1000 * 8))}, zipfile.ZIP_DEFLATED)),
             "bomb.npz"),
         env={"TSFORMER_MAX_VALUES": "1000000"}),
    Case("npz_pickled_object_X", "sizes",
         lambda t: (_load(_zip(t, "pickled.npz", {"X.npy": _saved(
             t, "o.npy", np.array([[{}, 2]], dtype=object)).read_bytes()})), "pickled.npz")),
    Case("npz_label_strings_1MB_each", "sizes",
         lambda t: (_load(_zip(t, "labels.npz", {
             "X.npy": _saved(t, "x.npy", np.zeros((2, 3))).read_bytes(),
             "y.npy": _npy_bytes((2,), descr="<U5000000", payload=bytes(40_000_000))},
             zipfile.ZIP_DEFLATED)), "labels.npz")),
    Case("npz_encrypted_member", "sizes",
         lambda t: (_load(_patch_zip(_zip(t, "locked.npz", {
             "X.npy": _saved(t, "x.npy", np.zeros((2, 3))).read_bytes()}), flag=1)),
             "locked.npz")),
    Case("npz_unknown_compression", "sizes",
         lambda t: (_load(_patch_zip(_zip(t, "zstd.npz", {
             "X.npy": _saved(t, "x.npy", np.zeros((2, 3))).read_bytes()}), method=93)),
             "zstd.npz")),
    Case("npz_junk_member", "sizes",
         lambda t: (_load(_zip(t, "junk.npz", {"X.npy": _JUNK[:5000]})), "junk.npz")),
    Case("npy_binary_junk", "sizes",
         lambda t: (_load(_npy(t, "junk.npy", _JUNK)), "junk.npy")),
    # ---- ts: hostile .ts content
    Case("ts_binary_junk", "ts", lambda t: (_load(_text(t, "junk.ts", _JUNK)), "junk.ts")),
    Case("ts_invalid_utf8_label", "ts",
         lambda t: (_load(_text(t, "latin.ts", _ts(["1,2:a", "3,4:b"]).encode()
                                + b"5,6:caf\xe9\n")), "latin.ts")),
    Case("ts_nul_in_values", "ts",
         lambda t: (_load(_text(t, "nul.ts", _ts(["1,2:a", "3,\x004:b"]))), "nul.ts")),
    Case("ts_underscore_number", "ts",
         lambda t: (_load(_text(t, "under.ts", _ts(["1,2:a", "1_000,4:b"]))), "under.ts")),
    Case("ts_arabic_indic_digits", "ts",
         lambda t: (_load(_text(t, "digits.ts", _ts(["1,2:a", "\u0661\u0662,4:b"]))),
                    "digits.ts")),
    Case("ts_fullwidth_digits", "ts",
         lambda t: (_load(_text(t, "wide.ts", _ts(["1,2:a", "\uff11\uff12,4:b"]))), "wide.ts")),
    Case("ts_hex_number", "ts",
         lambda t: (_load(_text(t, "hex.ts", _ts(["1,2:a", "0x10,4:b"]))), "hex.ts")),
    Case("ts_nan_label", "ts",
         lambda t: (_load(_text(t, "nanlab.ts", _ts(["1,2:a", "3,4:nan"]))), "nanlab.ts")),
    Case("ts_header_claims_1e6_channels", "ts",
         lambda t: (_load(_text(t, "dims.ts", _ts(["1,2:a", "3,4:b"],
                                                  "@dimensions 1000000\n@classLabel true a b"))),
                    "dims.ts")),
    Case("ts_1e6_channels_over_ceiling", "ts",
         lambda t: (_load(_text(t, "wide_rows.ts", _ts([":".join(["0"] * 10**6) + ":a"] * 2))),
                    "wide_rows.ts"),
         env={"TSFORMER_MAX_VALUES": "100000"}),
    Case("ts_long_labels_many_rows", "ts",
         lambda t: (_load(_text(t, "longlab.ts", _ts([f"1,2:{_LONG_LABEL}"]
                                                     + ["3,4:b"] * 20000))), "longlab.ts")),
    Case("ts_1000_char_label_times_20000_rows", "ts",
         lambda t: (_load(_text(t, "widelab.ts", _ts([f"1,2:{'L' * 1000}"] + ["3,4:b"] * 20000))),
                    "widelab.ts")),
    Case("ts_absurd_line", "ts",
         lambda t: (_load(_text(t, "line.ts", _ts(["x" * 4_000_000 + ":a"]))), "line.ts")),
    # ---- text: hostile .csv/.tsv content (files, and text in memory as the server sends it)
    Case("csv_binary_junk", "text", lambda t: (_load(_text(t, "junk.csv", _JUNK)), "junk.csv")),
    Case("tsv_binary_junk", "text", lambda t: (_load(_text(t, "junk.tsv", _JUNK)), "junk.tsv")),
    Case("csv_invalid_utf8_label", "text",
         lambda t: (_load(_text(t, "latin.csv", b"a,1,2\ncaf\xe9,3,4\n")), "latin.csv")),
    Case("csv_invalid_utf8_value", "text",
         lambda t: (_load(_text(t, "latin_v.csv", b"1,1,2\n2,3\xb54,4\n")), "latin_v.csv")),
    Case("csv_nul_bytes", "text",
         lambda t: (_load(_text(t, "nul.csv", "1,0,1\n2,\x00,1\n")), "nul.csv")),
    Case("csv_nul_label", "text",
         lambda t: (_load(_text(t, "nul_label.csv", "a,0,1\n\x00,2,1\n")), "nul_label.csv")),
    Case("csv_cell_of_4MB", "text",
         lambda t: (_load(_text(t, "field.csv", "1," + "9" * 4_000_000 + "x\n")), "field.csv")),
    Case("csv_first_line_4MB_no_delimiter", "text",
         lambda t: (_load(_text(t, "wall.csv", "y" * 4_000_000 + "\n1,2,3\n")), "wall.csv")),
    Case("csv_long_labels_many_rows", "text",
         lambda t: (_load(_text(t, "longlab.csv", f"a,1,2\n{_LONG_LABEL},1,2\n"
                                + "b,3,4\n" * 20000)), "longlab.csv")),
    Case("csv_1000_char_label_times_20000_rows", "text",
         lambda t: (_load(_text(t, "widelab.csv", f"a,1,2\n{'L' * 1000},1,2\n"
                                + "b,3,4\n" * 20000)), "widelab.csv")),
    Case("csv_nan_label", "text",
         lambda t: (_load(_text(t, "nanlab.csv", "1,0,1\nnan,2,3\n2,4,5\n")), "nanlab.csv")),
    Case("tsv_NaN_label", "text",
         lambda t: (_load(_text(t, "nanlab.tsv", "a\t0\t1\nNaN\t2\t3\n")), "nanlab.tsv")),
    Case("csv_empty_label", "text",
         lambda t: (_load(_text(t, "nolab.csv", "x,0,1\n ,2,3\n")), "nolab.csv")),
    Case("csv_underscore_value", "text",
         lambda t: (_load(_text(t, "under.csv", "1,0,1\n2,1_000,3\n")), "under.csv")),
    Case("csv_underscore_no_labels", "text",
         lambda t: (_load(_text(t, "under_nl.csv", "0,1\n1_000,3\n"), labels=False),
                    "under_nl.csv")),
    Case("csv_arabic_indic_digits", "text",
         lambda t: (_load(_text(t, "digits.csv", "1,0,1\n2,\u0661\u0662,3\n")), "digits.csv")),
    Case("csv_hex_value", "text",
         lambda t: (_load(_text(t, "hex.csv", "1,0,1\n2,0x10,3\n")), "hex.csv")),
    Case("csv_values_over_ceiling", "text",
         lambda t: (_load(_text(t, "big.csv", "1,0,1,2,3\n" * 100)), "big.csv"),
         env={"TSFORMER_MAX_VALUES": "100"}),
    Case("text_nan_label", "text",
         lambda t: ((lambda: data.read_delimited_text("1,0,1\nnan,2,3\n", name="upload.csv")),
                    "upload.csv")),
    Case("text_underscore_value", "text",
         lambda t: ((lambda: data.read_delimited_text("1,0,1\n2,1_000,3\n", name="upload.csv")),
                    "upload.csv")),
    # ---- paths: what is at the path is not a readable regular file
    Case("symlink_loop", "paths",
         lambda t: (_load(_symlink(t, "loop.csv", "loop.csv")), "loop.csv")),
    Case("broken_symlink", "paths",
         lambda t: (_load(_symlink(t, "gone.csv", "nowhere.csv")), "gone.csv")),
    Case("fifo", "paths", lambda t: (_load(_fifo(t)), "pipe.csv")),
    Case("device_as_npy", "paths",
         lambda t: (_load(_symlink(t, "zero.npy", "/dev/zero")), "zero.npy")),
    Case("directory_named_X_TRAIN_tsv", "paths",
         lambda t: (_load(_mkdir(t / "X_TRAIN.tsv")), "X_TRAIN.tsv")),
    Case("dataset_whose_TRAIN_is_a_directory", "paths", _dataset_dir_with_train_dir),
    Case("file_name_too_long", "paths", lambda t: (_load(t / _LONG), "xxxxxxxxxxxxxxxx")),
    Case("dataset_name_too_long", "paths",
         lambda t: ((lambda: data.load_dataset(str(t / _LONG))), "xxxxxxxxxxxxxxxx")),
    Case("newline_in_file_name", "paths",
         lambda t: (_load(_text(t, "two\nlines.csv", _JUNK)), "two\\nlines.csv")),
    Case("permission_denied_csv", "paths",
         lambda t: (_denied(_text(t, "secret.csv", "1,0,1\n2,1,0\n")), "secret.csv")),
    Case("permission_denied_npy", "paths",
         lambda t: (_denied(_saved(t, "secret.npy", np.zeros((2, 3)))), "secret.npy")),
    Case("permission_denied_ts", "paths",
         lambda t: (_denied(_text(t, "secret.ts", _ts(["1,2:a", "3,4:b"]))), "secret.ts")),
]


def _mkdir(p: Path) -> Path:
    p.mkdir()
    return p


class _Timeout(Exception):
    pass


def _run_bounded(call: Call) -> tuple[BaseException | None, int, float]:
    """Run ``call``: (what it raised, tracemalloc peak bytes, seconds); interrupted after
    ``SECONDS`` (a FIFO would block ``open`` for ever)."""

    def on_alarm(signum, frame):
        raise _Timeout(f"still running after {SECONDS} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, SECONDS)
    tracemalloc.start()
    start = time.perf_counter()
    raised = None
    try:
        call()
    except BaseException as e:  # noqa: BLE001 - reported to the test
        raised = e
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return raised, peak, seconds


@pytest.mark.parametrize("case", CASES, ids=[f"{c.cls}-{c.id}" for c in CASES])
def test_hostile_file_is_one_line_data_error(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    call, names = case.build(tmp_path)
    raised, peak, seconds = _run_bounded(call)
    assert isinstance(raised, DataError), f"expected a DataError, got {raised!r}"
    msg = str(raised)
    assert "\n" not in msg and "\r" not in msg, msg
    assert names in msg, msg
    assert len(msg) < 600, msg
    assert peak < PEAK_BYTES, f"allocated {peak / 2**20:.0f} MiB: {msg}"
    assert seconds < SECONDS, msg


# --------------------------------------------------------------------------- misreads


def _err(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_missing_label_names_its_line(tmp_path: Path) -> None:
    # blank lines count: the message names the line a spreadsheet shows
    p = _text(tmp_path, "m.csv", "label,t0,t1\n1,0,1\n\n2,1,2\nnan,2,3\n")
    assert "label of line 5 is missing" in _err(data.load_file, p)
    p = _text(tmp_path, "m.tsv", "a\t0\t1\n\t2\t3\n")
    assert "label of line 2 is missing" in _err(data.load_file, p)
    p = _text(tmp_path, "m.ts", _ts(["1,2:a", "3,4:NaN"]))
    assert "label of line 5 is missing" in _err(data.load_file, p)
    with pytest.raises(DataError, match="missing"):
        data.check_Xy(np.zeros((3, 4)), np.array(["a", "nan", "b"]))


@pytest.mark.parametrize("cell", ["1_000", "\u0661\u0662", "\uff11\uff12", "0x10", "1e", "1d5",
                                  "0b1", "\u22121", "1 2", "True"])
def test_odd_spellings_are_not_numbers(tmp_path: Path, cell: str) -> None:
    p = _text(tmp_path, "odd.csv", f"1,0,1\n2,{cell},3\n")
    msg = _err(data.load_file, p)
    assert "line 2, column 2" in msg and repr(cell) in msg, msg
    p = _text(tmp_path, "odd.ts", _ts(["1,2:a", f"{cell},4:b"]))
    msg = _err(data.load_file, p)
    assert "line 5" in msg and repr(cell) in msg, msg


@pytest.mark.parametrize(("cell", "value"), [("  1e5 ", 1e5), ("+1", 1.0), (".5", 0.5),
                                             ("5.", 5.0), ("-0", 0.0), ("1.0E+02", 100.0),
                                             ("00012", 12.0), ("\u00a07", 7.0)])
def test_standard_spellings_are_numbers(tmp_path: Path, cell: str, value: float) -> None:
    p = _text(tmp_path, "ok.csv", f"1,0,1\n2,{cell},3\n")
    X, _ = data.load_file(p)
    assert X[1, 0, 0] == value
    p = _text(tmp_path, "ok.ts", _ts(["1,2:a", f"{cell.strip()},4:b"]))
    assert data.load_file(p)[0][1, 0, 0] == value


@pytest.mark.parametrize("cell", ["Infinity", "inf", "-INF", "1e400"])
def test_infinities_are_refused_with_their_place(tmp_path: Path, cell: str) -> None:
    p = _text(tmp_path, "inf.csv", f"1,0,1\n2,{cell},3\n")
    assert "line 2, column 2" in _err(data.load_file, p)


def test_odd_labels_stay_text(tmp_path: Path) -> None:
    # a label is a number only in a standard spelling: '1_000' is not the class 1000
    p = _text(tmp_path, "l.csv", "1,0,1\n1_000,2,3\n2,1,1\n")
    _, y = data.load_file(p)
    assert y.tolist() == ["1", "1_000", "2"]
    p = _text(tmp_path, "l.ts", _ts(["1,2:\u0661", "3,4:2"]))
    assert data.load_file(p)[1].tolist() == ["\u0661", "2"]
    p = _text(tmp_path, "n.csv", "1,0,1\n1000,2,3\n")
    assert data.load_file(p)[1].tolist() == [1, 1000]


def test_text_arrays_are_not_read_as_numbers(tmp_path: Path) -> None:
    p = _saved(tmp_path, "s.npy", np.array([["1", "2"], ["3", "4"]]))
    assert "not numbers" in _err(data.load_file, p)
    np.savez(tmp_path / "s.npz", X=np.array([["1", "2"], ["3", "4"]]), y=np.array([0, 1]))
    assert "not numbers" in _err(data.load_file, tmp_path / "s.npz")


def test_spreadsheet_exports_read_as_meant(tmp_path: Path) -> None:
    # Excel's "CSV UTF-8" starts with a byte-order mark; a '#' is a label, not a comment
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf1,0,1\n2,1,0\n")
    X, y = data.load_file(p)
    assert y.tolist() == [1, 2] and X.shape == (2, 1, 2)
    X, y = data.read_delimited_text("\ufeff1,0,1\n2,1,0\n")
    assert y.tolist() == [1, 2]
    p = _text(tmp_path, "hash.csv", "#1,0,1\n#2,1,0\n")
    X, y = data.load_file(p)
    assert y.tolist() == ["#1", "#2"] and X.shape == (2, 1, 2)


def test_npz_reads_only_the_arrays_it_needs(tmp_path: Path) -> None:
    # an extra member claiming terabytes is never read (nor is it an error)
    x = _saved(tmp_path, "x.npy", np.zeros((2, 3))).read_bytes()
    y = _saved(tmp_path, "y.npy", np.array([0, 1])).read_bytes()
    p = _zip(tmp_path, "extra.npz", {"X.npy": x, "y.npy": y, "notes.npy": _npy_bytes(_HUGE)})
    raised, peak, _ = _run_bounded(lambda: data.load_file(p))
    assert raised is None and peak < PEAK_BYTES


def test_ceiling_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _saved(tmp_path, "a.npy", np.zeros((4, 1, 25)))
    assert data.load_file(p)[0].shape == (4, 1, 25)
    monkeypatch.setenv(data.MAX_VALUES_ENV, "99")
    msg = _err(data.load_file, p)
    assert "100" in msg and data.MAX_VALUES_ENV in msg
    monkeypatch.setenv(data.MAX_VALUES_ENV, "100")
    assert data.load_file(p)[0].shape == (4, 1, 25)
    for bad in ("lots", "0", "-5", "1e9"):
        monkeypatch.setenv(data.MAX_VALUES_ENV, bad)
        assert data.MAX_VALUES_ENV in _err(data.load_file, p)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_real_permission_denied(tmp_path: Path) -> None:
    p = _text(tmp_path, "locked.csv", "1,0,1\n2,1,0\n")
    p.chmod(0)
    try:
        assert "permission" in _err(data.load_file, p).lower()
    finally:
        p.chmod(0o600)
