"""What one file may make tsformer allocate, and which text is a number.

- :data:`MAX_VALUES_ENV` (``$TSFORMER_MAX_VALUES``, default :data:`DEFAULT_MAX_VALUES`): the
  most values (series x channels x points) one file may hold.  The readers check it before
  they allocate the array: from an .npy/.npz header, from the first row and the line count of
  delimited text, row by row in a .ts file.
- :data:`MAX_LABEL_CHARS`: the longest class label a file may hold; and labels become a
  fixed-width text array, so one long label is paid for by every row: that array may take
  :data:`LABEL_ARRAY_BYTES` or 4 x the text's size, whichever is more (:func:`check_labels`).
- :func:`is_standard_number`: the spellings a value cell may have.  Python's ``float()``
  also reads ``1_000``, Arabic-Indic and full-width digits; a spreadsheet user does not mean
  those as numbers, so they are refused with their line and column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from ..errors import DataError

#: Environment variable: the most values (series x channels x points) read from one file.
MAX_VALUES_ENV = "TSFORMER_MAX_VALUES"
#: 2**30 values: 4 GiB as float32, several times the largest file of the UCR/UEA archive.
DEFAULT_MAX_VALUES = 2**30
#: The longest class label a file may hold, in characters.
MAX_LABEL_CHARS = 1000
#: What the fixed-width label array of one text file may take at least (see check_labels).
LABEL_ARRAY_BYTES = 64 << 20

_NUMBER = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)",
    re.IGNORECASE | re.ASCII,
)


def is_standard_number(cell: str) -> bool:
    """Whether a text cell is a number as a spreadsheet writes one: ASCII digits, an optional
    sign, decimal point and exponent, or nan/inf/infinity; surrounding blanks are ignored."""
    return _NUMBER.fullmatch(cell.strip()) is not None


def max_values() -> int:
    """The ceiling on values per file: ``$TSFORMER_MAX_VALUES``, else the default."""
    text = os.environ.get(MAX_VALUES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_VALUES
    if not (text.isascii() and text.isdigit() and len(text) <= 30 and int(text) > 0):
        raise DataError(
            f"${MAX_VALUES_ENV} must be a positive whole number of values, such as "
            f"{DEFAULT_MAX_VALUES}, not {text[:40]!r}; fix or unset it"
        )
    return int(text)


def check_values(n: int, what: str) -> None:
    """Refuse ``what`` (a file's name) when it holds more than :func:`max_values` values."""
    limit = max_values()
    if n > limit:
        raise DataError(
            f"{what} holds {n:,} values (series x channels x points), over the limit of "
            f"{limit:,} for one file; split the file, or raise ${MAX_VALUES_ENV} if the "
            "machine has the memory"
        )


def check_labels(longest: int, n: int, text_bytes: int, where: Callable[[], str]) -> None:
    """Refuse labels that would cost far more memory than the text they come from.

    Labels become a fixed-width array (``n`` rows x the ``longest`` label x 4 bytes), so one
    long label is paid for by every row: a label may have :data:`MAX_LABEL_CHARS`
    characters, and the array may take :data:`LABEL_ARRAY_BYTES` or 4 x the text's size
    (``text_bytes``), whichever is more.  ``where()`` names the longest label's line.
    """
    if longest > MAX_LABEL_CHARS:
        raise DataError(
            f"{where()}: the label is {longest:,} characters long, over the limit of "
            f"{MAX_LABEL_CHARS}; a label is a class name (is the delimiter right?)"
        )
    need = n * longest * 4
    if need > max(LABEL_ARRAY_BYTES, 4 * text_bytes):
        raise DataError(
            f"{where()}: its label of {longest} characters, stored for each of {n:,} series, "
            f"would take {need / 2**20:,.0f} MiB; shorten the longest labels"
        )


def shown(text: str, limit: int = 80) -> str:
    """A file name or path for a one-line message: control characters escaped, cut to
    ``limit`` characters."""
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
