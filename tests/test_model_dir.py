import json

import numpy as np
import pytest
import torch

from tsformer.errors import ModelDirError
from tsformer.model_dir import (
    check_writable_target,
    load_model_dir,
    read_config,
    save_model_dir,
    write_dir_atomic,
)
from tsformer.models import Ensemble, count_parameters
from tsformer.pipeline import resolve
from tsformer.registry import DataShape, get_preset


def _saved(tmp_path, name="m", **over):
    cfg = resolve("seed", DataShape(1, 40, 3), {"model": over}, classes=["a", "b", "c"],
                  data={"name": "toy"})
    torch.manual_seed(0)
    model = cfg.build()
    return model, save_model_dir(tmp_path / name, model, cfg)


def test_save_load_identical_predictions(tmp_path):
    model, path = _saved(tmp_path, variant="postnorm")
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json",
                                                      "model.safetensors"]
    loaded, cfg = load_model_dir(path)
    x = torch.randn(5, 1, 40)
    model.eval()
    assert torch.equal(model(x), loaded(x))
    assert cfg.classes == ["a", "b", "c"] and cfg.model.variant == "postnorm"
    assert cfg.data == {"name": "toy"}
    assert "How to load" in (path / "README.md").read_text()
    doc = json.loads((path / "config.json").read_text())
    assert (doc["format"], doc["format_version"]) == ("tsformer", 2)
    assert doc["n_parameters"] == count_parameters(model)
    assert doc["input"] == {"n_channels": 1, "n_timepoints": 40,
                            "layout": "(n_cases, n_channels, n_timepoints)"}


def test_patchformer_save_records_the_resolved_shape_options(tmp_path):
    # The preset keeps "auto" options; the saved config must hold what was built, so
    # loading never re-runs (a possibly changed) rule.
    assert get_preset("patchformer").model["stem_kernel"] == "auto"
    cfg = resolve("patchformer", DataShape(1, 500, 2))
    model = cfg.build()
    path = save_model_dir(tmp_path / "p", model, cfg)
    saved = json.loads((path / "config.json").read_text())["model"]
    assert (saved["patch_len"], saved["stride"], saved["stem_kernel"]) == (16, 8, 63)
    assert read_config(path).model == cfg.model
    loaded, _ = load_model_dir(tmp_path / "p")
    model.eval()
    x = torch.randn(2, 1, 500)
    assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("stem", ["conv", "rocket"])
def test_patchformer_ensemble_saves_and_loads_as_one_model(tmp_path, stem):
    cfg = resolve("patchformer", DataShape(2, 60, 3), {"model": {"stem": stem}, "members": 3})
    model = cfg.build()
    x0 = torch.randn(8, 2, 60)
    for net in model.members:  # the rocket stem's thresholds: buffers, saved too
        net.init_from_data(x0)
    loaded, saved = load_model_dir(save_model_dir(tmp_path / "e", model, cfg))
    assert saved.members == 3 and isinstance(loaded, Ensemble) and len(loaded.members) == 3
    model.eval()
    x = torch.randn(4, 2, 60)
    assert torch.equal(model(x), loaded(x))  # the members' mean probabilities, as saved


def test_failed_write_leaves_nothing(tmp_path):
    def boom(p):
        raise OSError("disk full")

    with pytest.raises(ModelDirError, match="cannot write .*disk full.*nothing was left"):
        write_dir_atomic(tmp_path / "run", {"a.txt": "x", "b.bin": boom})
    assert list(tmp_path.iterdir()) == []


def test_existing_dir_needs_overwrite(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ModelDirError, match="--overwrite"):
        _saved(tmp_path, dropout=0.1)
    assert read_config(path).model.dropout == 0.25  # untouched
    write_dir_atomic(path, {"config.json": "{}"}, overwrite=True)
    assert (path / "config.json").read_text() == "{}"


def test_an_existing_empty_directory_may_be_filled(tmp_path):
    empty = tmp_path / "fresh"
    empty.mkdir()
    assert check_writable_target(empty) == empty
    _, path = _saved(tmp_path, name="fresh")
    assert (path / "config.json").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelDirError, match="is a file"):
        check_writable_target(tmp_path / "file")


@pytest.mark.parametrize("damage, message", [
    ("missing_dir", "does not exist"),
    ("no_config", "no config.json"),
    ("bad_json", "not valid JSON"),
    ("not_ours", "not a tsformer config"),
    ("format_1", "format_version 1 is not supported"),
    ("newer", "newer tsformer"),
    ("bad_option", "dropout"),
    ("no_weights", "no model.safetensors"),
    ("bad_weights", "corrupt"),
    ("wrong_shape", "does not match"),
])
def test_broken_directories_get_one_clear_error(tmp_path, damage, message):
    _, path = _saved(tmp_path)
    cfg_path, w = path / "config.json", path / "model.safetensors"
    cfg = json.loads(cfg_path.read_text())
    if damage == "missing_dir":
        path = tmp_path / "nothing"
    elif damage == "no_config":
        cfg_path.unlink()
    elif damage == "bad_json":
        cfg_path.write_text("{nope")
    elif damage == "not_ours":
        cfg_path.write_text(json.dumps({"hello": 1}))
    elif damage == "format_1":  # the 0.1 layout: refused, not misread
        cfg["format_version"] = 1
        cfg_path.write_text(json.dumps(cfg))
    elif damage == "newer":
        cfg["format_version"] = 3
        cfg_path.write_text(json.dumps(cfg))
    elif damage == "bad_option":
        cfg["model"]["dropout"] = 2.0
        cfg_path.write_text(json.dumps(cfg))
    elif damage == "no_weights":
        w.unlink()
    elif damage == "bad_weights":
        w.write_bytes(b"\x00" * 64)
    elif damage == "wrong_shape":
        cfg["input"]["n_timepoints"] = 41
        cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelDirError, match=message) as e:
        load_model_dir(path)
    assert "\n" not in str(e.value)


def test_loading_never_unpickles(tmp_path):
    _, path = _saved(tmp_path)
    import pickle

    (path / "model.safetensors").write_bytes(pickle.dumps(np.zeros(3)))
    with pytest.raises(ModelDirError):
        load_model_dir(path)
