"""The accurate preset (patchformer) and the benchmark runner: shapes, scaling rules, that
training learns, and that ``tsformer benchmark`` runs end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from tsformer.errors import ConfigError
from tsformer.models import PRESETS, create_model
from tsformer.patchformer import (
    TARGET_TOKENS,
    TRAIN_DEFAULTS,
    PatchFormer,
    PatchFormerNet,
    RocketTokens,
    auto_params,
    resolve_patching,
)


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: these models are small, and on a shared 2-core machine extra threads
    mostly wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("c,t", [(1, 20), (1, 500), (3, 20), (6, 2000)])
def test_forward_shapes_any_length_and_channels(c, t):
    m = create_model("patchformer", n_channels=c, n_timepoints=t, n_classes=5).eval()
    assert m.n_tokens <= TARGET_TOKENS + 2
    out = m(torch.randn(2, c, t))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("opts", [{"stem": "patch"}, {"pos": "learned"}, {"pool": "cls"},
                                  {"pool": "mean"}, {"stem": "dilated"}, {"stem": "rocket"},
                                  {"stem": "rocket", "diff": True, "members": 2},
                                  {"members": 3}, {"spectral": True}, {"diff": True},
                                  {"diff": True, "spectral": True, "stem": "patch"},
                                  {"instance_norm": False, "patch_len": 8, "stride": 4}])
def test_model_options(opts):
    m = PatchFormer(2, 100, 3, **opts).eval()
    assert m(torch.randn(4, 2, 100)).shape == (4, 3)


@pytest.mark.parametrize("kernel, dilations", [(7, [1]), (15, [1, 2]), (63, [1, 2, 4, 8])])
def test_dilated_stem_spans_the_kernel_with_nine_taps(kernel, dilations):
    from tsformer.patchformer import DilatedConv

    conv = DilatedConv(1, 8, kernel)
    assert [b.dilation[0] for b in conv.branches] == dilations
    assert sum(b.out_channels for b in conv.branches) == 8
    x = torch.zeros(1, 1, 201)
    x[..., 100] = 1.0  # an impulse: each output channel sees it over its branch's span
    reach = (conv(x).abs().sum(1)[0] > 0).nonzero().flatten()
    assert int(reach.max() - reach.min()) + 1 == 8 * dilations[-1] + 1 <= kernel + 2


def test_rocket_stem_tokens_are_minirocket_ppv_per_patch():
    import torch.nn.functional as F

    from tsformer.patchformer import minirocket_kernels

    k = minirocket_kernels()
    assert k.shape == (84, 9) and (k.sum(1) == 0).all() and ((k == 2).sum(1) == 3).all()
    assert len({tuple(r.tolist()) for r in k}) == 84
    stem = RocketTokens(1, 100, patch_len=4, stride=2, d_out=8)
    assert stem.dilations == [1, 2, 4, 6, 8, 12]  # up to (T - 1) / 8, MiniRocket's bound
    x = torch.randn(6, 1, 100)
    stem.fit_biases(x)
    assert bool(stem.ready) and (stem.bias.diff(dim=1) > 0).all()  # rising quantiles
    feats = stem.features(x)
    assert feats.shape == (6, 6 * 84 * 4, 49) and feats.min() >= 0 and feats.max() <= 1
    # Feature (kernel 0, dilation 1, threshold 1): the share of the patch above it.
    h = F.conv1d(x, k[:1, None], padding=4)
    want = F.avg_pool1d((h > stem.bias[0, 1]).float(), 4, 2)[:, 0]
    assert torch.equal(feats[:, 1], want)
    # Its thresholds split the kernel's outputs on the priming series into equal shares.
    assert abs(float((h > stem.bias[0, 1]).float().mean()) - 0.6) < 0.01


def test_fit_sets_rocket_thresholds_from_training_series_before_the_first_step():
    # The thresholds come from the same spread of training series whatever the seed (so
    # distributed replicas agree), not from an augmented first batch.
    from tsformer.train import TrainConfig, fit

    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 1, 32)).astype(np.float32)
    y = np.arange(24) % 3
    primed = PatchFormer(1, 32, 3, stem="rocket", **TINY)
    assert not bool(primed.nets[0].patch.ready)
    primed.prime(torch.from_numpy(X))
    biases = []
    for seed in (1, 2):
        m = PatchFormer(1, 32, 3, stem="rocket", members=2, **TINY)
        fit(m, X, y, TrainConfig(lr=3e-3, batch_size=8, epochs=1, validation_split=0.0,
                                 patience=None, verbose=0, seed=seed))
        biases += [net.patch.bias for net in m.nets]
    for b in biases:
        assert torch.equal(b, primed.nets[0].patch.bias)
    # Training further (other data) keeps the thresholds the learned weights were fit to.
    fit(m, X.cumsum(-1), y, TrainConfig(lr=3e-3, batch_size=8, epochs=1, validation_split=0.0,
                                        patience=None, verbose=0, seed=3))
    assert torch.equal(m.nets[0].patch.bias, primed.nets[0].patch.bias)


def test_diff_channels_feed_the_slope_of_each_channel():
    net = PatchFormerNet(2, 100, 3, diff=True, stem_width=8, d_model=16).eval()
    assert net.stem[0].in_channels == 4  # two channels and their first differences
    # Two series equal up to an offset and scale differ nowhere after normalisation, slope
    # included.
    x = torch.randn(1, 2, 100).cumsum(-1)
    torch.testing.assert_close(net(x), net(3 * x + 5), rtol=1e-4, atol=1e-4)
    seen = []
    net.stem[0].register_forward_hook(lambda m, i, o: seen.append(i[0]))
    net(x)
    d = torch.diff(x, dim=-1, prepend=x[..., :1])  # the first point has no slope: 0
    d = (d - d.mean(-1, keepdim=True)) / d.std(-1, keepdim=True, unbiased=False)
    torch.testing.assert_close(seen[0][:, 2:], d, rtol=1e-3, atol=1e-3)


def test_default_has_no_absolute_positions_and_pools_mean_and_max():
    # absolute positions did not pay (docs/results.md), so none by default
    assert PatchFormerNet(1, 100, 2).pos is None
    # the head sees the mean and the max over tokens: a shape anywhere moves the max
    net = PatchFormerNet(1, 100, 2, d_model=32, n_heads=4).eval()
    assert net.head.in_features == 64
    assert PatchFormerNet(1, 100, 2, pos="learned").pos.shape[1] == PatchFormerNet(
        1, 100, 2).n_tokens


#: A small network without dropout, for exact comparisons of training steps.
TINY = {"d_model": 16, "n_heads": 2, "depth": 1, "stem_width": 4, "dropout": 0.0,
        "drop_path": 0.0}


def test_ensemble_members_train_on_their_own_shares_and_average_probabilities():
    m = PatchFormer(1, 50, 3, members=3, dropout=0.0, drop_path=0.0)
    x = torch.randn(9, 1, 50)
    out = m(x)
    assert out.shape == (3, 3, 3)  # in training, each member's logits on its own share
    for net, share, logits in zip(m.nets, x.chunk(3), out, strict=True):
        torch.testing.assert_close(logits, net(share))  # BatchNorm sees that share alone
    with pytest.raises(ValueError, match="one equal share"):
        m(torch.randn(8, 1, 50))
    m.eval()
    with torch.no_grad():
        probs = torch.stack([net(x).softmax(-1) for net in m.nets]).mean(0)
        torch.testing.assert_close(m(x).softmax(-1), probs)


def test_each_member_gets_the_gradient_of_its_own_loss_and_clip():
    # The trainer's loss on an ensemble's stacked logits, times the member count, gives each
    # member the gradient of its own mean loss on its own share; clipping is per member.
    from tsformer.train import TrainConfig, _clip, _loss

    torch.manual_seed(0)
    ens = PatchFormer(1, 32, 3, members=2, **TINY)
    x, y = torch.randn(8, 1, 32), torch.randint(0, 3, (8,))
    cfg = TrainConfig(label_smoothing=0.1)
    pair = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])  # mixup pairs inside each share
    (_loss(ens(x), y, cfg, 0.7, pair) * 2).backward()
    for m, net in enumerate(ens.nets):
        alone = PatchFormer(1, 32, 3, members=1, **TINY)
        alone.nets[0].load_state_dict(net.state_dict())
        s = slice(4 * m, 4 * m + 4)
        _loss(alone(x[s]), y[s], cfg, 0.7, pair[s] - 4 * m).backward()
        for a, b in zip(net.parameters(), alone.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    norms = [torch.cat([p.grad.flatten() for p in g]).norm() for g in ens.clip_groups()]
    _clip(ens, 0.5 * min(norms).item())
    for g in ens.clip_groups():  # each member clipped to the bound on its own
        torch.testing.assert_close(torch.cat([p.grad.flatten() for p in g]).norm(),
                                   torch.tensor(0.5 * min(norms).item()))


def test_fit_gives_each_member_its_own_data_stream():
    # Two members with the same initial weights and no dropout still part ways: each has
    # its own shuffle, augmentation and mixup pairs (a shared stream made them too alike).
    from tsformer.train import TrainConfig, fit

    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 1, 32)).astype(np.float32)
    y = np.arange(24) % 3
    ens = PatchFormer(1, 32, 3, members=2, **TINY)
    ens.nets[1].load_state_dict(ens.nets[0].state_dict())
    # No augmentation or mixup: only the shuffle can tell the members apart.
    cfg = TrainConfig(optimizer="adamw", lr=3e-3, batch_size=8, epochs=2, augment=[],
                      validation_split=0.0,
                      patience=None, verbose=0, seed=1)
    seen: list[list[torch.Tensor]] = [[], []]
    for m, net in enumerate(ens.nets):
        net.register_forward_hook(lambda mod, i, o, m=m: seen[m].append(i[0][:, 0, 0].clone())
                                  if mod.training else None)
    fit(ens, X, y, cfg)
    firsts = torch.from_numpy(X[:, 0, 0])
    for m in range(2):  # each member sees every series once an epoch, in its own order
        order = [int((firsts == v).nonzero()) for v in torch.cat(seen[m][:3])]
        assert sorted(order) == list(range(24))
    assert not torch.equal(torch.cat(seen[0][:3]), torch.cat(seen[1][:3]))
    a, b = (torch.cat([p.flatten() for p in net.parameters()]) for net in ens.nets)
    assert (a - b).abs().max() > 1e-3


def test_instance_norm_makes_the_model_scale_and_offset_invariant():
    m = PatchFormer(1, 64, 2).eval()
    x = torch.randn(3, 1, 64)
    torch.testing.assert_close(m(x), m(5 * x + 100), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("t", [20, 21, 500])
def test_spectral_tokens_are_shift_invariant_evidence(t):
    m = PatchFormerNet(2, t, 3, spectral=True, pos="learned").eval()
    base = PatchFormerNet(2, t, 3).n_tokens
    assert m.n_tokens > base and m.pos.shape[1] == m.n_tokens
    x = torch.randn(4, 2, t)
    assert m(x).shape == (4, 3)
    # The spectral tokens alone see a circular shift as the same series.
    spec = lambda z: m.spec_patch(m.spec_norm(torch.log1p(torch.fft.rfft(m.norm_in(z)).abs())))  # noqa: E731
    torch.testing.assert_close(spec(x), spec(torch.roll(x, 3, -1)), atol=1e-4, rtol=1e-4)


def test_auto_params_scale_with_the_data():
    small = auto_params(1, 24, 16, 2)
    big = auto_params(1, 500, 3601, 2)
    long = auto_params(3, 2000, 200, 10)
    # patches grow with the length so the token count stays flat
    assert small["model"]["stride"] == 1 and long["model"]["stride"] > big["model"]["stride"]
    assert resolve_patching(2000) == (long["model"]["patch_len"], long["model"]["stride"])
    # the stem kernel follows the stride, within bounds: 15 at length 24, 63 for FordA
    assert (small["model"]["stem_kernel"], big["model"]["stem_kernel"],
            long["model"]["stem_kernel"]) == (15, 63, 63)
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
    assert small["train"]["epochs"] > big["train"]["epochs"] == 20  # big: the compute cap
    assert auto_params(1, 1000, 16000, 2)["train"]["epochs"] == 10  # never below 10
    assert small["train"]["lr"] < big["train"]["lr"]
    # below SMALL_DATA series the fixed MiniRocket features; above, the dense stem, 64 wide
    # where the data afford it, else 32 (FordA keeps its budget)
    assert small["model"]["stem"] == "rocket"
    assert (big["model"]["stem"], big["model"]["stem_width"]) == ("conv", 32)
    mid = auto_params(1, 50, 600, 2)["model"]
    assert (mid["stem"], mid["stem_width"], mid["members"]) == ("conv", 64, 1)
    cricket = auto_params(1, 300, 390, 12)["model"]  # CricketY's shape
    assert (cricket["stem"], cricket["members"]) == ("rocket", 2)
    # a deep ensemble below SMALL_DATA series, where one network swings with its seed;
    # FordA-size sets keep one network and their time budget
    assert (small["model"]["members"], big["model"]["members"]) == (3, 1)
    # no ensemble costs more than three FordA runs: costlier members, fewer of them
    assert auto_params(1, 2000, 499, 3)["model"]["members"] == 1
    five = auto_params(1, 24, 16, 2, members=5)  # every member gets the single schedule
    one = auto_params(1, 24, 16, 2, members=1)
    assert five["model"]["members"] == 5 and five["train"] == one["train"]
    for p in (small, big, long):  # every option is accepted by the model and the trainer
        from tsformer.train import TrainConfig

        TrainConfig.from_dict(p["train"])
        PatchFormer(3, 100, 2, **{**p["model"], "patch_len": "auto", "stride": "auto",
                                   "stem_kernel": "auto"})


def test_preset_is_registered_as_plain_data():
    spec = PRESETS["patchformer"]
    assert spec["arch"] == "patchformer"
    json.dumps(spec)


def test_short_training_on_forda_slice_beats_chance(forda_small):
    from tsformer.data import encode_labels
    from tsformer.train import TrainConfig, fit, predict_logits

    Xtr, ytr, Xte, yte = forda_small
    codes, classes = encode_labels(ytr)
    test_codes = np.array([classes.index(v) for v in yte.tolist()])
    p = auto_params(1, Xtr.shape[2], len(Xtr), 2, members=1)
    p["train"].update(epochs=6, batch_size=32, validation_split=0.0, warmup_epochs=1, verbose=0,
                      seed=0)
    torch.manual_seed(0)
    model = create_model("patchformer", n_channels=1, n_timepoints=Xtr.shape[2], n_classes=2,
                         **p["model"])
    fit(model, Xtr, codes, TrainConfig.from_dict(p["train"]))
    acc = (predict_logits(model, Xte).argmax(1).numpy() == test_codes).mean()
    assert acc > 0.7, acc  # chance is 0.5


def test_benchmark_runs_end_to_end(tmp_path, capsys):
    from tsformer.cli import main

    out = tmp_path / "bench"
    rc = main(["benchmark", "--datasets", "Chinatown", "--max-epochs", "2", "--seeds", "2",
               "--threads", "1", "--no-minirocket", "--quiet", "--out", str(out),
               "--set", "model.depth=1", "--set", "model.members=2"])
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

    assert main(["benchmark", "--datasets", "Chinatown", "--resamples", "0", "--quiet"]) == 2
    assert "--resamples must be >= 1" in capsys.readouterr().err


def test_benchmark_rejects_bad_overrides(capsys, tmp_path):
    from tsformer.cli import main

    assert main(["benchmark", "--datasets", "Chinatown", "--set", "depth=2", "--quiet"]) == 2
    assert "--set" in capsys.readouterr().err
    # a flag that is not true/false would otherwise read as true and train another model
    out = tmp_path / "b"
    assert main(["benchmark", "--datasets", "Chinatown", "--set", "model.diff=abc", "--quiet",
                 "--no-minirocket", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diff must be true or false" in err[0] and not out.exists()


def test_cli_and_estimator_use_the_data_scaled_defaults():
    """`train`, the estimator and `tune` get the same size-scaled options as `benchmark`."""
    from tsformer.models import data_shape, get_preset
    from tsformer.patchformer import auto_params

    X = np.zeros((40, 2, 24), np.float32)
    scaled = get_preset("patchformer", data_shape(X, 3))
    expected = auto_params(2, 24, 40, 3)
    assert scaled["train"]["batch_size"] == expected["train"]["batch_size"] == 8
    assert scaled["train"]["validation_split"] == 0.0  # small sets train on everything
    assert scaled["model"]["patch_len"] == expected["model"]["patch_len"]
    assert get_preset("patchformer")["train"]["batch_size"] == 64  # static without data
    assert get_preset("seed", data_shape(X, 3)) == get_preset("seed")  # seed: exact, static


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
                                  {"members": 0}, {"members": "two"}, {"members": 2.5}])
def test_bad_model_options_are_one_clear_error(opts):
    from tsformer.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(opts))):
        PatchFormer(1, 50, 2, **opts)


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
    assert "no results.json in" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{}")
    assert main(["benchmark", "--merge", str(tmp_path / "broken")]) == 2
    err = capsys.readouterr().err
    assert "is not a tsformer benchmark result" in err and len(err.strip().splitlines()) == 1


def test_rocket_thresholds_travel_with_the_weights_and_are_not_refit():
    # A network loaded from a primed one keeps the loaded thresholds on its first input
    # (they are not re-set from that input), and priming it again changes nothing.
    primed = PatchFormer(1, 40, 2, stem="rocket", **TINY)
    primed.prime(torch.randn(8, 1, 40))
    fresh = PatchFormer(1, 40, 2, stem="rocket", **TINY)
    fresh.load_state_dict(primed.state_dict())
    fresh.eval(), primed.eval()
    x = 5 * torch.randn(4, 1, 40).cumsum(-1)  # other data than the priming series
    torch.testing.assert_close(fresh(x), primed(x))
    fresh.prime(x)
    assert torch.equal(fresh.nets[0].patch.bias, primed.nets[0].patch.bias)
    # An unprimed network takes its thresholds from its first input instead.
    raw = PatchFormer(1, 40, 2, stem="rocket", **TINY).eval()
    raw(x)
    assert bool(raw.nets[0].patch.ready) and raw.nets[0].patch._primed


@pytest.mark.parametrize("length,patch_len,stride", [(80, 2, 1), (131, 4, 2), (577, 18, 9),
                                                     (50, 9, 3), (50, 7, 3), (40, 40, 5)])
def test_rocket_patch_means_equal_average_pooling_bit_for_bit(length, patch_len, stride):
    # The block-sum path must give avg_pool1d's numbers exactly, so that its speed changes
    # no trained weight; patches that are no whole number of strides take avg_pool1d itself.
    import torch.nn.functional as F

    stem = RocketTokens(1, length, patch_len, stride, 8)
    width = length + stem.pad
    ppv = (torch.rand(3, 5, width, generator=torch.Generator().manual_seed(0)) > 0.4).float()
    torch.testing.assert_close(stem._patch_mean(ppv), F.avg_pool1d(ppv, patch_len, stride),
                               rtol=0, atol=0)


def test_rocket_stem_bf16_precision_rounds_input_outputs_and_thresholds_on_any_device():
    # What CUDA's bf16 autocast did to the stem, made explicit so a CPU computes the same
    # features: the preset asks for it; a bare network (or a config saved before the option)
    # keeps full precision.
    import torch.nn.functional as F

    from tsformer.patchformer import minirocket_kernels

    assert PatchFormerNet(1, 100, 2, stem="rocket").patch.precision == "fp32"
    assert create_model("patchformer", n_channels=1, n_timepoints=100, n_classes=2,
                        stem="rocket").nets[0].patch.precision == "bf16"
    x = torch.randn(6, 1, 100).cumsum(-1) / 10  # slow wiggles: rounding moves some ties
    full = RocketTokens(1, 100, patch_len=4, stride=2, d_out=8)
    half = RocketTokens(1, 100, patch_len=4, stride=2, d_out=8, precision="bf16")
    full.fit_biases(x)
    half.load_state_dict(full.state_dict())  # the same thresholds (fit in full precision)
    k = minirocket_kernels()[:1, None]
    r = lambda t: t.to(torch.bfloat16).float()  # noqa: E731
    h = r(F.conv1d(r(x), k, padding=4))
    want = F.avg_pool1d((h > r(full.bias[0, 1])).float(), 4, 2)[:, 0]
    got = half.features(x)
    assert torch.equal(got[:, 1], want)
    assert not torch.equal(got, full.features(x))  # a different function, not a no-op
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast adds no second rounding
        assert torch.equal(half.features(x), got)
    with pytest.raises(ConfigError, match="stem_precision must be one of fp32, bf16"):
        PatchFormerNet(1, 100, 2, stem="conv", stem_precision="fp16")
