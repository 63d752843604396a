"""Typed option records: every option has a type, a range and a one-line meaning.

An option group (a model's options, the training options) is a dataclass whose fields are
made with :func:`option`.  ``from_dict`` checks names, types and ranges at the boundary, so a
bad value from a flag, a JSON file or a keyword argument is one :class:`ConfigError` line
before any work starts, never a ``TypeError`` deep inside training.  ``describe`` lists the
options for the reference docs and ``--help``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

import numpy as np

from .errors import ConfigError

__all__ = ["Options", "option"]

T = TypeVar("T", bound="Options")


def option(default: Any, doc: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False,
           check: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field with its meaning and numeric range (``low <= v <= high``; ``*_open``
    makes a bound strict); ``check(value)`` may raise ConfigError for rules of one value that
    a type cannot say (a device name).  Lists get a fresh copy per instance."""
    meta = {"doc": doc, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "check": check}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


_WORDS = {int: "a whole number", float: "a finite number", bool: "true or false",
          str: "a string"}


def _type_name(tp: Any, words: bool = False) -> str:
    """The type as the docs write it (``int | null``), or in words for a message."""
    origin = get_origin(tp)
    if origin is Literal:
        return (" or " if words else " | ").join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return (" or " if words else " | ").join(_type_name(a, words) for a in get_args(tp))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and Ellipsis not in get_args(tp):
            return f"a list of {len(args)} numbers" if words else f"tuple of {len(args)}"
        inner = _type_name(args[0], words) if args else "values"
        return f"a list of {inner}" if words else f"{origin.__name__} of {inner}"
    if tp is type(None):
        return "null"
    if words and tp in _WORDS:
        return _WORDS[tp]
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    """A value that does not have the declared type (internal)."""


def _coerce(tp: Any, value: Any) -> Any:
    """``value`` as type ``tp`` (numpy scalars and JSON's lists accepted), or :class:`_Mismatch`."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _coerce(arg, value)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if isinstance(value, str) and value in get_args(tp):
            return value
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if tp is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise _Mismatch
    if tp is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise _Mismatch
        return int(value)
    if tp is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise _Mismatch
        value = float(value)
        if not math.isfinite(value):
            raise _Mismatch
        return value
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = get_args(tp)
        if origin is tuple and Ellipsis not in args:
            if len(value) != len(args):
                raise _Mismatch
            return tuple(_coerce(a, v) for a, v in zip(args, value, strict=True))
        items = [_coerce(args[0], v) for v in value]
        return tuple(items) if origin is tuple else items
    raise TypeError(f"unsupported option type {tp!r}")  # a library bug, not a user's


def _in_range(meta: dict[str, Any], v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return True
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (v <= low if meta.get("low_open") else v < low):
        return False
    return not (high is not None and (v >= high if meta.get("high_open") else v > high))


def _number(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() and abs(v) < 1e20 else f"{v:g}"


def _range_text(meta: dict[str, Any]) -> str:
    low, high = meta.get("low"), meta.get("high")
    parts = []
    if low is not None:
        parts.append(f"{'>' if meta.get('low_open') else '>='} {_number(low)}")
    if high is not None:
        parts.append(f"{'<' if meta.get('high_open') else '<='} {_number(high)}")
    return " and ".join(parts)


def _items(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


@dataclass
class Options:
    """Base of every option group.  Subclasses set :attr:`group` (used in messages)."""

    group: ClassVar[str] = "option"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = self._checked(f, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self.check()

    @classmethod
    def _checked(cls, f: dataclasses.Field, tp: Any, raw: Any) -> Any:
        """One value against its option's type, range and own rule; the value as typed."""
        try:
            value = _coerce(tp, raw)
        except _Mismatch:
            raise ConfigError(f"{cls.group} {f.name} must be {_type_name(tp, True)}, "
                              f"not {raw!r}") from None
        if not all(_in_range(f.metadata, v) for v in _items(value)):
            raise ConfigError(f"{cls.group} {f.name} must be {_range_text(f.metadata)}, "
                              f"not {raw!r}")
        if f.metadata.get("check") is not None and value is not None:
            f.metadata["check"](value)
        return value

    def check(self) -> None:
        """Rules between options (e.g. width divisible by heads); raise ConfigError."""

    def resolved(self: T, n_channels: int, n_timepoints: int) -> T:
        """The options as built for input of this shape (``"auto"`` values made concrete),
        so a saved config never depends on the rule that resolved them."""
        return self

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def check_names(cls, names: typing.Iterable[str]) -> None:
        """Unknown option names -> one line naming the closest option and all of them."""
        known = cls.names()
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown {cls.group} {name!r}{hint}; options: "
                                  f"{', '.join(known)}")

    @classmethod
    def from_dict(cls: type[T], values: typing.Mapping[str, Any]) -> T:
        if not isinstance(values, typing.Mapping):
            raise ConfigError(f"{cls.group}s must be a JSON object of name: value, "
                              f"not {values!r}")
        cls.check_names(values)
        return cls(**values)

    @classmethod
    def check_values(cls, values: typing.Mapping[str, Any]) -> None:
        """Each given value alone against its option's type and range, with no others:
        lets a command refuse a bad option before it reads any data."""
        cls.check_names(values)
        hints = typing.get_type_hints(cls)
        by_name = {f.name: f for f in fields(cls)}
        for name, raw in values.items():
            cls._checked(by_name[name], hints[name], raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else
                (list(v) if isinstance(v, list) else v) for f in fields(self)}

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(cls) -> list[dict[str, str]]:
        """Name, type, default, range and meaning of each option, for docs and help."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append({"name": f.name, "type": _type_name(hints[f.name]),
                        "default": repr(default), "range": _range_text(f.metadata),
                        "doc": f.metadata.get("doc", "")})
        return out
