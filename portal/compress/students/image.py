"""Students for images [N, C, H, W], with random initial weights (nothing is downloaded).

    small-cnn            for small inputs such as 8x8 digits: Conv(8, 3x3) → ReLU → MaxPool(2) →
                         Conv(16, 3x3) → ReLU → AdaptiveAvgPool(2x2) → Linear; inputs standardised inside
    mobilenet_v3_small   torchvision's, its first convolution taking the parent's channels
    resnet18             torchvision's, likewise

Each takes the tensor the parent takes (the parent's preprocessing is unchanged)
and returns one output per class or value; :mod:`.fit` trains it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .fit import FitResult, fit

__all__ = ["SMALL_CNN_MAX_SIDE", "image_network", "train_image"]

SMALL_CNN_MAX_SIDE = 32  # "auto" picks small-cnn up to 32x32 inputs, mobilenet_v3_small above


def image_network(student: str, x: np.ndarray, outputs: int) -> Any:
    """The untrained ``student`` for images shaped like ``x``, with ``outputs`` outputs."""
    import torch

    channels = x.shape[1]
    if student == "small-cnn":
        return _small_cnn(torch, channels, outputs, float(x.mean()), float(x.std()) or 1.0)
    import torchvision

    if student == "mobilenet_v3_small":
        net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=outputs)
        if channels != 3:
            first = net.features[0][0]
            net.features[0][0] = torch.nn.Conv2d(channels, first.out_channels, first.kernel_size, first.stride,
                                                 first.padding, bias=False)
        return net
    net = torchvision.models.resnet18(weights=None, num_classes=outputs)
    if channels != 3:
        net.conv1 = torch.nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    return net


def _small_cnn(torch: Any, channels: int, outputs: int, mean: float, std: float) -> Any:
    nn = torch.nn

    class SmallCNN(nn.Module):
        """A two-convolution network whose size does not depend on the input's side."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.body = nn.Sequential(
                nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                nn.Flatten(), nn.Linear(16 * 2 * 2, outputs),
            )

        def forward(self, x: Any) -> Any:
            return self.body((x - self.mean) / self.std)

    return SmallCNN()


def train_image(student: str, x: np.ndarray, target: np.ndarray, *, classifier: bool, epochs: int, budget: float,
                seed: int, progress: Callable[[str], None]) -> tuple[Any, FitResult]:
    """The trained image student (a torch module) and how training went."""
    import torch

    torch.manual_seed(seed)
    net = image_network(student, x, target.shape[1])
    mean, std = (0.0, 1.0) if classifier else (float(target.mean()), float(target.std()) or 1.0)
    result = fit(net, x, (target - mean) / std if not classifier else target, soft=classifier, epochs=epochs,
                 budget=budget, batch=64 if student == "small-cnn" else 32, lr=3e-3 if student == "small-cnn" else 1e-3,
                 seed=seed, label=f"the {student} student", progress=progress)
    if not classifier:
        net = _rescaled(torch, net, mean, std)
    net.eval()
    return net, result


def _rescaled(torch: Any, net: Any, mean: float, std: float) -> Any:
    class Rescaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net(x) * std + mean

    return Rescaled()
