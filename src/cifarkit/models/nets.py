"""Networks, by name, logits out.

`s10` is the assignment's ResNet (6,573,120 parameters). `fast` is a small net for the quickest path to
high accuracy on a CPU: a whitening stem fitted to the data, then three conv groups without residuals
(the design ideas of Page's and Jordan's (airbench) fast CIFAR-10 work; the code is ours).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
from torch import nn

from ..errors import UserError


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """3x3 conv (no bias: BN follows) [-> 2x2 max-pool] -> BN -> ReLU, in the S10 notebook's order."""
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


class ScaledLogits(nn.Sequential):
    """Layers in order, the output (the logits) multiplied by the constant `logit_scale` (no parameter)."""

    logit_scale: float = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.logit_scale

    def extra_repr(self) -> str:
        return "" if self.logit_scale == 1 else f"logit_scale={self.logit_scale:.4g}"


class S10ResNet(ScaledLogits):
    """The ERA S10 ResNet (the "ResNet-9" of Page's "How to train your ResNet").

    prep 3->64 | layer1 64->128 pool + residual(2 convs) | layer2 128->256 pool |
    layer3 256->512 pool + residual(2 convs) | global max-pool (4x4 at 32x32) -> linear 512->classes (no bias)
    [-> x logit_scale].

    `logit_scale` (1 in the S10 notebook's net) is Page's parameter-free x0.125 on the logits: it shrinks the
    initial logits and the head's effective lr 64-fold, which SGD at Page's lr 0.4 needs (unscaled, the
    sweep's loss starts at ~4.5 and rises from lr ~0.01).
    """

    def __init__(self, num_classes: int = 10, width: int = 64, logit_scale: float = 1.0):
        w = width
        super().__init__()
        self.prep = conv_bn(3, w)
        self.layer1 = nn.Sequential(
            conv_bn(w, 2 * w, pool=True), Residual(nn.Sequential(conv_bn(2 * w, 2 * w), conv_bn(2 * w, 2 * w)))
        )
        self.layer2 = conv_bn(2 * w, 4 * w, pool=True)
        self.layer3 = nn.Sequential(
            conv_bn(4 * w, 8 * w, pool=True), Residual(nn.Sequential(conv_bn(8 * w, 8 * w), conv_bn(8 * w, 8 * w)))
        )
        # global max-pool: at 32x32 exactly the S10 notebook's MaxPool2d(4) over the 4x4 map (no parameters,
        # the same numbers); at other image sizes it pools whatever map layer3 leaves
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * w, num_classes, bias=False)
        self.logit_scale = logit_scale


class ConvGroup(nn.Sequential):
    """conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__(
            _dirac_conv(c_in, c_out),
            nn.MaxPool2d(2),
            _bias_only_bn(c_out, bn_momentum),
            nn.GELU(),
            _dirac_conv(c_out, c_out),
            _bias_only_bn(c_out, bn_momentum),
            nn.GELU(),
        )


def _dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3x3 conv whose first min(c_in, c_out) filters start as the identity: an implicit residual at init."""
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


def _bias_only_bn(channels: int, momentum: float) -> nn.BatchNorm2d:
    """BatchNorm whose scale stays 1: the following GELU only needs a shift, and fewer knobs train faster."""
    bn = nn.BatchNorm2d(channels, momentum=momentum)
    bn.weight.requires_grad_(False)
    return bn


class FastNet(ScaledLogits):
    """Whitening stem (2x2 conv, frozen) -> GELU -> 3 conv groups -> global max-pool -> linear, scaled.

    The stem's filters are the whitening transform of 2x2 image patches (and their negatives), set
    from training images by `init_from_data` before training; only its bias trains. BatchNorm runs
    with a high momentum (recent batches dominate the statistics), which suits runs of few steps.
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (64, 256, 256),
        bn_momentum: float = 0.4,
        logit_scale: float = 1 / 9,
    ):
        super().__init__()
        stem_width = 2 * 3 * 2 * 2  # every 2x2x3 patch direction, and its negative
        self.stem = nn.Conv2d(3, stem_width, kernel_size=2, bias=True)
        self.stem.weight.requires_grad_(False)
        self.stem_act = nn.GELU()
        self.group1 = ConvGroup(stem_width, widths[0], bn_momentum)
        self.group2 = ConvGroup(widths[0], widths[1], bn_momentum)
        self.group3 = ConvGroup(widths[1], widths[2], bn_momentum)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[2], num_classes, bias=False)
        self.logit_scale = logit_scale

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to whiten 2x2 patches of `images` (normalised float, N x 3 x H x W)."""
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # N,3,H-1,W-1,2,2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0).reshape(12, 3, 2, 2)
        self.stem.weight.copy_(torch.cat([filters, -filters]).to(self.stem.weight))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "s10": S10ResNet,
    # the same design at a quarter of the width (~16x less compute): quick CPU trials and smoke tests
    "s10-small": lambda num_classes=10: S10ResNet(num_classes=num_classes, width=16),
    # the same network and parameters with Page's x0.125 on the logits (for SGD at a high lr: s10-best)
    "s10-scaled": lambda num_classes=10: S10ResNet(num_classes=num_classes, logit_scale=0.125),
    "fast": FastNet,
    "fast-small": lambda num_classes=10: FastNet(num_classes=num_classes, widths=(32, 128, 128)),
}


@cache
def has_whitening_stem(name: str) -> bool:
    """Whether model `name` (one of MODELS) starts with FastNet's whitening stem, what --stem-bias-epochs freezes:
    asked of a copy built on the meta device (no memory, no initialisation), once per name."""
    with torch.device("meta"):
        return hasattr(MODELS[name](), "stem")


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    if name not in MODELS:
        raise UserError(f"--model {name!r}: unknown model; choose one of {', '.join(MODELS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"num_classes {num_classes!r}: a classifier needs a whole number of classes >= 2")
    return MODELS[name](num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, as the S10 notebook's summary counts them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summary(model: nn.Module, batch_size: int = 1) -> str:
    """A per-layer table (output shape, parameters) in the spirit of the S10 notebook's torchsummary table,
    then the conv layers and blocks by dotted name (what `cifarkit gradcam --layer` takes)."""
    import torchinfo

    from .layers import describe_layers

    stats = torchinfo.summary(
        model,
        input_size=(batch_size, 3, 32, 32),
        col_names=("output_size", "num_params"),
        row_settings=("var_names",),
        depth=6,
        device="cpu",
        verbose=0,
    )
    return f"{stats}\n{describe_layers(model)}\n"
