"""The accurate preset (patchformer) and the benchmark runner: shapes, scaling rules, that
training learns, and that ``tsformer benchmark`` runs end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from tsformer import create_model
from tsformer.errors import ConfigError
from tsformer.models import Ensemble
from tsformer.models.patches import TARGET_TOKENS, resolve_patching
from tsformer.models.patchformer import (
    TRAIN_DEFAULTS,
    PatchFormerNet,
    PatchFormerOptions,
    auto_params,
)
from tsformer.models.rocket import RocketTokens, minirocket_kernels
from tsformer.pipeline import resolve
from tsformer.registry import DataShape, get_preset
from tsformer.training import TrainConfig, fit


@pytest.mark.parametrize("c,t", [(1, 20), (1, 500), (3, 20), (6, 2000)])
def test_forward_shapes_any_length_and_channels(c, t):
    m = create_model("patchformer", n_channels=c, n_timepoints=t, n_classes=5).eval()
    assert isinstance(m, PatchFormerNet)  # no training-set size: one network
    assert m.n_tokens <= TARGET_TOKENS + 2
    out = m(torch.randn(2, c, t))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("opts", [{"stem": "rocket"}, {"stem": "rocket", "members": 2},
                                  {"members": 3},
                                  {"instance_norm": False, "patch_len": 8, "stride": 4}])
def test_model_options(opts):
    m = create_model("patchformer", n_channels=2, n_timepoints=100, n_classes=3, **opts).eval()
    members = opts.get("members", 1)
    assert isinstance(m, Ensemble if members > 1 else PatchFormerNet)
    if members > 1:
        assert len(m.members) == members
    assert m(torch.randn(4, 2, 100)).shape == (4, 3)


def test_rocket_stem_tokens_are_minirocket_ppv_per_patch():
    import torch.nn.functional as F

    k = minirocket_kernels()
    assert k.shape == (84, 9) and (k.sum(1) == 0).all() and ((k == 2).sum(1) == 3).all()
    assert len({tuple(r.tolist()) for r in k}) == 84
    stem = RocketTokens(1, 100, patch_len=4, stride=2, d_out=8)
    assert stem.dilations == [1, 2, 4, 6, 8, 12]  # up to (T - 1) / 8, MiniRocket's bound
    x = torch.randn(6, 1, 100)
    stem.fit_biases(x)
    assert bool(stem.ready) and (stem.bias.diff(dim=1) > 0).all()  # rising quantiles
    feats = stem.features(x)
    assert feats.shape == (6, 49, 6 * 84 * 4) and feats.min() >= 0 and feats.max() <= 1
    # Feature (kernel 0, dilation 1, threshold 1): the share of the patch above it.
    h = F.conv1d(x, k[:1, None], padding=4)
    want = F.avg_pool1d((h > stem.bias[0, 1]).float(), 4, 2)[:, 0]
    assert torch.equal(feats[:, :, 1], want)
    # Its thresholds split the kernel's outputs on the priming series into equal shares.
    assert abs(float((h > stem.bias[0, 1]).float().mean()) - 0.6) < 0.01


#: A small network without dropout, for exact comparisons of training steps.
TINY = {"d_model": 16, "n_heads": 2, "depth": 1, "stem_width": 4, "dropout": 0.0,
        "drop_path": 0.0}


def test_fit_sets_rocket_thresholds_from_training_series_before_the_first_step():
    # The thresholds come from the same spread of training series whatever the seed (so
    # distributed replicas and ensemble members agree), not from an augmented first batch.
    from tsformer.pipeline import train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 1, 32)).astype(np.float32)
    y = np.arange(24) % 3
    primed = PatchFormerNet(1, 32, 3, stem="rocket", **TINY)
    assert not bool(primed.patch.ready) and not primed.patch.primed
    primed.init_from_data(torch.from_numpy(X))
    biases = []
    for seed in (1, 2):
        cfg = resolve("patchformer", DataShape.of(X, 3),
                      {"model": {**TINY, "stem": "rocket"}, "members": 2,
                       "train": {"lr": 3e-3, "batch_size": 8, "epochs": 1,
                                 "validation_split": 0.0, "patience": None, "verbose": 0,
                                 "seed": seed}})
        m = train(cfg, X, y).model
        biases += [net.patch.bias for net in m.members]
    assert len(biases) == 4
    for b in biases:
        assert torch.equal(b, primed.patch.bias)
    # Training further (other data) keeps the thresholds the learned weights were fit to.
    net = m.members[0]
    fit(net, X.cumsum(-1), y, TrainConfig(lr=3e-3, batch_size=8, epochs=1, validation_split=0.0,
                                          patience=None, verbose=0, seed=3))
    assert torch.equal(net.patch.bias, primed.patch.bias)


def test_default_has_no_absolute_positions_and_pools_mean_and_max():
    # absolute positions did not pay (docs/results.md): no position parameter at all
    net = PatchFormerNet(1, 100, 2, d_model=32, n_heads=4).eval()
    assert not [n for n, _ in net.named_parameters() if "pos" in n]
    # the head sees the mean and the max over tokens: a shape anywhere moves the max
    assert net.head.in_features == 64
    seen = []
    net.head.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    tokens = []
    net.norm.register_forward_hook(lambda m, i, o: tokens.append(o))
    net(torch.randn(3, 1, 100))
    torch.testing.assert_close(seen[0], torch.cat([tokens[0].mean(1), tokens[0].amax(1)], -1))


def test_ensemble_averages_the_members_probabilities():
    torch.manual_seed(0)
    m = Ensemble([PatchFormerNet(1, 50, 3, dropout=0.0, drop_path=0.0) for _ in range(3)])
    x = torch.randn(9, 1, 50)
    m.eval()
    with torch.no_grad():
        probs = torch.stack([net(x).softmax(-1) for net in m.members]).mean(0)
        out = m(x)
    assert out.shape == (9, 3)
    torch.testing.assert_close(out.softmax(-1), probs)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(9))  # log of the mean: a logit
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])


def test_fit_gives_each_member_its_own_data_stream():
    # Two members with the same initial weights and no dropout still part ways: each has
    # its own seed (pipeline.member_seed), so its own shuffle, augmentation and mixup pairs
    # (a shared stream made them too alike).
    from tsformer.pipeline import member_seed

    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 1, 32)).astype(np.float32)
    y = np.arange(24) % 3
    torch.manual_seed(0)
    nets = [PatchFormerNet(1, 32, 3, **TINY) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    # No augmentation or mixup: only the shuffle can tell the members apart.
    cfg = TrainConfig(optimizer="adamw", lr=3e-3, batch_size=8, epochs=2, augment=[],
                      validation_split=0.0, patience=None, verbose=0)
    seen: list[list[torch.Tensor]] = [[], []]
    for m, net in enumerate(nets):
        net.register_forward_hook(lambda mod, i, o, m=m: seen[m].append(i[0][:, 0, 0].clone())
                                  if mod.training else None)
        fit(net, X, y, cfg.replace(seed=member_seed(1, m)))
    firsts = torch.from_numpy(X[:, 0, 0])
    for m in range(2):  # each member sees every series once an epoch, in its own order
        for epoch in range(2):
            batches = torch.cat(seen[m][3 * epoch:3 * epoch + 3])
            order = [int((firsts == v).nonzero()) for v in batches]
            assert sorted(order) == list(range(24))
    assert not torch.equal(torch.cat(seen[0][:3]), torch.cat(seen[1][:3]))
    a, b = (torch.cat([p.flatten() for p in net.parameters()]) for net in nets)
    assert (a - b).abs().max() > 1e-3


def test_instance_norm_makes_the_model_scale_and_offset_invariant():
    m = create_model("patchformer", n_channels=1, n_timepoints=64, n_classes=2).eval()
    x = torch.randn(3, 1, 64)
    torch.testing.assert_close(m(x), m(5 * x + 100), atol=1e-3, rtol=1e-3)


def test_auto_params_scale_with_the_data():
    shapes = {"small": DataShape(1, 24, 2, 16), "big": DataShape(1, 500, 2, 3601),
              "long": DataShape(3, 2000, 10, 200)}
    small, big, long = (auto_params(s) for s in shapes.values())
    built = {k: resolve("patchformer", s).model for k, s in shapes.items()}
    # the rule leaves patching to "auto"; resolve() makes it concrete for the shape
    assert "stride" not in small["model"] and "patch_len" not in small["model"]
    # patches grow with the length so the token count stays flat
    assert built["small"].stride == 1 and built["long"].stride > built["big"].stride
    assert resolve_patching(2000) == (built["long"].patch_len, built["long"].stride)
    # the stem kernel follows the stride, within bounds: 15 at length 24, 63 for FordA
    assert (built["small"].stem_kernel, built["big"].stem_kernel,
            built["long"].stem_kernel) == (15, 63, 63)
    net = PatchFormerNet(1, 500, 2)  # "auto" resolves the same way inside the model
    assert net.stem[0].kernel_size == (63,) and net.stem[3].kernel_size == (63,)
    # tiny sets: all data trains, small batches, more epochs; big sets: a validation split
    assert small["train"]["validation_split"] == 0 and big["train"]["validation_split"] > 0
    # without validation data the final weights are kept; with it, the best by val loss
    assert (small["train"]["restore_best"], big["train"]["restore_best"]) == (False, True)
    # window warping for small sets only (it cost FordA 2.5 points); the rest is shared
    assert small["train"]["augment"] == ["scale", "shift", "jitter", "warp"]
    assert big["train"]["augment"] == ["scale", "shift", "jitter"]
    assert (small["train"]["mixup"], big["train"]["mixup"]) == (0.2, 0.0)  # mixup likewise
    assert "warp" not in TRAIN_DEFAULTS["augment"]  # the rule adds it; the defaults stay put
    assert 8 <= small["train"]["batch_size"] < big["train"]["batch_size"] <= 64
    # epochs: the step target on tiny sets; the compute budget trims big ones (FordA), never
    # below MIN_BUDGET_EPOCHS
    assert small["train"]["epochs"] == 400 > big["train"]["epochs"] >= 2
    assert auto_params(DataShape(1, 1000, 2, 16000))["train"]["epochs"] == 2
    assert small["train"]["lr"] < big["train"]["lr"]
    # below SMALL_DATA series the fixed MiniRocket features with augmentation drawn once as
    # copies; above, a learned stem, 64 wide where the data afford it, else 32
    assert small["model"]["stem"] == "rocket" and small["train"]["augment_views"] == 7
    assert big["model"]["stem"] != "rocket" and big["train"]["augment_views"] == 0
    assert big["model"]["stem_width"] in (32, 64)
    wide, narrow = auto_params(DataShape(1, 24, 2, 500)), auto_params(DataShape(1, 50, 2, 600))
    assert (wide["model"]["stem_width"], narrow["model"]["stem_width"]) == (64, 32)
    # a deep ensemble below SMALL_DATA series where the budget gives each member enough
    # epochs; one network where it does not (CricketY's shape) and on FordA-size sets
    assert (small["members"], big["members"]) == (3, 1)
    assert auto_params(DataShape(1, 300, 12, 390))["members"] == 1
    # members overridden: every member gets the single-network schedule
    five = resolve("patchformer", shapes["small"], {"members": 5})
    one = resolve("patchformer", shapes["small"], {"members": 1})
    assert (five.members, one.members) == (5, 1) and five.train == one.train
    assert five.model == one.model
    for p in (small, big, long):  # every option is accepted by the model and the trainer
        TrainConfig.from_dict(p["train"])
        opts = PatchFormerOptions.from_dict({**get_preset("patchformer").model, **p["model"]})
        PatchFormerNet(3, 100, 2, **opts.to_dict())


def test_preset_is_registered_as_plain_data():
    spec = get_preset("patchformer")
    assert spec.arch == "patchformer" and spec.members == 1
    json.dumps(spec.values())
    json.dumps(spec.values(DataShape(1, 24, 2, 16)))
    # the data-scaled values apply only when the training-set size is known
    assert spec.values(DataShape(1, 24, 2))["train"] == spec.values()["train"]
    assert spec.values(DataShape(1, 24, 2, 16))["members"] == 3


@pytest.mark.slow  # ~25 s: 6 epochs on 600 series
def test_short_training_on_forda_slice_beats_chance(forda_small):
    from tsformer.data import encode_labels
    from tsformer.inference import predict_logits
    from tsformer.pipeline import train

    Xtr, ytr, Xte, yte = forda_small
    codes, classes = encode_labels(ytr)
    test_codes = np.array([classes.index(v) for v in yte.tolist()])
    cfg = resolve("patchformer", DataShape.of(Xtr, 2),
                  {"members": 1, "train": {"epochs": 6, "batch_size": 32, "validation_split": 0.0,
                                           "warmup": 1 / 6, "verbose": 0, "seed": 0}})
    model = train(cfg, Xtr, codes).model
    acc = (predict_logits(model, Xte).argmax(1).numpy() == test_codes).mean()
    assert acc > 0.7, acc  # chance is 0.5


def test_benchmark_runs_end_to_end(tmp_path, capsys):
    from tsformer.cli import main

    out = tmp_path / "bench"
    rc = main(["benchmark", "--datasets", "Chinatown", "--max-epochs", "2", "--seeds", "2",
               "--threads", "1", "--no-minirocket", "--quiet", "--out", str(out),
               "--set", "model.depth=1", "--set", "members=2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| Chinatown |" in printed and "minirocket_published" in printed
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert rows[0]["dataset"] == "Chinatown" and rows[0]["seeds"] == "2"
    assert 0.0 <= float(rows[0]["acc_mean"]) <= 1.0
    assert float(rows[0]["minirocket_published"]) == pytest.approx(0.969, abs=1e-3)
    data = json.loads((out / "results.json").read_text())
    runs = data["results"][0]["runs"]
    assert runs[0]["params"]["model"]["depth"] == 1 and [r["seed"] for r in runs] == [0, 1]
    assert all(r["params"]["members"] == 2 for r in runs)
    # an ensemble's members are scored alone too, to show what averaging adds
    assert all(len(r["member_accuracy"]) == 2 for r in runs)
    assert all(0.0 <= a <= 1.0 for r in runs for a in r["member_accuracy"])
    assert (out / "results.md").read_text().startswith("# Benchmark")


def test_stratified_resample_keeps_class_counts_and_every_series():
    from tsformer.benchmark import _load
    from tsformer.data import stratified_resample

    X, y, Xt, yt = _load("Chinatown")[:4]
    same = stratified_resample(X, y, Xt, yt, 0)
    assert all(a is b for a, b in zip(same, (X, y, Xt, yt), strict=True))  # seed 0: archive
    X1, y1, Xt1, yt1 = stratified_resample(X, y, Xt, yt, 1)
    assert np.array_equal(np.bincount(y1), np.bincount(y)) and len(yt1) == len(yt)
    pooled = np.concatenate([X, Xt]).reshape(len(y) + len(yt), -1)
    redrawn = np.concatenate([X1, Xt1]).reshape(len(pooled), -1)
    assert sorted(map(bytes, pooled)) == sorted(map(bytes, redrawn))  # a partition, no copies
    assert not np.array_equal(X1, X)  # a new draw
    again = stratified_resample(X, y, Xt, yt, 1)[0]
    assert np.array_equal(again, X1) and not np.array_equal(
        stratified_resample(X, y, Xt, yt, 2)[0], X1)  # reproducible, one draw per seed


def test_benchmark_resamples(tmp_path, monkeypatch):
    """Each resample trains on its own split; live MiniRocket is averaged over the same ones."""
    from tsformer import benchmark

    seen = []

    def fake_train(preset, X, y, Xt, yt, n_classes, *, seed, **kw):
        seen.append((X.sum(), seed))
        return {"accuracy": 0.5 + 0.1 * len(seen), "train_seconds": 1.0,
                "train_cpu_seconds": 1.0}

    monkeypatch.setattr(benchmark, "train_and_test", fake_train)
    monkeypatch.setattr(benchmark, "live_minirocket",
                        lambda X, y, Xt, yt, n: {"accuracy": float(X.sum() > 0),
                                                 "train_seconds": 2.0})
    out = tmp_path / "b"
    res = benchmark.run_benchmark(["Chinatown"], resamples=3, seeds=2, out=out, progress=False)
    assert len(seen) == 6 and len({s for s, _ in seen}) == 3  # 3 splits, 2 seeds each
    assert [r["resample"] for r in res[0]["runs"]] == [0, 0, 1, 1, 2, 2]
    assert res[0]["acc_mean"] == pytest.approx(0.85)
    assert len(res[0]["minirocket_live"]["per_resample"]) == 3
    row = next(csv.DictReader(open(out / "results.csv")))
    assert (row["resamples"], row["seeds"]) == ("3", "2")


def test_benchmark_rejects_zero_resamples(capsys):
    from tsformer.cli import main

    with pytest.raises(SystemExit) as e:  # argparse refuses it, before anything is loaded
        main(["benchmark", "--datasets", "Chinatown", "--resamples", "0", "--quiet"])
    assert e.value.code == 2
    assert "--resamples: must be at least 1" in capsys.readouterr().err


def test_benchmark_rejects_bad_overrides(capsys, tmp_path):
    from tsformer.cli import main

    assert main(["benchmark", "--datasets", "Chinatown", "--set", "depth=2", "--quiet"]) == 2
    assert "--set" in capsys.readouterr().err
    # a flag that is not true/false would otherwise read as true and train another model
    out = tmp_path / "b"
    assert main(["benchmark", "--datasets", "Chinatown", "--set", "model.instance_norm=abc",
                 "--quiet", "--no-minirocket", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "instance_norm must be true or false" in err[0] and not out.exists()


def test_cli_and_estimator_use_the_data_scaled_defaults():
    """`train`, the estimator and `tune` get the same size-scaled options as `benchmark`:
    all of them resolve through config.resolve with the data's shape."""
    X = np.zeros((40, 2, 24), np.float32)
    scaled = resolve("patchformer", DataShape.of(X, 3))
    expected = auto_params(DataShape(2, 24, 3, 40))
    assert scaled.train.batch_size == expected["train"]["batch_size"] == 8
    assert scaled.train.validation_split == 0.0  # small sets train on everything
    assert scaled.members == expected["members"] == 3
    assert scaled.model.patch_len == resolve_patching(24)[0]
    # static without the training-set size
    assert get_preset("patchformer").values()["train"]["batch_size"] == 64
    assert resolve("patchformer", DataShape(2, 24, 3)).train.batch_size == 64
    # seed: exact, static
    assert get_preset("seed").values(DataShape.of(X, 3)) == get_preset("seed").values()
    assert resolve("seed", DataShape.of(X, 3)) == resolve("seed", DataShape(2, 24, 3))


@pytest.mark.slow  # ~5 s: starts a spawned child process
def test_live_minirocket_runs_in_a_child_process(tmp_path, monkeypatch):
    """A stand-in aeon (on sys.path, which spawn passes on): the fit happens in another
    process, so numba's thread pool can never slow later torch training in this one."""
    import os
    import sys

    from tsformer.benchmark import live_minirocket

    pkg = tmp_path / "aeon" / "classification" / "convolution_based"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "aeon", tmp_path / "aeon" / "classification"):
        (d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text(
        "import os\n"
        "import numpy as np\n"
        "class MiniRocketClassifier:\n"
        "    def __init__(self, n_jobs=1, random_state=None): pass\n"
        "    def fit(self, X, y):\n"
        f"        open({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid()))\n"
        "        self.c = np.bincount(y).argmax()\n"
        "    def predict(self, X): return np.full(len(X), self.c)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in [m for m in sys.modules if m == "aeon" or m.startswith("aeon.")]:
        monkeypatch.delitem(sys.modules, mod)
    X = np.zeros((6, 1, 10), np.float32)
    out = live_minirocket(X, np.array([0, 1, 1, 1, 0, 1]), X[:4], np.array([1, 1, 0, 1]), 1)
    assert out["accuracy"] == 0.75 and out["train_seconds"] >= 0
    assert int((tmp_path / "pid").read_text()) != os.getpid()


def test_live_minirocket_is_skipped_without_aeon(monkeypatch):
    import importlib.util

    from tsformer import benchmark

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    X = np.zeros((2, 1, 5), np.float32)
    assert benchmark.live_minirocket(X, np.array([0, 1]), X, np.array([0, 1]), 1) is None


@pytest.mark.parametrize("opts", [{"stem_kernel": 0}, {"stem": "lstm"}, {"pool": "max"},
                                  {"d_model": 30, "n_heads": 4}, {"diff": "abc"},
                                  {"spectral": "abc"}, {"instance_norm": 1},
                                  {"members": 0}, {"members": "two"}, {"members": 2.5},
                                  {"stem_kernel": 64}, {"stride": 1000}])
def test_bad_model_options_are_one_clear_error(opts):
    # removed options (pool, diff, spectral) are unknown names now: still one clear line
    with pytest.raises(ConfigError, match=next(iter(opts))) as e:
        create_model("patchformer", n_channels=1, n_timepoints=50, n_classes=2, **opts)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("t", [5, 14, 50])
def test_a_resolved_config_resolves_again_for_short_series(t):
    # the automatic kernel (15 at stride 1) is written into config.json; training again from
    # it (--config RUN_DIR, tune's best.json) must not be refused as longer than the series
    for stem in ("conv", "rocket"):
        first = resolve("patchformer", DataShape(1, t, 2, 600), {"model": {"stem": stem}})
        again = resolve("patchformer", DataShape(1, t, 2, 600), {"model": first.model.to_dict()})
        assert again.model == first.model


def test_benchmark_merge_pools_runs_split_over_processes(tmp_path, monkeypatch, capsys):
    """Runs split over processes (per dataset, per seed) merge into one table: the same
    figures one process would have written, the headline mean given per seed."""
    from tsformer import benchmark
    from tsformer.cli import main

    acc = {("Chinatown", 0): 0.90, ("Chinatown", 1): 0.80, ("Coffee", 0): 1.0,
           ("Coffee", 1): 0.96, ("Chinatown", 2): 0.5}

    def fake_train(preset, X, y, Xt, yt, n_classes, *, seed, overrides=None, **kw):
        name = "Coffee" if X.shape[2] == 286 else "Chinatown"
        return {"accuracy": acc[name, seed], "train_seconds": 1.0 + seed,
                "train_cpu_seconds": 2.0}

    monkeypatch.setattr(benchmark, "train_and_test", fake_train)
    dirs = []
    for name in ("Chinatown", "Coffee"):
        for seed in (0, 1):
            dirs.append(tmp_path / f"{name}-{seed}")
            benchmark.run_benchmark([name], first_seed=seed, minirocket=False, out=dirs[-1],
                                    progress=False)
    whole = tmp_path / "whole"
    benchmark.run_benchmark(["Chinatown", "Coffee"], seeds=2, minirocket=False, out=whole,
                            progress=False)
    out = tmp_path / "merged"
    assert main(["benchmark", "--merge", *map(str, dirs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seed 0 0.9500, seed 1 0.8800 (mean 0.9150 +- 0.0350)" in printed
    merged = list(csv.DictReader(open(out / "results.csv")))
    alone = list(csv.DictReader(open(whole / "results.csv")))
    keys = ("dataset", "acc_mean", "acc_std", "seeds", "train_s", "minirocket_published")
    assert [[r[k] for k in keys] for r in merged] == [[r[k] for k in keys] for r in alone]
    assert merged[0]["acc_std"] == "0.0500" and merged[-1]["acc_mean"] == "0.9150"
    assert "by seed" in (out / "results.md").read_text()
    # Results written before runs carried their seed get it from the run's first seed.
    old = json.loads((dirs[1] / "results.json").read_text())
    for r in old["results"]:
        for run in r["runs"]:
            del run["seed"]
    (dirs[1] / "results.json").write_text(json.dumps(old))
    res, meta = benchmark.merge_results(dirs)
    assert meta["seed_list"] == [0, 1] and benchmark.seed_means(res) == {
        0: pytest.approx(0.95), 1: pytest.approx(0.88)}
    # The same run twice, or another recipe, is one clear error and writes nothing.
    assert main(["benchmark", "--merge", str(dirs[0]), str(dirs[0]), "--out",
                 str(tmp_path / "twice")]) == 2
    assert "both hold Chinatown resample 0 seed 0" in capsys.readouterr().err
    other = tmp_path / "other"
    benchmark.run_benchmark(["Chinatown"], first_seed=2, minirocket=False, out=other,
                            progress=False, overrides={"model": {"depth": 1}})
    assert main(["benchmark", "--merge", str(dirs[0]), str(other)]) == 2
    assert "another configuration" in capsys.readouterr().err
    assert not (tmp_path / "twice").exists()
    # A directory that holds no benchmark result, or a broken one: one line, exit 2.
    assert main(["benchmark", "--merge", str(tmp_path / "nowhere")]) == 2
    assert "nowhere is not a directory written by 'tsformer benchmark'" in (
        capsys.readouterr().err)
    (tmp_path / "empty").mkdir()
    assert main(["benchmark", "--merge", str(tmp_path / "empty")]) == 2
    assert "no results.json in" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{}")
    assert main(["benchmark", "--merge", str(tmp_path / "broken")]) == 2
    err = capsys.readouterr().err
    assert "is not a tsformer benchmark result" in err and len(err.strip().splitlines()) == 1


def test_rocket_thresholds_travel_with_the_weights_and_are_not_refit():
    # A network loaded from a primed one keeps the loaded thresholds on its first input
    # (they are not re-set from that input), and priming it again changes nothing.
    primed = PatchFormerNet(1, 40, 2, stem="rocket", **TINY)
    primed.init_from_data(torch.randn(8, 1, 40))
    fresh = PatchFormerNet(1, 40, 2, stem="rocket", **TINY)
    fresh.load_state_dict(primed.state_dict())
    assert fresh.patch.primed
    fresh.eval(), primed.eval()
    x = 5 * torch.randn(4, 1, 40).cumsum(-1)  # other data than the priming series
    torch.testing.assert_close(fresh(x), primed(x))
    fresh.init_from_data(x)
    assert torch.equal(fresh.patch.bias, primed.patch.bias)
    # An unprimed network takes its thresholds from its first input instead.
    raw = PatchFormerNet(1, 40, 2, stem="rocket", **TINY).eval()
    raw(x)
    assert bool(raw.patch.ready) and raw.patch.primed


@pytest.mark.parametrize("length,patch_len,stride", [(80, 2, 1), (131, 4, 2), (577, 18, 9),
                                                     (50, 9, 3), (50, 7, 3), (40, 40, 5)])
def test_rocket_patch_means_equal_average_pooling_bit_for_bit(length, patch_len, stride):
    # The block-sum path (padding counted in, not copied) must give the numbers of
    # avg_pool1d over the replicate-padded map exactly, so that its speed changes no trained
    # weight; patches that are no whole number of strides take avg_pool1d itself.
    import torch.nn.functional as F

    stem = RocketTokens(1, length, patch_len, stride, 8)
    ppv = (torch.rand(3, 5, length, generator=torch.Generator().manual_seed(0)) > 0.4).float()
    padded = F.pad(ppv, (0, stem.pad), mode="replicate") if stem.pad else ppv
    torch.testing.assert_close(stem._patch_mean(ppv), F.avg_pool1d(padded, patch_len, stride),
                               rtol=0, atol=0)
