import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tsformer.amp import EmulatedBF16, autocast
from tsformer.models import create_model
from tsformer.train import TrainConfig, fit, predict_logits


def _bf16_valued(t: torch.Tensor) -> bool:
    return torch.equal(t.float(), t.to(torch.bfloat16).float())


def test_emulated_matmuls_equal_real_bf16_autocast_and_stay_bf16():
    # A bf16 x bf16 product accumulated in float32 is what autocast computes; the emulation
    # multiplies the same rounded numbers in float32, so one linear layer agrees to the last
    # bf16 bit but for summation order, and its output is a bf16 tensor for the ops after it.
    torch.manual_seed(0)
    lin, x = torch.nn.Linear(64, 32), torch.randn(16, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        real = lin(x)
    with EmulatedBF16():
        emu = lin(x)
        after = F.gelu(emu) + emu  # no matmul: stays in bf16, as on a GPU
        norm = F.layer_norm(after, (32,))  # float32 list: upcast
    assert emu.dtype == after.dtype == torch.bfloat16 and norm.dtype == torch.float32
    ulp = real.float().abs() * 2.0 ** -7
    assert bool(((emu.float() - real.float()).abs() <= ulp + 1e-6).all())
    assert not _bf16_valued(lin(x))  # outside the context: float32 again
    with EmulatedBF16():  # as autocast, float64 is left alone
        assert lin.double()(x.double()).dtype == torch.float64


def test_bf16_emulated_mode_trains_the_patchformer_in_bf16_numerics_on_the_cpu():
    torch.manual_seed(0)
    model = create_model("patchformer", n_channels=1, n_timepoints=32, n_classes=2, members=1)
    X = np.random.default_rng(3).normal(size=(16, 1, 32)).astype(np.float32)
    seen = []
    model.nets[0].head.register_forward_hook(lambda m, i, o: seen.append(o))
    full = predict_logits(model, X)
    emu = predict_logits(model, X, amp="bf16-emulated")
    assert seen[0].dtype == torch.float32 and seen[-1].dtype == torch.bfloat16
    assert emu.dtype == torch.float32 and _bf16_valued(emu)
    assert 0 < float((full - emu).abs().max()) < 0.1  # rounding, not another function
    h = fit(model, X, np.arange(16) % 2,
            TrainConfig(epochs=2, batch_size=8, amp="bf16-emulated", verbose=0))
    assert np.isfinite(h.rows[-1]["loss"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_bf16_emulated_on_cuda_is_cudas_own_autocast():
    ctx = autocast(torch.device("cuda"), "bf16-emulated")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    assert isinstance(autocast(torch.device("cpu"), "bf16-emulated"), EmulatedBF16)
    with pytest.raises(Exception, match="amp must be one of"):
        autocast(torch.device("cpu"), "fp8")


def test_a_model_predicts_in_the_precision_it_trained_in_after_save_and_load(tmp_path):
    # A bf16-emulated model validated on bf16 numbers; its predictions (fitted, reloaded,
    # through the CLI) must be those numbers, not float32's.
    import json

    import tsformer
    from tsformer.cli import main
    from tsformer.errors import ModelDirError

    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 1, 32)).astype(np.float32)
    y = np.arange(24) % 3
    clf = tsformer.TransformerClassifier(
        "patchformer", epochs=1, random_state=0, verbose=0,
        model_params={"members": 1}, train_params={"amp": "bf16-emulated"}).fit(X, y)
    emulated = predict_logits(clf.model_, X, amp="bf16-emulated").softmax(1).double()
    full = predict_logits(clf.model_, X, amp="off").softmax(1).double()
    assert not torch.allclose(emulated, full, atol=1e-6)
    assert np.allclose(clf.predict_proba(X), emulated.numpy(), atol=1e-6)
    clf.save(tmp_path / "m")
    assert np.array_equal(tsformer.load(tmp_path / "m").predict_proba(X), clf.predict_proba(X))
    np.savetxt(tmp_path / "x.csv", X[:, 0], delimiter=",")
    assert main(["predict", str(tmp_path / "m"), str(tmp_path / "x.csv"), "--no-labels",
                 "--format", "json", "--output", str(tmp_path / "p.json")]) == 0
    cli = [[r["probabilities"][str(c)] for c in clf.classes_]
           for r in json.loads((tmp_path / "p.json").read_text())]
    assert np.allclose(cli, emulated.numpy(), atol=1e-6)
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["train"]["amp"] = "fp8"
    cfg_path.write_text(json.dumps(cfg))
    assert main(["predict", str(tmp_path / "m"), str(tmp_path / "x.csv"), "--no-labels"]) != 0
    with pytest.raises(ModelDirError, match="train.amp must be one of"):
        tsformer.load(tmp_path / "m")
