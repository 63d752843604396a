"""What keeps the accurate preset cheap: the rocket features computed once (for a pool of
augmented copies), shared by ensemble members at prediction, the compute budget of the
preset rule, and the time limit."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from cli_helpers import run

from tsformer.models import Ensemble
from tsformer.models.patchformer import (
    BUDGET_SECONDS,
    LARGE_BUDGET_SECONDS,
    MACS_PER_SECOND,
    STEP_SECONDS,
    PatchFormerNet,
    PatchFormerOptions,
    auto_params,
    budget_seconds,
    forward_macs,
)
from tsformer.pipeline import resolve, train
from tsformer.registry import DataShape
from tsformer.training import TrainConfig, fit
from tsformer.training.inputs import FromFeatures, prepare_inputs


def _data(n=24, t=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1, t)).astype(np.float32)
    y = np.arange(n) % 2
    X[y == 1, 0, 20:30] += 3.0  # class 1 carries a bump
    return X, y


def _rocket_net(t=64, **kw):
    return PatchFormerNet(1, t, 2, stem="rocket", d_model=16, depth=1, n_heads=2, **kw)


def test_rocket_stem_trains_on_features_computed_once():
    X, y = _data()
    net = _rocket_net()
    net.init_from_data(torch.from_numpy(X))
    cfg = TrainConfig(epochs=1, augment=[], verbose=0, validation_split=0)
    inputs = prepare_inputs(net, net, torch.from_numpy(X), cfg, torch.Generator(),
                            distributed=False)
    assert isinstance(inputs.net, FromFeatures) and inputs.pool.shape[:2] == (1, len(X))
    # the learned part on the pooled features is the network on the series, exactly
    net.eval()
    with torch.no_grad():
        assert torch.equal(inputs.net(inputs.pool[0]), net(torch.from_numpy(X)))
    calls = []
    original = net.patch.features
    net.patch.features = lambda x: calls.append(len(x)) or original(x)
    net.train()
    fit(net, X, y, cfg)
    assert sum(calls) == len(X) + 1  # once per series (and one probe), not once per step


def test_augmented_copies_are_made_once_and_drawn_per_epoch():
    X, y = _data()
    net = _rocket_net()
    net.init_from_data(torch.from_numpy(X))
    pooled = TrainConfig(augment=["shift", "warp"], augment_views=3, verbose=0)
    inputs = prepare_inputs(net, net, torch.from_numpy(X), pooled, torch.Generator(),
                            distributed=False)
    assert inputs.pool.shape[:2] == (4, len(X)) and not inputs.augs  # series + 3 copies
    assert not torch.equal(inputs.pool[0], inputs.pool[1])  # the copies differ
    batch = inputs.batch(torch.arange(len(X)), torch.Generator())
    assert any(torch.equal(batch[i], inputs.pool[v, i]) for i in range(3) for v in range(4))
    # fresh augmentations (augment_views=0) cannot use features computed once
    fresh = prepare_inputs(net, net, torch.from_numpy(X), pooled.replace(augment_views=0),
                           torch.Generator(), distributed=False)
    assert fresh.net is net and fresh.augs
    # a dense stem has no fixed stage: the pool holds series
    conv = PatchFormerNet(1, 64, 2, d_model=16, depth=1, n_heads=2)
    plain = prepare_inputs(conv, conv, torch.from_numpy(X), pooled, torch.Generator(),
                           distributed=False)
    assert plain.net is conv and plain.pool.shape == (4, *X.shape)


def test_ensemble_members_share_the_fixed_features():
    X = torch.from_numpy(_data()[0])
    members = [_rocket_net() for _ in range(3)]
    for m in members:
        m.init_from_data(X)  # same kernels, same series: same thresholds
    ens = Ensemble(members).eval()
    calls = []
    for m in members:
        original = m.patch.features
        m.patch.features = lambda x, original=original: calls.append(1) or original(x)
    with torch.no_grad():
        shared = ens(X)
    assert len(calls) == 1
    with torch.no_grad():  # the same result as each member on its own
        expected = (sum(m(X).softmax(-1) for m in members) / 3).clamp_min(1e-12).log()
    assert torch.allclose(shared, expected, atol=1e-6)
    members[1].patch.bias.add_(0.5)  # different thresholds: each member computes its own
    calls.clear()
    with torch.no_grad():
        ens(X)
    assert len(calls) == 3


@pytest.mark.parametrize("n,t", [(16, 24), (36, 251), (40, 1639), (390, 300), (499, 80),
                                 (504, 1751), (600, 80), (3601, 500), (7200, 46)])
def test_preset_plans_within_its_compute_budget(n, t):
    p = auto_params(DataShape(1, t, 5, n))
    cfg = resolve("patchformer", DataShape(1, t, 5, n))
    n_fit = n - int(np.ceil(n * cfg.train.validation_split))
    steps = int(np.ceil(n_fit / cfg.train.batch_size))
    epoch_s = n_fit * forward_macs(cfg.model, 1, t) / MACS_PER_SECOND + steps * STEP_SECONDS
    planned = cfg.members * cfg.train.epochs * epoch_s
    assert planned <= budget_seconds(n, t) * 1.001 or cfg.train.epochs == 2
    assert budget_seconds(n, t) <= (BUDGET_SECONDS if n <= 1000 else LARGE_BUDGET_SECONDS)
    assert p["members"] == cfg.members and 1 <= cfg.members <= 3
    if n < 500:  # below SMALL_DATA: the rocket stem, augmentation drawn once as copies
        assert cfg.model.stem == "rocket" and cfg.train.augment_views >= 1
    else:
        assert cfg.model.stem != "rocket" and cfg.train.augment_views == 0


def test_a_time_limit_plans_the_run_and_scales_it():
    shape = DataShape(1, 251, 3, 36)
    short = resolve("patchformer", shape, {"train": {"time_limit": 10}})
    long = resolve("patchformer", shape, {"train": {"time_limit": 600}})
    default = resolve("patchformer", shape)
    assert short.members * short.train.epochs < default.members * default.train.epochs
    assert long.members * long.train.epochs >= default.members * default.train.epochs
    assert short.train.time_limit == 10  # recorded in the config


def test_the_loop_ends_at_the_deadline_with_the_schedule_finished():
    X, y = _data()
    net = PatchFormerNet(1, 64, 2, d_model=16, depth=1, n_heads=2)
    cfg = TrainConfig(epochs=10_000, verbose=0, validation_split=0, schedule="onecycle",
                      lr=1e-3, time_limit=1.5)
    t0 = time.perf_counter()
    h = fit(net, X, y, cfg)
    assert time.perf_counter() - t0 < 5.0 and h.time_limited
    assert 1 <= len(h.rows) < 10_000
    assert h.summary()["time_limited"]
    # the decay was brought forward: the last epochs' learning rate is near the floor
    assert h.rows[-1]["lr"] < 0.2 * cfg.lr or len(h.rows) < 3


def test_an_ensemble_shares_the_time_limit():
    X, y = _data()
    cfg = resolve("patchformer", DataShape.of(X, 2),
                  {"members": 3, "model": {"d_model": 16, "depth": 1, "n_heads": 2},
                   "train": {"epochs": 10_000, "time_limit": 3, "verbose": 0}})
    t0 = time.perf_counter()
    result = train(cfg, X, y)
    assert time.perf_counter() - t0 < 8.0
    assert all(h.time_limited for h in result.histories)


def test_features_are_bit_identical_to_the_pooling_definition():
    import torch.nn.functional as F

    for t in (24, 131, 251):
        net = _rocket_net(t)
        x = torch.randn(5, 1, t)
        net.init_from_data(x)
        rt = net.patch
        h = rt._conv(net.norm_in(x))
        ref = []
        for j in range(rt.n_biases):
            ppv = (h > rt.bias[None, :, j, None]).float()
            if rt.pad:
                ppv = F.pad(ppv, (0, rt.pad), mode="replicate")
            ref.append(F.avg_pool1d(ppv, rt.patch_len, rt.stride))
        expected = torch.stack(ref, 2).flatten(1, 2).transpose(1, 2)  # (batch, tokens, feats)
        assert torch.equal(net.fixed_features(x), expected)


def test_forward_macs_counts_the_learned_part():
    base = PatchFormerOptions().resolved(1, 500)
    narrow = PatchFormerOptions(stem_width=16).resolved(1, 500)
    rocket = PatchFormerOptions(stem="rocket").resolved(1, 500)
    assert forward_macs(narrow, 1, 500) < 0.5 * forward_macs(base, 1, 500)
    assert forward_macs(rocket, 1, 500) < forward_macs(base, 1, 500)
    deeper = PatchFormerOptions(depth=6).resolved(1, 500)
    assert forward_macs(deeper, 1, 500) > forward_macs(base, 1, 500)


def test_a_short_run_drops_regularisation_and_warmup_except_what_the_user_set():
    shape = DataShape(1, 251, 3, 36)  # ArrowHead's sizes: 5 steps an epoch
    full = resolve("patchformer", shape).train
    assert full.mixup > 0 and full.augment and full.warmup > 0  # a long run keeps them
    short = resolve("patchformer", shape, {"train": {"epochs": 10}}).train
    assert (short.mixup, short.augment, short.augment_views, short.label_smoothing,
            short.warmup) == (0.0, [], 0, 0.0, 0.0)
    mine = resolve("patchformer", shape, {"train": {"epochs": 10, "mixup": 0.4}}).train
    assert mine.mixup == 0.4 and mine.augment == []  # what the user set stays
    # the seed preset has no such rule: its 10-epoch run is its schedule, shortened
    seed = resolve("seed", DataShape(1, 500, 2, 3601), {"train": {"epochs": 10}}).train
    assert seed.epochs == 10 and seed.patience == 10


def test_soft_thresholds_of_a_series_do_not_depend_on_its_batch():
    from tsformer.models.rocket import relaxed_thresholds

    net = _rocket_net().eval()
    x = torch.randn(6, 1, 64)
    net.init_from_data(x)
    with relaxed_thresholds(net), torch.no_grad():
        assert torch.allclose(net(x)[:2], net(x[:2]), atol=1e-5)
    assert net.patch.soft is None  # hard thresholds again after the block


@pytest.mark.parametrize("value", ["0", "-5", "nan", "soon"])
def test_a_bad_time_limit_is_one_line_before_any_work(value, capsys, no_data_reads):
    code, _, err = run(capsys, "train", "--dataset", "ArrowHead", "--preset", "patchformer",
                       "--time-limit", value)
    assert code == 2 and "--time-limit" in err and len(err.strip().splitlines()) <= 2
