"""The one run configuration: option records, RunConfig (config.json), resolve(), the
registry, and that create_model / summary build exactly what training builds."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
import torch

import tsformer
from tsformer import ConfigError, RunConfig, create_model, register_preset
from tsformer.config import check_overrides
from tsformer.models import Ensemble, count_parameters
from tsformer.models.patchformer import PatchFormerNet, PatchFormerOptions
from tsformer.models.rocket import RocketTokens
from tsformer.models.seed import SeedOptions, SeedTransformer
from tsformer.pipeline import resolve, train
from tsformer.registry import PRESETS, DataShape
from tsformer.training import TrainConfig

# --------------------------------------------------------------------------- RunConfig


@pytest.mark.parametrize("preset, shape, overrides", [
    ("seed", DataShape(1, 500, 2), None),
    ("seed", DataShape(3, 40, 4, 100), {"model": {"mlp_units": [32, 16], "variant": "postnorm"},
                                        "train": {"augment": ["warp", "jitter"], "seed": None,
                                                  "betas": [0.8, 0.99], "grad_clip": 1.5}}),
    ("patchformer", DataShape(1, 251, 3, 36), None),  # small: rocket stem, 3 members
    ("patchformer", DataShape(1, 500, 2, 3601), None),  # large: conv stem, one network
    ("patchformer", DataShape(2, 60, 3), {"model": {"patch_len": 6, "stride": 3},
                                          "members": 2}),
])
def test_run_config_round_trips_through_json(preset, shape, overrides):
    classes = ["b", "a", "c", "d"][:shape.n_classes]
    cfg = resolve(preset, shape, overrides, classes=classes,
                  data={"name": "toy", "source": "file"})
    d = cfg.to_dict()
    back = RunConfig.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d
    assert back == cfg
    # and what it builds is the same model
    assert count_parameters(back.build()) == count_parameters(cfg.build())


def test_resolve_layers_preset_then_data_rule_then_overrides():
    small = DataShape(1, 251, 3, 36)
    cfg = resolve("patchformer", small)
    assert (cfg.model.stem, cfg.members, cfg.train.mixup) == ("rocket", 3, 0.2)
    assert cfg.model.stem_kernel != "auto" and cfg.model.stride != "auto"  # concrete
    over = resolve("patchformer", small, {"model": {"stem": "conv"}, "members": 1,
                                          "train": {"mixup": 0.0}})
    assert (over.model.stem, over.members, over.train.mixup) == ("conv", 1, 0.0)
    assert over.train.batch_size == cfg.train.batch_size  # the rest still data-scaled
    assert cfg.classes == [0, 1, 2] and cfg.n_classes == 3  # default labels
    with pytest.raises(ConfigError, match="unknown override group"):
        resolve("patchformer", small, {"modle": {}})


# --------------------------------------------------------------------------- create_model


def _built_and_trained(n_channels, n_timepoints, n_classes, n_train):
    X = np.random.default_rng(0).normal(size=(n_train, n_channels, n_timepoints))
    y = np.arange(n_train) % n_classes
    built = create_model("patchformer", n_channels=n_channels, n_timepoints=n_timepoints,
                         n_classes=n_classes, n_train=n_train)
    cfg = resolve("patchformer", DataShape.of(X, n_classes),
                  {"train": {"epochs": 1, "verbose": 0, "device": "cpu"}})
    return built, train(cfg, X.astype(np.float32), y).model


def test_create_model_builds_exactly_what_training_builds_small_data_fast():
    assert tsformer.pipeline.create_model is create_model
    built, trained = _built_and_trained(2, 32, 3, 24)
    for m in (built, trained):
        assert isinstance(m, Ensemble) and len(m.members) == 3
        assert all(isinstance(net.patch, RocketTokens) for net in m.members)
    assert count_parameters(built) == count_parameters(trained)
    assert {k: v.shape for k, v in built.state_dict().items()} == {
        k: v.shape for k, v in trained.state_dict().items()}


@pytest.mark.slow  # ~6 s: the rocket stem's thresholds on 251-point series, three times
def test_create_model_builds_exactly_what_training_builds_small_data():
    # ArrowHead's shape: 36 series of 251 points, 3 classes -> rocket stem, 3 members
    built, trained = _built_and_trained(1, 251, 3, 36)
    for m in (built, trained):
        assert isinstance(m, Ensemble) and len(m.members) == 3
        assert all(isinstance(net.patch, RocketTokens) for net in m.members)
    assert count_parameters(built) == count_parameters(trained)
    assert {k: v.shape for k, v in built.state_dict().items()} == {
        k: v.shape for k, v in trained.state_dict().items()}


def test_create_model_on_large_data_is_one_conv_stem_network():
    m = create_model("patchformer", n_channels=1, n_timepoints=251, n_classes=3, n_train=1000)
    assert isinstance(m, PatchFormerNet)
    assert isinstance(m.stem[0], torch.nn.Conv1d) and isinstance(m.patch, torch.nn.Conv1d)
    cfg = resolve("patchformer", DataShape(1, 251, 3, 1000))
    assert (cfg.model.stem, cfg.members) == ("conv", 1)
    assert m.stem[0].out_channels == cfg.model.stem_width
    assert count_parameters(m) == count_parameters(cfg.build())
    # without a size: the preset's size-free defaults, also one conv-stem network
    free = create_model("patchformer", n_channels=1, n_timepoints=251, n_classes=3)
    assert isinstance(free, PatchFormerNet) and isinstance(free.patch, torch.nn.Conv1d)


def test_create_model_builds_exactly_what_training_builds_seed():
    X = np.random.default_rng(0).normal(size=(20, 1, 500)).astype(np.float32)
    y = np.arange(20) % 2
    for n_train in (None, 20):
        m = create_model("seed", n_channels=1, n_timepoints=500, n_classes=2, n_train=n_train)
        assert isinstance(m, SeedTransformer) and count_parameters(m) == 93_130
    cfg = resolve("seed", DataShape.of(X, 2), {"train": {"epochs": 1, "verbose": 0,
                                                         "device": "cpu"}})
    trained = train(cfg, X, y).model
    assert isinstance(trained, SeedTransformer) and count_parameters(trained) == 93_130


def test_create_model_members_override():
    m = create_model("patchformer", n_channels=1, n_timepoints=251, n_classes=3, n_train=36,
                     members=1, depth=1)
    assert isinstance(m, PatchFormerNet) and len(m.blocks) == 1
    with pytest.raises(ConfigError, match="members"):
        create_model("seed", n_channels=1, n_timepoints=30, n_classes=2, members=65)


# --------------------------------------------------------------------------- options


BAD_TRAIN = [
    ("lr", float("nan")), ("lr", float("inf")), ("lr", -1), ("lr", 0), ("lr", "x"),
    ("batch_size", 0), ("batch_size", -5), ("batch_size", 1.5), ("batch_size", True),
    ("epochs", 0), ("validation_split", 1.5), ("validation_split", float("nan")),
    ("validation_split", -0.2), ("patience", -1), ("seed", -1), ("seed", 2**70),
    ("augment", ["crop"]), ("amp", "bf16-emulated"), ("device", "tpu9"),
]


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert text and "\n" not in text
    return text


@pytest.mark.parametrize("name, value", BAD_TRAIN)
def test_bad_training_options_are_one_config_error_naming_the_option(name, value):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{name: value})
    assert name in _one_line(e)
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({name: value})
    assert name in _one_line(e)
    with pytest.raises(ConfigError) as e:  # through the one path too
        resolve("seed", DataShape(1, 30, 2), {"train": {name: value}})
    assert name in _one_line(e)


@pytest.mark.parametrize("name, value", BAD_TRAIN)
def test_bad_training_options_are_refused_before_any_data(name, value):
    # what the CLI calls before it reads a dataset
    with pytest.raises(ConfigError) as e:
        check_overrides("seed", {"train": {name: value}})
    assert name in _one_line(e)


@pytest.mark.parametrize("preset, values, name", [
    ("patchformer", {"d_model": 65, "n_heads": 4}, "d_model"),
    ("patchformer", {"stem": "dilated"}, "stem"),
    ("patchformer", {"stem": "patch"}, "stem"),
    ("patchformer", {"dropout": 1.0}, "dropout"),
    ("patchformer", {"stem_kernel": "big"}, "stem_kernel"),
    ("seed", {"variant": "x"}, "variant"),
    ("seed", {"mlp_units": [0]}, "mlp_units"),
    ("seed", {"num_blocks": 2.0}, "num_blocks"),
])
def test_bad_model_options_are_one_config_error_naming_the_option(preset, values, name):
    with pytest.raises(ConfigError) as e:
        resolve(preset, DataShape(1, 64, 2), {"model": values})
    assert name in _one_line(e)
    options = PatchFormerOptions if preset == "patchformer" else SeedOptions
    with pytest.raises(ConfigError) as e:
        options.from_dict(values)
    assert name in _one_line(e)


def test_unknown_option_names_get_a_did_you_mean_hint():
    with pytest.raises(ConfigError, match="unknown model option 'n_head'") as e:
        resolve("patchformer", DataShape(1, 64, 2), {"model": {"n_head": 2}})
    assert "did you mean 'n_heads'" in _one_line(e)
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        TrainConfig.from_dict({"batchsize": 8})
    with pytest.raises(ConfigError, match="unknown model option 'sam'"):  # removed options
        create_model("patchformer", n_channels=1, n_timepoints=64, n_classes=2, sam=0.05)


def test_good_option_values_are_normalised():
    cfg = TrainConfig(betas=[0.8, 0.9], epochs=np.int32(4), lr=np.float64(0.01))
    assert cfg.betas == (0.8, 0.9) and cfg.to_dict()["betas"] == [0.8, 0.9]
    assert type(cfg.epochs) is int and type(cfg.lr) is float
    assert SeedOptions(mlp_units=(8, 4)).mlp_units == [8, 4]
    assert [d["name"] for d in TrainConfig.describe()] == TrainConfig.names()


def _valid_config() -> dict:
    cfg = resolve("seed", DataShape(1, 40, 3), classes=["a", "b", "c"])
    return json.loads(json.dumps(cfg.to_dict()))


def _set(d: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for p in parents:
        d = d[p]
    d[last] = value


@pytest.mark.parametrize("path, value, name", [
    ("format_version", "2", "format_version"),
    ("format_version", 1, "format_version"),
    ("format_version", 3, "format"),
    ("format_version", True, "format_version"),
    ("format", "other", "format"),
    ("input.n_channels", "abc", "n_channels"),
    ("input.n_channels", -1, "n_channels"),
    ("input.n_channels", 10**13, "n_channels"),
    ("input.n_timepoints", 2.5, "n_timepoints"),
    ("input", "1x40", "input"),
    ("arch", ["x"], "arch"),
    ("arch", "transformer9", "arch"),
    ("preset", 3, "preset"),
    ("classes", "ab", "classes"),
    ("classes", [1, 1], "classes"),
    ("classes", [1], "classes"),
    ("classes", [1.0, float("nan")], "classes"),
    ("classes", [[1], [2]], "classes"),
    ("members", 0, "members"),
    ("members", "3", "members"),
    ("model", [1, 2], "model"),
    ("model.dropout", 2.0, "dropout"),
    ("train.lr", -1, "lr"),
    ("data", "toy", "data"),
    ("extra_key", 1, "extra_key"),
])
def test_corrupt_configs_are_one_config_error(path, value, name):
    d = _valid_config()
    RunConfig.from_dict(copy.deepcopy(d))  # the untouched config reads
    _set(d, path, value)
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(d)
    assert name in _one_line(e)


@pytest.mark.parametrize("key", ["preset", "arch", "model", "train", "input", "classes"])
def test_configs_lacking_a_key_are_refused(key):
    d = _valid_config()
    del d[key]
    with pytest.raises(ConfigError, match=key):
        RunConfig.from_dict(d)


def test_a_config_from_a_newer_tsformer_says_to_upgrade():
    d = _valid_config()
    d["format_version"] = 3
    with pytest.raises(ConfigError, match="upgrade tsformer"):
        RunConfig.from_dict(d)


# --------------------------------------------------------------------------- the registry


@pytest.fixture()
def scratch_presets():
    before = dict(PRESETS)
    yield
    PRESETS.clear()
    PRESETS.update(before)


def test_a_registered_preset_builds_through_create_model(scratch_presets):
    register_preset("mine", arch="seed_transformer", model={"num_blocks": 1})
    m = create_model("mine", n_channels=1, n_timepoints=30, n_classes=2)
    assert isinstance(m, SeedTransformer) and len(m.blocks) == 1
    cfg = resolve("mine", DataShape(1, 30, 2))
    assert (cfg.preset, cfg.arch, cfg.model.num_blocks) == ("mine", "seed_transformer", 1)
    assert cfg.model.head_size == SeedOptions().head_size  # the rest: the option defaults
    assert cfg.train == TrainConfig()
    back = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg


def test_a_preset_scale_rule_applies_only_with_the_training_size(scratch_presets):
    register_preset("scaled", arch="seed_transformer", model={"head_size": 8},
                    scale=lambda s: {"model": {"num_blocks": 1 if s.n_train < 100 else 2},
                                     "train": {"epochs": 3}, "members": 2})
    small = create_model("scaled", n_channels=1, n_timepoints=30, n_classes=2, n_train=50)
    assert isinstance(small, Ensemble) and len(small.members) == 2
    assert all(len(net.blocks) == 1 for net in small.members)
    assert resolve("scaled", DataShape(1, 30, 2, 500)).model.num_blocks == 2
    free = create_model("scaled", n_channels=1, n_timepoints=30, n_classes=2)
    assert isinstance(free, SeedTransformer) and len(free.blocks) == 4


def test_register_preset_refuses_unknown_names(scratch_presets):
    with pytest.raises(ConfigError, match="unknown model option 'num_block'") as e:
        register_preset("bad", arch="seed_transformer", model={"num_block": 1})
    assert "did you mean 'num_blocks'" in _one_line(e)
    assert "bad" not in PRESETS
    with pytest.raises(ConfigError, match="unknown architecture"):
        register_preset("bad", arch="nope")
    assert "bad" not in PRESETS
    # values are checked when the preset is resolved
    register_preset("later", arch="seed_transformer", model={"num_blocks": 0})
    with pytest.raises(ConfigError, match="num_blocks"):
        create_model("later", n_channels=1, n_timepoints=30, n_classes=2)


# --------------------------------------------------------------------------- the CLI


def test_summary_prints_the_seed_table(capsys):
    from tsformer.cli import main

    assert main(["summary"]) == 0
    assert "Total params: 93,130" in capsys.readouterr().out
    assert main(["summary", "--set", "model.num_blocks=1"]) == 0
    assert "Total params: 93,130" not in capsys.readouterr().out
    assert main(["summary", "--set", "model.num_block=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'num_blocks'" in err[0]


@pytest.mark.slow  # ~20 s: trains 3 members for an epoch on ArrowHead
def test_summary_counts_the_parameters_train_saves(tmp_path, capsys):
    from tsformer.cli import main

    assert main(["summary", "--preset", "patchformer", "--dataset", "ArrowHead"]) == 0
    out = capsys.readouterr().out
    found = re.search(r"Total params of the ensemble: ([\d,]+)", out)
    assert found, out[-500:]
    n = int(found.group(1).replace(",", ""))
    run = tmp_path / "run"
    assert main(["train", "--dataset", "ArrowHead", "--preset", "patchformer", "--epochs", "1",
                 "--out", str(run), "--quiet"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["n_parameters"] == n and saved["members"] == 3
    assert n == count_parameters(create_model("patchformer", n_channels=1, n_timepoints=251,
                                              n_classes=3, n_train=36))
    assert not math.isnan(json.loads((run / "metrics.json").read_text())["test"]["accuracy"])
