"""A layer table like Keras' ``model.summary()``: layer, output shape, parameters."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .seed import GlobalAveragePool, KerasMultiHeadAttention, Pointwise


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the rocket stem's fixed kernels are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


_KERAS_NAMES = {
    nn.LayerNorm: "LayerNormalization", KerasMultiHeadAttention: "MultiHeadAttention",
    nn.Dropout: "Dropout", Pointwise: "Conv1D", GlobalAveragePool: "GlobalAveragePooling1D",
    nn.Linear: "Dense", nn.ReLU: "ReLU",
}


def summary(model: nn.Module, n_channels: int, n_timepoints: int) -> str:
    """A layer table like Keras' ``model.summary()``: layer, output shape, parameters."""
    rows: list[tuple[str, str, int]] = []
    leaves = (KerasMultiHeadAttention, Pointwise)

    def hook(name: str):
        def fn(mod: nn.Module, _inp: Any, out: Tensor) -> None:
            shape = "(None, " + ", ".join(str(s) for s in out.shape[1:]) + ")"
            kind = _KERAS_NAMES.get(type(mod), type(mod).__name__)
            rows.append((f"{name} ({kind})", shape, sum(p.numel() for p in mod.parameters())))
        return fn

    handles = []
    for name, mod in model.named_modules():
        inside_leaf = any(
            name.startswith(n + ".") for n, m in model.named_modules() if isinstance(m, leaves)
        )
        if name and not inside_leaf and (isinstance(mod, leaves) or not list(mod.children())):
            handles.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, n_channels, n_timepoints))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    total = count_parameters(model)
    w1 = max(len("Layer (type)"), *(len(r[0]) for r in rows)) + 2
    w2 = max(len("Output Shape"), *(len(r[1]) for r in rows)) + 2
    line = "-" * (w1 + w2 + 12)
    out = [line, f"{'Layer (type)':<{w1}}{'Output Shape':<{w2}}{'Param #':>10}", "=" * len(line)]
    out.append(f"{'input (InputLayer)':<{w1}}{f'(None, {n_channels}, {n_timepoints})':<{w2}}"
               f"{0:>10,}")
    out += [f"{a:<{w1}}{b:<{w2}}{c:>10,}" for a, b, c in rows]
    out += ["=" * len(line), f"Total params: {total:,}", f"Trainable params: {total:,}",
            "Non-trainable params: 0", line]
    return "\n".join(out)
