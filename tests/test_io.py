import json

import numpy as np
import pytest
import torch

from tsformer.errors import ModelDirError
from tsformer.io import (
    load_pretrained,
    make_config,
    read_config,
    save_pretrained,
    write_dir_atomic,
)
from tsformer.models import create_model, resolve_model_params


def _saved(tmp_path, name="m", **over):
    torch.manual_seed(0)
    model = create_model("seed", n_channels=1, n_timepoints=40, n_classes=3, **over)
    cfg = make_config("seed", resolve_model_params("seed", over), {}, n_channels=1,
                      n_timepoints=40, classes=["a", "b", "c"], data={"name": "toy"})
    return model, save_pretrained(tmp_path / name, model, cfg)


def test_save_load_identical_predictions(tmp_path):
    model, path = _saved(tmp_path, variant="postnorm")
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json",
                                                      "model.safetensors"]
    loaded, cfg = load_pretrained(path)
    x = torch.randn(5, 1, 40)
    model.eval()
    assert torch.equal(model(x), loaded(x))
    assert cfg["classes"] == ["a", "b", "c"] and cfg["model"]["variant"] == "postnorm"
    assert "How to load" in (path / "README.md").read_text()


def test_patchformer_save_records_the_resolved_shape_options(tmp_path):
    # create_model without data leaves "auto" options; the saved config must hold what was
    # built, so loading never re-runs (a possibly changed) rule.
    model = create_model("patchformer", n_channels=1, n_timepoints=500, n_classes=2)
    params = resolve_model_params("patchformer", {})
    assert params["stem_kernel"] == "auto"
    cfg = make_config("patchformer", params, {}, n_channels=1, n_timepoints=500,
                      classes=[0, 1])
    saved = read_config(save_pretrained(tmp_path / "p", model, cfg))["model"]
    assert (saved["patch_len"], saved["stride"], saved["stem_kernel"]) == (16, 8, 63)
    loaded, _ = load_pretrained(tmp_path / "p")
    model.eval()
    x = torch.randn(2, 1, 500)
    assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("stem", ["conv", "rocket"])
def test_patchformer_ensemble_saves_and_loads_as_one_model(tmp_path, stem):
    model = create_model("patchformer", n_channels=2, n_timepoints=60, n_classes=3, members=3,
                         stem=stem)
    model.prime(torch.randn(8, 2, 60))  # the rocket stem's thresholds: buffers, saved too
    params = resolve_model_params("patchformer", {"members": 3, "stem": stem})
    cfg = make_config("patchformer", params, {}, n_channels=2, n_timepoints=60,
                      classes=[0, 1, 2])
    loaded, saved = load_pretrained(save_pretrained(tmp_path / "e", model, cfg))
    assert saved["model"]["members"] == 3 and len(loaded.nets) == 3
    model.eval()
    x = torch.randn(4, 2, 60)
    assert torch.equal(model(x), loaded(x))  # the members' mean probabilities, as saved


def test_failed_write_leaves_nothing(tmp_path):
    def boom(p):
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_dir_atomic(tmp_path / "run", {"a.txt": "x", "b.bin": boom})
    assert list(tmp_path.iterdir()) == []


def test_existing_dir_needs_overwrite(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ModelDirError, match="--overwrite"):
        _saved(tmp_path, dropout=0.1)
    assert read_config(path)["model"]["dropout"] == 0.25  # untouched
    write_dir_atomic(path, {"config.json": "{}"}, overwrite=True)
    assert (path / "config.json").read_text() == "{}"


@pytest.mark.parametrize("damage, message", [
    ("missing_dir", "does not exist"),
    ("no_config", "no config.json"),
    ("bad_json", "not valid JSON"),
    ("not_ours", "not a tsformer config"),
    ("no_weights", "no model.safetensors"),
    ("bad_weights", "corrupt"),
    ("wrong_shape", "does not match"),
])
def test_broken_directories_get_one_clear_error(tmp_path, damage, message):
    _, path = _saved(tmp_path)
    cfg_path, w = path / "config.json", path / "model.safetensors"
    if damage == "missing_dir":
        path = tmp_path / "nothing"
    elif damage == "no_config":
        cfg_path.unlink()
    elif damage == "bad_json":
        cfg_path.write_text("{nope")
    elif damage == "not_ours":
        cfg_path.write_text(json.dumps({"hello": 1}))
    elif damage == "no_weights":
        w.unlink()
    elif damage == "bad_weights":
        w.write_bytes(b"\x00" * 64)
    elif damage == "wrong_shape":
        cfg = json.loads(cfg_path.read_text())
        cfg["input"]["n_timepoints"] = 41
        cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelDirError, match=message) as e:
        load_pretrained(path)
    assert "\n" not in str(e.value)


def test_loading_never_unpickles(tmp_path):
    _, path = _saved(tmp_path)
    import pickle

    (path / "model.safetensors").write_bytes(pickle.dumps(np.zeros(3)))
    with pytest.raises(ModelDirError):
        load_pretrained(path)


def test_a_rocket_model_saved_before_stem_precision_loads_in_full_precision(tmp_path):
    # Configs written before the option existed lack it; they must load as they were trained
    # (fp32 stem), not as the preset's current bf16 stem.
    import json

    torch.manual_seed(0)
    over = {"stem": "rocket", "stem_precision": "fp32", "members": 1}
    model = create_model("patchformer", n_channels=1, n_timepoints=60, n_classes=2, **over)
    x = torch.randn(8, 1, 60).cumsum(-1)
    model.prime(x)
    cfg = make_config("patchformer", resolve_model_params("patchformer", over), {},
                      n_channels=1, n_timepoints=60, classes=[0, 1])
    path = save_pretrained(tmp_path / "old", model, cfg)
    conf = json.loads((path / "config.json").read_text())
    del conf["model"]["stem_precision"]
    (path / "config.json").write_text(json.dumps(conf))
    loaded, _ = load_pretrained(path)
    assert loaded.nets[0].patch.precision == "fp32"
    model.eval()
    assert torch.equal(model(x), loaded(x))
