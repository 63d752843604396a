"""Temperature scaling inside a model, so a saved model applies it wherever probabilities
come out (predict, the estimator, the server, evaluate, an exported graph)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class TemperatureScaled(nn.Module):
    """A network whose logits are divided by a fitted temperature ``T`` (Guo et al. 2017).

    ``T`` is not a weight: it lives in config.json (``"calibration"``), so ``state_dict``
    and ``load_state_dict`` are the wrapped network's own and model.safetensors is the same
    file whether or not a model is calibrated."""

    def __init__(self, net: nn.Module, temperature: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("temperature", torch.tensor(float(temperature)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).float() / self.temperature

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:  # the network's keys, unprefixed
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False
                        ) -> Any:
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


def uncalibrated(model: nn.Module) -> nn.Module:
    """The network behind any temperature scaling (``model`` itself when there is none)."""
    return model.net if isinstance(model, TemperatureScaled) else model
