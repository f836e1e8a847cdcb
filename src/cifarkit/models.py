"""Networks, by name. `s10` is the assignment's ResNet (6,573,120 parameters), logits out."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .errors import UserError


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """3x3 conv (no bias: BN follows) [-> 2x2 max-pool] -> BN -> ReLU, in the seed's order."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """out = x + f(x)"""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


class S10ResNet(nn.Sequential):
    """The ERA S10 ResNet (the "ResNet-9" of Page's "How to train your ResNet").

    prep 3->64 | layer1 64->128 pool + residual(2 convs) | layer2 128->256 pool |
    layer3 256->512 pool + residual(2 convs) | max-pool 4 -> linear 512->10 (no bias).
    """

    def __init__(self, num_classes: int = 10, width: int = 64):
        w = width
        super().__init__()
        self.prep = conv_bn(3, w)
        self.layer1 = nn.Sequential(conv_bn(w, 2 * w, pool=True), Residual(nn.Sequential(conv_bn(2 * w, 2 * w), conv_bn(2 * w, 2 * w))))
        self.layer2 = conv_bn(2 * w, 4 * w, pool=True)
        self.layer3 = nn.Sequential(conv_bn(4 * w, 8 * w, pool=True), Residual(nn.Sequential(conv_bn(8 * w, 8 * w), conv_bn(8 * w, 8 * w))))
        self.pool = nn.MaxPool2d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * w, num_classes, bias=False)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "s10": S10ResNet,
    # the same design at a quarter of the width (~16x less compute): quick CPU trials and smoke tests
    "s10-small": lambda num_classes=10: S10ResNet(num_classes=num_classes, width=16),
}


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    if name not in MODELS:
        raise UserError(f"--model {name!r}: unknown model; choose one of {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, as the seed's summary counts them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summary(model: nn.Module, batch_size: int = 1) -> str:
    """A per-layer table (output shape, parameters) in the spirit of the seed's torchsummary table."""
    import torchinfo

    stats = torchinfo.summary(
        model,
        input_size=(batch_size, 3, 32, 32),
        col_names=("output_size", "num_params"),
        row_settings=("var_names",),
        depth=6,
        device="cpu",
        verbose=0,
    )
    return str(stats)
