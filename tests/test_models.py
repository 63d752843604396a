import json
import math

import pytest
import torch

from tsformer import create_model
from tsformer.errors import ConfigError
from tsformer.models import count_parameters, summary
from tsformer.models.seed import KerasMultiHeadAttention, SeedTransformer
from tsformer.registry import DataShape, get_preset


@pytest.mark.parametrize("variant", ["prenorm", "postnorm"])
def test_seed_has_93130_parameters_on_forda(variant):
    m = create_model("seed", n_channels=1, n_timepoints=500, n_classes=2, variant=variant)
    assert isinstance(m, SeedTransformer)
    assert count_parameters(m) == 93_130
    per_block = sum(p.numel() for p in m.blocks[0].parameters())
    assert per_block == 7_186
    assert sum(p.numel() for p in m.blocks[0].attn.parameters()) == 7_169


def test_time_pooling_changes_only_the_head():
    m = create_model("seed", n_channels=1, n_timepoints=500, n_classes=2, pool="time")
    # Dense(1 -> 128) instead of Dense(500 -> 128)
    assert count_parameters(m) == 93_130 - 500 * 128 + 128
    assert m(torch.randn(3, 1, 500)).shape == (3, 2)


def test_features_pooling_is_the_channels_first_quirk():
    m = create_model("seed", n_channels=3, n_timepoints=40, n_classes=5).eval()
    x = torch.randn(2, 3, 40)
    h = x.transpose(1, 2)
    for b in m.blocks:
        h = b(h)
    torch.testing.assert_close(m.pool(h), h.mean(-1))  # one value per time step
    assert m(x).shape == (2, 5)


def test_keras_initialisation():
    torch.manual_seed(0)
    m = create_model("seed", n_channels=1, n_timepoints=500, n_classes=2)
    attn = m.blocks[0].attn
    for b in (attn.query_bias, attn.key_bias, attn.value_bias, attn.output_bias,
              m.classifier.bias, m.mlp[0].bias):
        assert torch.count_nonzero(b) == 0
    # Keras fans for a (C, H, D) kernel: fan_in = H*C, fan_out = D*C
    limit = math.sqrt(6 / (4 * 1 + 256 * 1))
    assert attn.query_kernel.abs().max() <= limit
    assert attn.query_kernel.abs().max() > 0.9 * limit
    limit_dense = math.sqrt(6 / (500 + 128))
    assert m.mlp[0].weight.abs().max() <= limit_dense
    norm = m.blocks[0].attn_norm
    assert norm.eps == 1e-6 and torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_variants_compute_different_functions():
    torch.manual_seed(0)
    pre = create_model("seed", n_channels=3, n_timepoints=30, n_classes=2).eval()
    post = create_model("seed", n_channels=3, n_timepoints=30, n_classes=2,
                        variant="postnorm").eval()
    with torch.no_grad():  # Keras init (zero biases, unit gains) hides some differences
        for p in pre.parameters():
            p.normal_(0, 0.3)
    post.load_state_dict(pre.state_dict())
    x = torch.randn(4, 3, 30)
    assert not torch.allclose(pre(x), post(x))


def test_one_feature_layernorm_is_degenerate_as_in_keras():
    # LayerNormalization over a single feature returns its beta whatever the input: with
    # FordA's one channel the seed's attention blocks add constants (true of Keras too).
    m = create_model("seed", n_channels=1, n_timepoints=30, n_classes=2).eval()
    norm = m.blocks[0].attn_norm
    with torch.no_grad():
        norm.bias.fill_(0.7)
    out = norm(torch.randn(2, 30, 1))
    torch.testing.assert_close(out, torch.full_like(out, 0.7))


def test_fast_and_direct_paths_agree_in_the_model():
    torch.manual_seed(0)
    m = create_model("seed", n_channels=1, n_timepoints=50, n_classes=2).eval()
    x = torch.randn(4, 1, 50)
    for mod in m.modules():
        if isinstance(mod, KerasMultiHeadAttention):
            mod.attention = "direct"
    ref = m(x)
    for mod in m.modules():
        if isinstance(mod, KerasMultiHeadAttention):
            mod.attention = "fast"
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


def test_registry_errors_are_clear():
    with pytest.raises(ConfigError, match="available presets") as e:
        create_model("nope", n_channels=1, n_timepoints=10, n_classes=2)
    assert "seed" in str(e.value) and "patchformer" in str(e.value)
    with pytest.raises(ConfigError, match="unknown model option 'heads'"):
        create_model("seed", n_channels=1, n_timepoints=10, n_classes=2, heads=3)
    with pytest.raises(ConfigError, match="variant"):
        create_model("seed", n_channels=1, n_timepoints=10, n_classes=2, variant="mid")


def test_presets_are_plain_data():
    # What a preset resolves to is serialisable: no callables or classes inside.
    seed = get_preset("seed")
    assert seed.arch == "seed_transformer"
    json.dumps(seed.values())
    json.dumps(seed.values(DataShape(1, 500, 2, 3601)))


def test_summary_table_like_keras():
    m = create_model("seed", n_channels=1, n_timepoints=500, n_classes=2)
    text = summary(m, 1, 500)
    assert "Total params: 93,130" in text
    assert text.count("(MultiHeadAttention)") == 4
    assert text.count("(Conv1D)") == 8
    assert "(None, 500, 4)" in text  # the ff_dim=4 pointwise convolution
    assert "(GlobalAveragePooling1D)" in text and "(None, 500)" in text
    assert "64,128" in text and "7,169" in text
