import numpy as np
import pytest
import torch

from tsformer.data import encode_labels
from tsformer.errors import ConfigError
from tsformer.models import create_model
from tsformer.train import TrainConfig, fit, keras_validation_split, predict_logits


def test_keras_validation_split_matches_the_seed():
    cut = keras_validation_split(3601, 0.2)
    assert (cut, 3601 - cut) == (2880, 721)  # 45 steps of 64 an epoch
    with pytest.raises(ConfigError):
        keras_validation_split(10, 1.0)


def test_seed_defaults_are_the_keras_ones():
    from tsformer.models import get_preset

    cfg = TrainConfig.from_dict(get_preset("seed")["train"])
    assert (cfg.optimizer, cfg.lr, cfg.eps, cfg.batch_size, cfg.epochs) == ("adam", 1e-4, 1e-7,
                                                                              64, 200)
    assert (cfg.validation_split, cfg.patience, cfg.restore_best) == (0.2, 10, True)
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ConfigError, match="mixup must be a number, not 'abc'"):
        TrainConfig.from_dict({"mixup": "abc"})
    with pytest.raises(ConfigError, match="epochs must be a number"):
        TrainConfig(epochs=True)
    assert TrainConfig(patience=None, grad_clip=None, seed=None, lr=1).lr == 1  # None allowed
    assert TrainConfig(epochs=np.int64(3), lr=np.float32(0.1)).epochs == 3  # numpy numbers too


def _tiny(n_t=30, **kw):
    torch.manual_seed(0)
    return create_model("seed", n_channels=1, n_timepoints=n_t, n_classes=2, head_size=8,
                        mlp_units=[16], **kw)


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
    h = fit(_tiny(), X, y, TrainConfig(lr=0.0, epochs=20, patience=3, verbose=0))
    # lr 0: val_loss never improves after epoch 1, so epochs 2, 3, 4 exhaust the patience
    assert len(h.rows) == 4 and h.best_epoch == 1 and h.stopped_early


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
    cfg = TrainConfig(optimizer="adamw", lr=1e-3, schedule="onecycle", warmup_epochs=1,
                      label_smoothing=0.1, augment=["jitter", "scale", "shift", "flip", "warp"],
                      epochs=3, grad_clip=1.0, mixup=0.2, verbose=0)
    h = fit(model, X, y, cfg)
    assert h.rows[0]["lr"] > h.rows[-1]["lr"]  # decayed after the warm-up
    with pytest.raises(ConfigError, match="unknown augmentation"):
        fit(model, X, y, TrainConfig(augment=["cutout"], epochs=1, verbose=0))
    with pytest.raises(ConfigError, match="mixup"):
        fit(model, X, y, TrainConfig(mixup=-1.0, epochs=1, verbose=0))


def test_flip_changes_the_sign_of_about_half_the_series():
    from tsformer.train import AUGMENTATIONS

    x = torch.ones(1000, 2, 5)
    out = AUGMENTATIONS["flip"](x, torch.Generator().manual_seed(0))
    signs = out[:, 0, 0]
    assert set(signs.tolist()) == {-1.0, 1.0} and 400 < (signs < 0).sum() < 600
    assert torch.equal(out.abs(), x) and torch.equal(out[:, 1], out[:, 0])  # one sign a series


def test_warp_stretches_one_window_and_keeps_the_ends():
    from tsformer.train import AUGMENTATIONS

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


def test_crop_resamples_a_window_of_80_to_100_percent():
    from tsformer.train import AUGMENTATIONS

    t = 200
    ramp = torch.arange(t, dtype=torch.float32).expand(256, 2, t)  # value = time index
    out = AUGMENTATIONS["crop"](ramp, torch.Generator().manual_seed(0))
    assert out.shape == ramp.shape and torch.equal(out[:, 0], out[:, 1])  # one crop a series
    span = (out[:, 0, -1] - out[:, 0, 0]) / (t - 1)  # share of the series the window covers
    assert span.min() >= 0.8 - 1e-5 and span.max() <= 1 + 1e-5 and span.std() > 0.04
    assert out.min() >= 0 and out.max() <= t - 1  # inside the series, no extrapolation
    speed = out[:, 0].diff(dim=-1)  # one even stretch: constant speed within a series
    torch.testing.assert_close(speed.amax(-1), speed.amin(-1), rtol=1e-3, atol=1e-3)
    for n in (1, 3, 4):
        short = torch.arange(n, dtype=torch.float32).expand(8, 1, n)
        assert AUGMENTATIONS["crop"](short, torch.Generator().manual_seed(0)).shape == short.shape


def test_mixup_blends_losses_with_the_inputs_weight():
    from tsformer.train import _loss

    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    pair = torch.tensor([1, 0, 3, 2, 5, 4])
    cfg = TrainConfig(label_smoothing=0.1)
    plain = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    other = torch.nn.functional.cross_entropy(logits, y[pair], label_smoothing=0.1)
    torch.testing.assert_close(_loss(logits, y, cfg), plain)
    torch.testing.assert_close(_loss(logits, y, cfg, 0.3, pair), 0.3 * plain + 0.7 * other)


def test_ema_returns_the_weight_average_and_validates_it():
    X = np.random.default_rng(5).normal(size=(64, 1, 30)).astype(np.float32)
    y = np.arange(64) % 2
    model = _tiny(dropout=0.0, mlp_dropout=0.0)
    params = []

    def record(epoch, row):
        params.append(model.state_dict()["classifier.weight"].clone())  # raw weights, not EMA

    cfg = TrainConfig(lr=0.05, epochs=3, patience=None, restore_best=False, ema=0.5,
                      batch_size=64, validation_split=0.0, verbose=0)
    init = model.state_dict()["classifier.weight"].clone()
    fit(model, X, y, cfg, on_epoch_end=record)
    # One step an epoch: EMA after 3 steps = 0.25 w1 + 0.25 w2 + 0.5 w3 (first update copies).
    want = 0.25 * params[0] + 0.25 * params[1] + 0.5 * params[2]
    torch.testing.assert_close(model.state_dict()["classifier.weight"], want)
    assert not torch.equal(want, init)
    with pytest.raises(ConfigError, match="ema"):
        fit(_tiny(), X, y, TrainConfig(ema=1.0, epochs=1, verbose=0))


def test_sam_steps_with_the_gradient_at_the_worst_nearby_weights():
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    X = np.random.default_rng(6).normal(size=(16, 1, 30)).astype(np.float32)
    y = np.arange(16) % 2
    model = _tiny(dropout=0.0, mlp_dropout=0.0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append(
            [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    try:
        fit(model, X, y, TrainConfig(lr=1e-3, epochs=1, batch_size=16, validation_split=0.0,
                                     patience=None, sam=0.1, verbose=0))
    finally:
        handle.remove()
    # by hand: the gradient g at the start, then the gradient at w + 0.1 g / |g|
    ref = _tiny(dropout=0.0, mlp_dropout=0.0)
    ref.load_state_dict(init)
    xb, yb = torch.from_numpy(X), torch.from_numpy(y)
    params = list(ref.parameters())
    pairs = [(p, g) for p, g in zip(params, torch.autograd.grad(
        torch.nn.functional.cross_entropy(ref(xb), yb), params, allow_unused=True), strict=True)
        if g is not None]
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for _, g in pairs]))
    with torch.no_grad():
        for p, g in pairs:
            p.add_(0.1 * g / norm)
    used = [p for p, _ in pairs]
    want = torch.autograd.grad(torch.nn.functional.cross_entropy(ref(xb), yb), used)
    grads = [g for _, g in pairs]
    assert len(seen) == 1 and len(seen[0]) == len(want)
    for got, w in zip(seen[0], want, strict=True):
        torch.testing.assert_close(got, w)
    assert not all(torch.allclose(w, g) for w, g in zip(want, grads, strict=True))  # SAM moved
    with pytest.raises(ConfigError, match="sam"):
        fit(_tiny(), X, y, TrainConfig(sam=-0.1, epochs=1, verbose=0))


def test_sam_updates_batchnorm_statistics_once_a_step():
    from tsformer.models import create_model as make

    X = np.random.default_rng(7).normal(size=(16, 1, 32)).astype(np.float32)
    y = np.arange(16) % 2
    stats = []
    for rho in (0.0, 0.5):
        torch.manual_seed(0)
        model = make("patchformer", n_channels=1, n_timepoints=32, n_classes=2, members=1)
        fit(model, X, y, TrainConfig(lr=1e-3, epochs=1, batch_size=16, validation_split=0.0,
                                     patience=None, sam=rho, verbose=0))
        stats.append({k: v for k, v in model.state_dict().items() if "running" in k})
    assert stats[0] and all(torch.equal(stats[0][k], stats[1][k]) for k in stats[0])


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
    with pytest.raises(ConfigError, match="amp must be one of auto, bf16, bf16-emulated, off"):
        TrainConfig(amp="fp16")
    with pytest.raises(ConfigError, match="amp must be one of"):
        predict_logits(model, X, amp="half")
