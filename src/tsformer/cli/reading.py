"""Reading a user's file for a trained model: its length, and whether it has labels."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError


def read_for_model(path: str, n_channels: int, n_timepoints: int, classes: Sequence[Any],
                    labels: bool | None = None, evaluating: bool = False
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Series from a file for a model, with labels if the file has a label column
    (``labels``: None to tell from the file, True/False to say; ``evaluating``: labels are
    needed, so an unequal-length file's first column is its labels).

    An equal-length file must have the model's length (series are never resampled
    silently).  An unequal-length file (NaN-padded rows, ``@equalLength false``) is resampled
    to it with a note; as its shape can no longer tell, its first column is taken as labels
    when every value in it is one of the model's classes, unless ``labels`` says."""
    from ..data import ResampledWarning, load_file

    def read(lab: bool | None) -> tuple[np.ndarray, np.ndarray | None, list] | None:
        """The file at the model's length (equal-length files stay as they are), with the
        resampling note held back until this reading is chosen."""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResampledWarning)
                X, y = load_file(path, labels=lab, length=n_timepoints)
        except DataError:
            if lab is False and labels is None:  # only a guess: e.g. text labels as values
                return None
            raise
        return X, None if lab is False else y, [
            w for w in caught if issubclass(w.category, ResampledWarning)]

    tries = [labels] if labels is not None else [None, False]
    readings = {lab: r for lab in tries if (r := read(lab)) is not None}
    if not any(notes for _, _, notes in readings.values()):  # equal lengths: by shape
        for X, y, _ in readings.values():
            if X.shape[1:] == (n_channels, n_timepoints):
                return X, y
        shapes = {lab: f"{r[0].shape[1]} channel(s) x {r[0].shape[2]} points"
                  for lab, r in readings.items()}
        if len(shapes) == 2 and shapes[None] != shapes[False]:
            held = (f"series of {shapes[False]} (or {shapes[None]} after a first column "
                    "of labels)")
        else:
            held = f"series of {next(iter(shapes.values()))}"
        raise DataError(
            f"{path} holds {held} but the model expects {n_channels} x {n_timepoints}; series "
            "are never resampled silently")
    if labels is None:  # resampled, so the shape no longer tells
        y = readings[None][1]
        labels = evaluating or (y is not None and all(str(v) in {str(c) for c in classes}
                                                      for v in y))
    lab = labels if labels in readings else (None if labels else False)
    if lab not in readings:  # the unlabelled guess failed to read: say why
        load_file(path, labels=False, length=n_timepoints)
    X, y, notes = readings[lab]
    for w in notes:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if X.shape[1:] != (n_channels, n_timepoints):
        raise DataError(f"{path} holds series of {X.shape[1]} channel(s) but the model expects "
                        f"{n_channels}")
    return X, y
