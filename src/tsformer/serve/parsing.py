"""Request bodies to validated series: JSON ``{"instances": [...]}`` and CSV text.

Every refusal is a :class:`RequestError` with an HTTP status, a message that says what to
fix, and the field it is about (``instances[3][0][17]``, ``line 4, column 2``).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..data import ResampledWarning, read_delimited_text
from ..data.delimited import is_number
from ..errors import DataError


class RequestError(Exception):
    """A request the server refuses: HTTP status, a message saying what to fix, and where."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        detail, field = _encodable(detail), _encodable(field)
        super().__init__(detail)
        self.status, self.detail, self.field = status, detail, field


def _encodable(text: str | None) -> str | None:
    """Text that a JSON response can encode: a request may carry lone surrogates (valid JSON
    escapes, invalid UTF-8), which would otherwise make the refusal itself fail."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_NUMBER_TYPES = frozenset((int, float))


def _describe(v: Any) -> str:
    """A JSON value's type in JSON words, for error messages."""
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if v is None:
        return "null"
    if isinstance(v, str):
        shown = v if len(v) <= 20 else v[:20] + "..."
        return f"a string ({json.dumps(shown)})"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    return "a number"


def _check_numbers(row: list[Any], path: str) -> None:
    if _NUMBER_TYPES.issuperset(map(type, row)):
        return
    for j, v in enumerate(row):
        if type(v) not in _NUMBER_TYPES:
            hint = "; missing values are not supported" if v is None else ""
            raise RequestError(422, f"{path}[{j}] is {_describe(v)}, not a number{hint}",
                               f"{path}[{j}]")


def _length_error(path: str, got: int, n_t: int) -> RequestError:
    return RequestError(422, f"{path} has {got} time points but the model expects {n_t}; "
                             "series are never resampled: crop, pad or resample them first", path)


def _check_instance(x: Any, path: str, n_ch: int, n_t: int) -> tuple[list[list[Any]], bool]:
    """A series as channels x points, and whether it came as a flat (univariate) list."""
    shape = (f"a list of {n_t} numbers" if n_ch == 1 else
             f"a list of {n_ch} channels, each a list of {n_t} numbers")
    if not isinstance(x, list):
        raise RequestError(422, f"{path} is {_describe(x)}; each series must be {shape}", path)
    if not x:
        raise RequestError(422, f"{path} is empty; each series must be {shape}", path)
    nested = [type(v) is list for v in x]
    if all(nested):
        if len(x) != n_ch:
            raise RequestError(422, f"{path} has {len(x)} channels but the model expects "
                                    f"{n_ch}; each series must be {shape}", path)
        for c, channel in enumerate(x):
            cpath = f"{path}[{c}]"
            if not channel:
                raise RequestError(422, f"{cpath} is empty; each channel must be a list of "
                                        f"{n_t} numbers", cpath)
            _check_numbers(channel, cpath)
            if len(channel) != n_t:
                raise _length_error(cpath, len(channel), n_t)
        return x, False
    if any(nested):
        raise RequestError(422, f"{path} mixes numbers and lists; each series must be {shape}",
                           path)
    _check_numbers(x, path)
    if n_ch != 1:
        raise RequestError(422, f"{path} is a flat list of numbers (one channel) but the model "
                                f"expects {n_ch} channels; send {shape}", path)
    if len(x) != n_t:
        raise _length_error(path, len(x), n_t)
    return [x], True


def _to_float32(values: list[Any], locate: Callable[[int, int, int], tuple[str, str]]
                ) -> np.ndarray:
    """float32 ``(n, channels, points)``, refusing NaN, infinities and float32 overflow."""
    try:
        arr = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer literal beyond float64: report it like an infinity
        arr = np.array([[[float(v) if abs(v) < 1e308 else math.inf for v in ch] for ch in s]
                        for s in values], dtype=np.float64)
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    for data, why in ((arr, "is NaN or infinite (or beyond ±1.8e308)"),
                      (out, "is beyond the float32 range (±3.4e38); rescale the series")):
        bad = ~np.isfinite(data)
        if bad.any():
            i, c, t = (int(k) for k in np.argwhere(bad)[0])
            where, field = locate(i, c, t)
            raise RequestError(422, f"{where} {why}; only finite numbers are accepted", field)
    return out


def parse_instances(doc: Any, n_ch: int, n_t: int, max_instances: int,
                    name: str = "instances") -> np.ndarray:
    """Validate decoded JSON series; float32 ``(n, n_ch, n_t)`` or a precise RequestError."""
    if not isinstance(doc, list):
        raise RequestError(422, f"{name} is {_describe(doc)}; it must be a list of series", name)
    if not doc:
        raise RequestError(422, f"{name} is empty; send at least one series", name)
    if len(doc) > max_instances:
        raise RequestError(413, f"{name} has {len(doc)} series, over the limit of "
                                f"{max_instances} per request; split it into smaller requests",
                           name)
    series, flat = [], []
    for i, x in enumerate(doc):
        s, f = _check_instance(x, f"{name}[{i}]", n_ch, n_t)
        series.append(s)
        flat.append(f)

    def locate(i: int, c: int, t: int) -> tuple[str, str]:
        field = f"{name}[{i}][{t}]" if flat[i] else f"{name}[{i}][{c}][{t}]"
        return field, field

    return _to_float32(series, locate)


def _json_int(text: str) -> int | float:
    """A JSON integer literal; one too long for ``int()`` (Python refuses more than 4300
    digits) is far beyond float64 anyway, so it becomes the infinity ``float()`` makes of it,
    refused later with its place like any other infinity."""
    return int(text) if len(text) <= 400 else float(text)


def parse_json_body(body: bytes, n_ch: int, n_t: int, max_instances: int) -> np.ndarray:
    """``{"instances": [...]}`` bytes to validated series."""
    if not body.strip():
        raise RequestError(400, 'the request body is empty; send {"instances": [series, ...]}')
    try:
        doc = json.loads(body, parse_int=_json_int)
    except UnicodeDecodeError:
        raise RequestError(400, "the request body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the request body is not valid JSON ({e.msg} at line "
                                f"{e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise RequestError(400, "the request body nests JSON too deeply") from None
    except ValueError as e:  # any other conversion the decoder refuses: still the client's
        raise RequestError(400, f"the request body is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise RequestError(422, f'the request body is {_describe(doc)}; send a JSON object '
                                '{"instances": [series, ...]}')
    unknown = sorted(set(doc) - {"instances"})
    if unknown:
        name = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:40] + "..."
        raise RequestError(422, f"unknown field {name!r} in the request body; the only "
                                "field is 'instances'", name)
    if "instances" not in doc:
        raise RequestError(422, "the request body has no 'instances' field; send "
                                '{"instances": [series, ...]}', "instances")
    return parse_instances(doc["instances"], n_ch, n_t, max_instances)


def _where(message: str) -> str | None:
    """``line N, column M`` (or ``line N``) named in a reader's message, for ``field``."""
    m = re.search(r"line (\d+)(?:, column (\d+))?", message)
    if not m:
        return None
    return f"line {m.group(1)}" + (f", column {m.group(2)}" if m.group(2) else "")


def parse_csv_text(text: str, n_ch: int, n_t: int, max_instances: int,
                   row_lines: list[int] | None = None) -> np.ndarray:
    """CSV series, one per line, read by the data module's delimited-text reader (the one
    that reads .csv files); a first line of names is a header.

    A line holds ``n_t`` values (``n_ch * n_t`` for several channels, channel after channel),
    or one more when its first column is a label, as in a UCR test file.  The delimiter is
    the first of comma, tab, semicolon found in the first line, else whitespace.  Series are
    never resampled: rows of unequal length are refused.  ``row_lines``, when given, receives
    the line number of each series.
    """
    lines = [(k, line) for k, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise RequestError(422, "the CSV holds no series; send one series per line")
    first = lines[0][1]
    delim = next((d for d in (",", "\t", ";") if d in first), None)
    if delim is None:  # whitespace-separated: the same cells, comma-separated, same lines
        text = "\n".join(",".join(line.split()) for line in text.splitlines())
        lines = [(k, ",".join(line.split())) for k, line in lines]
        delim = ","

    def cells_of(line: str) -> list[str]:
        return [c.strip() for c in line.split(delim)]

    rows = lines[1:] if all(not is_number(c) for c in cells_of(first) if c) else lines
    if not rows:
        raise RequestError(422, "the CSV has a header line but no series")
    if len(rows) > max_instances:
        raise RequestError(413, f"the CSV has {len(rows)} series, over the limit of "
                                f"{max_instances} per request; split it into smaller requests")
    if row_lines is not None:
        row_lines[:] = [k for k, _ in rows]
    width = n_ch * n_t
    n_cells = len(cells_of(rows[0][1]))
    for lineno, line in rows:  # the model's length, and one layout for every line
        got = len(cells_of(line))
        if got not in (width, width + 1) or got != n_cells:
            layout = (f"{n_t} values" if n_ch == 1 else
                      f"{width} values ({n_ch} channels x {n_t} points, channel after channel)")
            raise RequestError(422, f"line {lineno} has {got} values but the model expects "
                                    f"{layout}, optionally after a label column (the same on "
                                    "every line); series are never resampled", f"line {lineno}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResampledWarning)
            X, _ = read_delimited_text(text, labels=n_cells == width + 1, delimiter=delim,
                                       name="the CSV")
    except ResampledWarning:
        raise RequestError(422, "the CSV's series have different lengths (rows padded with "
                                "NaN or empty cells); missing values are not supported and "
                                "series are never resampled") from None
    except DataError as e:
        raise RequestError(422, str(e), _where(str(e))) from None
    if X.shape[-1] * X.shape[1] != width:  # the reader took trailing NaN cells for padding
        raise RequestError(422, "the CSV has missing values (NaN or empty cells at the end of "
                                f"a line, so {X.shape[-1]} values instead of {width}); missing "
                                "values are not supported and series are never resampled")
    return X.reshape(len(X), n_ch, n_t)
