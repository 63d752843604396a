"""What every command shares: the one-line error parser, messages, ``--set`` overrides and
config files."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..errors import ConfigError, DataError


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (not usage + error) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _emit(stream: str, msg: str) -> None:
    """Print to ``sys.<stream>``; when the reader has gone (``tsformer train | head``), keep
    working silently rather than lose the run to a BrokenPipeError."""
    try:
        print(msg, file=getattr(sys, stream), flush=True)
    except BrokenPipeError:
        setattr(sys, stream, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


def info(msg: str) -> None:
    """A progress or note line, on stderr."""
    _emit("stderr", msg)


def say(msg: str) -> None:
    """A result line, on stdout."""
    _emit("stdout", msg)


def _parse_value(text: str) -> Any:
    """``--set`` values: JSON when it parses (numbers, lists, true/null), else a string."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError):
        return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["model.d_model=128", "train.augment=[]", "members=1"]`` -> pipeline overrides."""
    out: dict[str, Any] = {"model": {}, "train": {}}
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key in ("members", "normalize"):
            out[key] = _parse_value(value)
            continue
        group, dot, name = key.partition(".")
        if not sep or not dot or group not in ("model", "train") or not name:
            raise ConfigError(f"--set wants model.NAME=VALUE, train.NAME=VALUE, members=N or "
                              f"normalize=none|zscore, not {item!r}")
        out[group][name] = _parse_value(value)
    return out


def add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="GROUP.NAME=VALUE",
                   help="override a preset option: model.NAME=VALUE, train.NAME=VALUE, "
                   "members=N or normalize=zscore (repeatable; docs/presets.md lists them)")


#: Keys a config file may hold: a model directory's config.json or a 'tune' best.json.
#: (``calibration`` belongs to the trained weights: training again calibrates afresh.)
_CONFIG_FILE_KEYS = {"preset", "arch", "members", "normalize", "model", "train", "input",
                     "classes", "data", "calibration",
                     "format", "format_version", "tsformer_version", "n_parameters"}
MAX_CONFIG_FILE_BYTES = 1 << 20


def load_config_file(path: str) -> dict[str, Any]:
    """A config file as ``{"preset": ..., "overrides": {...}}``: a model directory's
    config.json (its model, training options and members train the same model again) or a
    preset file written by ``tsformer tune``."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise DataError(f"config file {p} does not exist")
    if p.stat().st_size > MAX_CONFIG_FILE_BYTES:
        raise DataError(f"config file {p} is over {MAX_CONFIG_FILE_BYTES:,} bytes; is it a "
                        "tsformer config?")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise DataError(f"config file {p} is not valid JSON ({str(e)[:200]})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("preset"), str):
        raise DataError(f"config file {p} must hold a JSON object with a preset name and "
                        "model/train options")
    unknown = sorted(str(k) for k in cfg if k not in _CONFIG_FILE_KEYS)
    if unknown:
        raise DataError(f"config file {p} has unknown key(s) {', '.join(unknown)}")
    over = {"model": cfg.get("model") or {}, "train": cfg.get("train") or {}}
    for key in ("members", "normalize"):
        if key in cfg:
            over[key] = cfg[key]
    return {"preset": cfg["preset"], "overrides": over}


def merge_overrides(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win, option by option."""
    out: dict[str, Any] = {"model": {}, "train": {}}
    for layer in layers:
        out["model"].update(layer.get("model") or {})
        out["train"].update(layer.get("train") or {})
        for key in ("members", "normalize"):
            if layer.get(key) is not None:
                out[key] = layer[key]
    return out


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: a whole number in [low, high] (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            floor = "0 or more" if low == 0 else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {floor}, not {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be {low}-{high}, not {value}")
        return value

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def free_cores() -> int:
    """CPU threads worth using now: the cores not already kept busy by other processes (from
    the 1-minute load average), at least one.  On a shared machine, threads beyond the free
    cores wait on each other and a step can take several times longer."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return cores
    return max(1, min(cores, round(cores - busy)))
