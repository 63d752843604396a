"""Shared fixtures: small slices of real FordA data, so tests stay fast and meaningful."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # one thread per process: the suite shares small machines


@pytest.fixture(scope="session")
def forda():
    from tsformer.data import load_dataset

    return load_dataset("FordA", download=False, progress=False)


@pytest.fixture(scope="session")
def forda_small(forda):
    """600 training / 300 test series of FordA cut to their first 150 points."""
    rng = np.random.default_rng(0)
    tr = rng.choice(len(forda.X_train), 600, replace=False)
    te = rng.choice(len(forda.X_test), 300, replace=False)
    return (forda.X_train[tr, :, :150], forda.y_train[tr],
            forda.X_test[te, :, :150], forda.y_test[te])


def _write_tsv(folder, forda_small):
    """UCR-style TRAIN/TEST TSV files (label first) made from the small FordA slice."""
    Xtr, ytr, Xte, yte = forda_small

    def write(path, X, y):
        np.savetxt(path, np.column_stack([y, X[:, 0, :]]), delimiter="\t", fmt="%.6g")
        return path

    return (write(folder / "Small_TRAIN.tsv", Xtr[:300], ytr[:300]),
            write(folder / "Small_TEST.tsv", Xte[:100], yte[:100]))


@pytest.fixture(scope="session")
def tsv_writer():
    return _write_tsv


@pytest.fixture()
def small_tsv(tmp_path, forda_small):
    return _write_tsv(tmp_path, forda_small)


class DataRead(Exception):
    """Raised by the data readers in tests that require an option to fail before them."""


@pytest.fixture
def no_data_reads(monkeypatch):
    """Any read of a dataset or file fails the test: options must be refused before."""
    import tsformer.data as data

    def refuse(*a, **k):
        raise DataRead("data was read before the options were checked")

    for name in ("load_dataset", "load_file"):
        monkeypatch.setattr(data, name, refuse)
