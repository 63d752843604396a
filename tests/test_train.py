import numpy as np
import pytest
import torch

from tsformer import create_model
from tsformer.data import encode_labels
from tsformer.errors import ConfigError
from tsformer.inference import predict_logits
from tsformer.models import Ensemble
from tsformer.pipeline import member_seed, resolve, train
from tsformer.registry import DataShape, get_preset
from tsformer.training import AUGMENTATIONS, TrainConfig, fit, keras_validation_split
from tsformer.training.loop import _loss, lr_factor


def test_keras_validation_split_matches_the_seed():
    cut = keras_validation_split(3601, 0.2)
    assert (cut, 3601 - cut) == (2880, 721)  # 45 steps of 64 an epoch
    with pytest.raises(ConfigError):
        keras_validation_split(10, 1.0)


def test_seed_defaults_are_the_keras_ones():
    cfg = TrainConfig.from_dict(get_preset("seed").train)
    assert (cfg.optimizer, cfg.lr, cfg.eps, cfg.batch_size, cfg.epochs) == ("adam", 1e-4, 1e-7,
                                                                              64, 200)
    assert (cfg.validation_split, cfg.patience, cfg.restore_best) == (0.2, 10, True)
    with pytest.raises(ConfigError, match="unknown training option 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ConfigError, match="mixup must be a finite number, not 'abc'"):
        TrainConfig.from_dict({"mixup": "abc"})
    with pytest.raises(ConfigError, match="epochs must be a whole number"):
        TrainConfig(epochs=True)
    assert TrainConfig(patience=None, grad_clip=None, seed=None, lr=1).lr == 1  # None allowed
    numpy_numbers = TrainConfig(epochs=np.int64(3), lr=np.float32(0.1))  # numpy numbers too
    assert numpy_numbers.epochs == 3 and type(numpy_numbers.epochs) is int
    assert type(numpy_numbers.lr) is float


def _tiny(n_t=30, **kw):
    torch.manual_seed(0)
    return create_model("seed", n_channels=1, n_timepoints=n_t, n_classes=2, head_size=8,
                        mlp_units=[16], **kw)


@pytest.mark.slow  # ~6-30 s (thread contention): the full seed model, 6 epochs on 480 series
def test_short_training_on_forda_slice_beats_chance(forda_small):
    Xtr, ytr, Xte, yte = forda_small
    codes, classes = encode_labels(ytr)
    torch.manual_seed(0)
    model = create_model("seed", n_channels=1, n_timepoints=150, n_classes=2)
    fit(model, Xtr, codes, TrainConfig(lr=1e-3, epochs=6, patience=None, verbose=0))
    pred = predict_logits(model, Xte).argmax(1).numpy()
    acc = float((pred == encode_labels(yte)[0]).mean())
    # chance is ~0.5 on this balanced slice (300 series: 0.6 is > 3 standard errors above)
    assert acc > 0.6, acc


def test_early_stopping_counts_patience_like_keras():
    X = np.random.default_rng(0).normal(size=(40, 1, 30)).astype(np.float32)
    y = np.arange(40) % 2
    # lr must be > 0 now; one so small that val_loss stays put after epoch 1 to float32
    h = fit(_tiny(), X, y, TrainConfig(lr=1e-30, epochs=20, patience=3, verbose=0))
    # val_loss never improves after epoch 1, so epochs 2, 3, 4 exhaust the patience
    assert len(h.rows) == 4 and h.best_epoch == 1 and h.stopped_early
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=0.0)


def _fit_with_snapshots(cfg: TrainConfig):
    """A tiny model trained on noise, with its weights copied at every epoch's end."""
    X = np.random.default_rng(1).normal(size=(64, 1, 30)).astype(np.float32)
    y = np.arange(64) % 2
    model = _tiny(dropout=0.0, mlp_dropout=0.0)
    snaps = {}

    def snap(epoch, row):
        snaps[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    h = fit(model, X, y, cfg, on_epoch_end=snap)
    return model.state_dict(), h, snaps


def test_best_weights_are_restored():
    state, h, snaps = _fit_with_snapshots(
        TrainConfig(lr=0.05, epochs=6, patience=None, verbose=0))
    best = snaps[h.best_epoch]
    assert all(torch.equal(v, best[k]) for k, v in state.items())
    losses = [r["val_loss"] for r in h.rows]
    assert h.best_epoch == int(np.argmin(losses)) + 1


def test_without_restore_best_the_final_weights_are_kept():
    # patchformer's small-data rule: no validation data, so the schedule's end is kept
    state, h, snaps = _fit_with_snapshots(
        TrainConfig(lr=0.05, epochs=6, patience=None, restore_best=False,
                    validation_split=0.0, mixup=0.2, verbose=0))
    assert h.best_epoch < 6  # so keeping the final weights is a real choice here
    assert all(torch.equal(v, snaps[6][k]) for k, v in state.items())
    assert not all(torch.equal(v, snaps[h.best_epoch][k]) for k, v in state.items())


def test_seeded_runs_are_reproducible_on_cpu():
    X = np.random.default_rng(2).normal(size=(48, 1, 30)).astype(np.float32)
    y = np.arange(48) % 2
    rows = []
    for _ in range(2):
        h = fit(_tiny(), X, y, TrainConfig(lr=1e-3, epochs=2, seed=7, verbose=0))
        rows.append([(r["loss"], r["val_loss"]) for r in h.rows])
    assert rows[0] == rows[1]


def test_ctrl_c_keeps_the_best_model_so_far():
    X = np.random.default_rng(3).normal(size=(32, 1, 30)).astype(np.float32)
    y = np.arange(32) % 2

    def interrupt(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    h = fit(_tiny(), X, y, TrainConfig(epochs=10, verbose=0), on_epoch_end=interrupt)
    assert h.interrupted and len(h.rows) == 2 and h.best_epoch in (1, 2)


def test_schedules_and_augmentations_run():
    X = np.random.default_rng(4).normal(size=(32, 2, 30)).astype(np.float32)
    y = np.arange(32) % 3
    model = create_model("seed", n_channels=2, n_timepoints=30, n_classes=3, head_size=8)
    cfg = TrainConfig(optimizer="adamw", lr=1e-3, schedule="onecycle", warmup=1 / 3,
                      label_smoothing=0.1, augment=["jitter", "scale", "shift", "warp"],
                      epochs=3, grad_clip=1.0, mixup=0.2, verbose=0)
    h = fit(model, X, y, cfg)
    assert h.rows[0]["lr"] > h.rows[-1]["lr"]  # decayed after the warm-up
    with pytest.raises(ConfigError, match="augment"):
        TrainConfig(augment=["cutout"], epochs=1, verbose=0)
    with pytest.raises(ConfigError, match="mixup"):
        TrainConfig(mixup=-1.0, epochs=1, verbose=0)


def test_warp_stretches_one_window_and_keeps_the_ends():
    t = 200
    ramp = torch.arange(t, dtype=torch.float32).expand(64, 2, t)  # value = time index
    out = AUGMENTATIONS["warp"](ramp, torch.Generator().manual_seed(0))
    assert out.shape == ramp.shape and torch.equal(out[:, 0], out[:, 1])  # one warp a series
    torch.testing.assert_close(out[..., 0], ramp[..., 0])
    torch.testing.assert_close(out[..., -1], ramp[..., -1])
    speed = out[:, 0].diff(dim=-1)  # the warp's local speed: monotone, two regimes
    assert (speed > 0).all()
    ratio = speed.amax(-1) / speed.amin(-1)
    # A 2x stretch or squeeze of a tenth of the series: inside it, half or twice the speed.
    torch.testing.assert_close(ratio.median(), torch.tensor(2.0), rtol=0.02, atol=0)
    stretched = (speed.amin(-1) < 0.7).float().mean()  # the window at half speed
    assert 0.25 < stretched < 0.75  # stretched or squeezed with equal chance
    for n in (1, 3, 4, 5):  # short series pass through or keep their ends, never fail
        short = torch.arange(n, dtype=torch.float32).expand(8, 1, n)
        warped = AUGMENTATIONS["warp"](short, torch.Generator().manual_seed(0))
        assert warped.shape == short.shape and torch.equal(warped[..., -1], short[..., -1])


def test_mixup_blends_losses_with_the_inputs_weight():
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    pair = torch.tensor([1, 0, 3, 2, 5, 4])
    cfg = TrainConfig(label_smoothing=0.1)
    plain = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    other = torch.nn.functional.cross_entropy(logits, y[pair], label_smoothing=0.1)
    torch.testing.assert_close(_loss(logits, y, cfg), plain)
    torch.testing.assert_close(_loss(logits, y, cfg, 0.3, pair), 0.3 * plain + 0.7 * other)


def test_amp_bf16_autocasts_on_the_cpu_too_and_bad_modes_are_refused():
    # "auto" keeps the CPU in float32 (bit-reproducible); "bf16" asks for bf16 autocast on any
    # device, as CUDA's "auto" does, so a CPU run can reproduce a GPU run's arithmetic.
    torch.manual_seed(0)
    model = create_model("seed", n_channels=1, n_timepoints=30, n_classes=2, head_size=8)
    X = np.random.default_rng(5).normal(size=(8, 1, 30)).astype(np.float32)
    full, half = predict_logits(model, X), predict_logits(model, X, amp="bf16")
    assert full.dtype == half.dtype == torch.float32
    assert torch.equal(full, predict_logits(model, X, amp="off"))
    assert 0 < float((full - half).abs().max()) < 0.05  # bf16 rounding, not another function
    h = fit(model, X, np.arange(8) % 2, TrainConfig(epochs=1, amp="bf16", verbose=0))
    assert np.isfinite(h.rows[0]["loss"])
    with pytest.raises(ConfigError, match="amp must be 'auto' or 'bf16' or 'off'"):
        TrainConfig(amp="fp16")
    with pytest.raises(ConfigError, match="amp must be one of auto, bf16, off"):
        predict_logits(model, X, amp="half")


# --------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
@pytest.mark.parametrize("epochs", [10, 100])
def test_warmup_is_a_share_of_the_run_whatever_its_length(epochs, schedule):
    # The peak comes after 5% of the steps whether a run is 10 or 100 epochs long, so a run
    # capped to fewer epochs keeps the schedule's shape.
    steps_per_epoch = 10
    cfg = TrainConfig(epochs=epochs, warmup=0.05, schedule=schedule)
    f = lr_factor(cfg, steps_per_epoch)
    total = epochs * steps_per_epoch
    lrs = [f(i) for i in range(total)]
    peak = lrs.index(max(lrs))
    assert max(lrs) == 1.0 and peak + 1 == round(0.05 * total)  # the peak after 5% of steps
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1], strict=True))  # rising
    assert lrs[0] == pytest.approx(1 / (0.05 * total))
    tail = lrs[peak:]
    if schedule == "constant":
        assert set(tail) == {1.0}
    else:  # then decays to its floor over the rest of the run
        assert all(a >= b for a, b in zip(tail, tail[1:], strict=False))
        floor = 1e-3 if schedule == "onecycle" else 0.0
        assert tail[-1] == pytest.approx(floor, abs=2e-3)
        halfway = tail[len(tail) // 2]
        assert halfway == pytest.approx(floor + (1 - floor) / 2, abs=0.05)


def test_without_warmup_the_first_step_is_at_the_peak():
    f = lr_factor(TrainConfig(epochs=3, warmup=0.0, schedule="onecycle"), 4)
    assert f(0) == 1.0 and f(11) < f(0)


# --------------------------------------------------------------------------- ensembles


def test_member_seeds():
    assert member_seed(0, 0) == 0 and member_seed(12345, 0) == 12345  # member 0: the run
    seeds = [member_seed(7, i) for i in range(6)]
    assert len(set(seeds)) == 6 and seeds == [member_seed(7, i) for i in range(6)]
    assert {member_seed(8, i) for i in range(1, 6)}.isdisjoint(seeds)  # runs do not share
    assert all(0 <= s < 2**32 for s in seeds)  # valid seeds for every generator


#: A small patchformer without dropout, for exact comparisons.
_TINY_PF = {"d_model": 16, "n_heads": 2, "depth": 1, "stem_width": 4, "dropout": 0.0,
            "drop_path": 0.0}


def test_an_ensemble_is_its_members_trained_one_by_one():
    """pipeline.train == fit() per member under member_seed(seed, i), bit for bit; and the
    caller's global random state is left as it was."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 1, 32)).astype(np.float32)
    y = np.arange(24) % 3
    cfg = resolve("patchformer", DataShape.of(X, 3),
                  {"model": _TINY_PF, "members": 3,
                   "train": {"epochs": 2, "batch_size": 8, "seed": 11, "verbose": 0,
                             "device": "cpu"}})
    assert cfg.model.stem == "rocket"  # the small-data rule: data-dependent init included
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    result = train(cfg, X, y)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2] == np_state[2]
    assert isinstance(result.model, Ensemble) and len(result.model.members) == 3
    assert len(result.histories) == 3 and result.config.members == 3

    nets = []
    for i in range(3):
        torch.manual_seed(member_seed(11, i))
        net = cfg.build_network()
        fit(net, X, y, cfg.train.replace(seed=member_seed(11, i)))
        nets.append(net.eval())
    Xq = rng.normal(size=(10, 1, 32)).astype(np.float32)
    for got, want in zip(result.model.members, nets, strict=True):
        assert torch.equal(predict_logits(got, Xq), predict_logits(want, Xq))
    assert torch.equal(predict_logits(result.model, Xq), predict_logits(Ensemble(nets), Xq))
    # the members are different networks, not one network three times
    a, b = (predict_logits(n, Xq) for n in nets[:2])
    assert not torch.allclose(a, b)


def test_a_one_member_run_is_member_zero_of_an_ensemble_run():
    X = np.random.default_rng(1).normal(size=(24, 1, 32)).astype(np.float32)
    y = np.arange(24) % 2
    over = {"model": _TINY_PF, "train": {"epochs": 1, "batch_size": 8, "seed": 3, "verbose": 0,
                                         "device": "cpu"}}
    alone = train(resolve("patchformer", DataShape.of(X, 2), {**over, "members": 1}), X, y)
    pair = train(resolve("patchformer", DataShape.of(X, 2), {**over, "members": 2}), X, y)
    assert not isinstance(alone.model, Ensemble)
    assert torch.equal(predict_logits(alone.model, X), predict_logits(pair.model.members[0], X))
