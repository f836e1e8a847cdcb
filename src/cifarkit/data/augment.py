"""Batched, on-device augmentation: one call transforms a whole uint8 batch, no per-image Python loop.

Every random draw comes from an explicit torch.Generator, so a run is
reproducible from its seed and a checkpoint can save the generator's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config.checks import BRIGHTNESS_RANGE, BRIGHTNESS_RULE, in_range, is_fraction, is_whole
from ..config.train_config import TTA_MODES
from .dataset import MEAN, STD


@dataclass(frozen=True)
class Augment:
    """The training-time transform: reflect-pad + random crop, flip, cutout (mean colour), brightness and
    contrast jitter, normalise with the dataset's per-channel `mean` and `std` (fractions of 255; default
    CIFAR-10's)."""

    pad_crop: int = 4
    flip: bool = True
    cutout_size: int = 8
    cutout_prob: float = 0.5
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self):  # built by hand (the Python API), not through TrainConfig's checked flags
        def three(values, low: float) -> bool:  # numpy's numbers count too, as in every check here
            return isinstance(values, (tuple, list)) and len(values) == 3 and all(in_range(v, low, 1) for v in values)

        problems = [
            f"{name}={value!r} {what}"
            for name, value, ok, what in (
                ("pad_crop", self.pad_crop, is_whole(self.pad_crop), "must be a whole number of pixels >= 0"),
                ("cutout_size", self.cutout_size, is_whole(self.cutout_size), "must be a whole number of pixels >= 0"),
                ("cutout_prob", self.cutout_prob, in_range(self.cutout_prob, 0, 1), "must be a probability in [0, 1]"),
                ("brightness", self.brightness, in_range(self.brightness, *BRIGHTNESS_RANGE), BRIGHTNESS_RULE),
                ("contrast", self.contrast, is_fraction(self.contrast), "must be in [0, 1)"),
                ("mean", self.mean, three(self.mean, 0), "must be 3 channel means, fractions of 255 in [0, 1]"),
                (
                    "std",
                    self.std,
                    three(self.std, 1e-6),
                    "must be 3 channel standard deviations, fractions of 255 in (0, 1]",
                ),
            )
            if not ok
        ]
        if problems:
            raise ValueError("Augment: " + "; ".join(problems))

    @classmethod
    def from_config(cls, config, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD) -> Augment:
        """The augmentation a TrainConfig asks for, normalising with the dataset's statistics."""
        return cls(
            config.pad_crop,
            config.flip,
            config.cutout_size,
            config.cutout_prob,
            tuple(mean),
            tuple(std),
            config.brightness,
            config.contrast,
        )

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, flips: torch.Tensor | None = None
    ) -> torch.Tensor:
        """uint8 (N,3,H,W) -> normalised float32 (N,3,H,W), each image with its own random draws.

        `flips` (N bools), when given, says which images to mirror instead of a random draw.
        """
        side = min(images.shape[-2:])  # reflect padding needs pad < side; a hole that is drawn must fit
        too_large = [
            f"{name}={value} must be {what} the images' side ({side} px)"
            for name, value, ok, what in (
                ("pad_crop", self.pad_crop, self.pad_crop < side, "below"),
                ("cutout_size", self.cutout_size, self.cutout_size <= side or not self.cutout_prob, "at most"),
            )
            if not ok
        ]
        if too_large:
            raise ValueError("Augment: " + "; ".join(too_large))
        x = normalize(images, self.mean, self.std)
        if self.pad_crop:
            x = random_crop(x, self.pad_crop, generator)
        if self.flip:
            x = random_flip(x, generator) if flips is None else mirror(x, flips)
        if self.brightness or self.contrast:  # before cutout: its holes stay the mean colour
            x = color_jitter(x, self.brightness, self.contrast, generator)
        if self.cutout_size and self.cutout_prob > 0:
            x = cutout(x, self.cutout_size, self.cutout_prob, generator)
        return x


def _channel_stats(device: torch.device, mean=MEAN, std=STD) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1))


def normalize(images: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 [0,255] (or float pixels in that range) -> float32 standardised with the per-channel mean and std
    (of [0,1] pixels; default CIFAR-10's): the one place of the model's input transform."""
    m, s = _channel_stats(images.device, mean, std)
    return (images.float() / 255 - m) / s


def denormalize(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """The inverse of `normalize`: standardised float -> uint8 pixels (for showing what the model saw)."""
    m, s = _channel_stats(x.device, mean, std)
    return ((x.float() * s + m).clamp(0, 1) * 255).round().to(torch.uint8)


def _uniform_ints(n: int, high: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n integers in [0, high), drawn on the generator's device and moved to `device`."""
    return torch.randint(0, high, (n,), generator=generator, device=generator.device).to(device)


def bernoulli(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n coin tosses, True with probability p, drawn on the generator's device and moved to `device`."""
    return (torch.rand(n, generator=generator, device=generator.device) < p).to(device)


def _signed_uniform(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n numbers uniform in [-1, 1), drawn on the generator's device and moved to `device`."""
    return torch.rand(n, generator=generator, device=generator.device).to(device) * 2 - 1


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Reflect-pad by `pad`, then take an HxW window at an independent random offset per image."""
    return random_window(F.pad(x, (pad, pad, pad, pad), mode="reflect"), x.shape[2], x.shape[3], generator)


def random_window(x: torch.Tensor, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """An hxw window of each image at an independent random offset."""
    n, c, height, width = x.shape
    dy = _uniform_ints(n, height - h + 1, generator, x.device)
    dx = _uniform_ints(n, width - w + 1, generator, x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N,1,h,1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N,1,1,w)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, channel, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    return mirror(x, bernoulli(x.shape[0], p, generator, x.device))


def mirror(x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images of the batch where `which` (N bools) is true."""
    return torch.where(which[:, None, None, None], x.flip(3), x)


def alternating_flips(even_epochs: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which images to mirror in `epoch` when each image is mirrored every other epoch: a random half
    (`even_epochs`, drawn once per run) in even epochs, the other half in odd ones. Over any two
    consecutive epochs every image is then seen both ways, which random flips only give on average."""
    return even_epochs ^ bool(epoch % 2)


def cutout(x: torch.Tensor, size: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """With probability p per image, one size x size hole, wholly inside the image, set to 0.

    0 after normalisation is the dataset's mean colour, the S10 notebook's fill value.
    """
    n, _, h, w = x.shape
    apply = bernoulli(n, p, generator, x.device)
    top = _uniform_ints(n, h - size + 1, generator, x.device)
    left = _uniform_ints(n, w - size + 1, generator, x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < top[:, None] + size)  # (N,H)
    in_cols = (xs >= left[:, None]) & (xs < left[:, None] + size)  # (N,W)
    hole = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]  # (N,H,W)
    return x.masked_fill(hole[:, None], 0.0)


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, generator: torch.Generator) -> torch.Tensor:
    """Per image, of a normalised batch: add a shift uniform in +-brightness, then scale by a factor uniform in
    1 +- contrast (hiverge/cifar10-speedrun's jitter, in standardised units)."""
    n = len(x)
    shift = _signed_uniform(n, generator, x.device) * brightness
    scale = 1 + _signed_uniform(n, generator, x.device) * contrast
    return (x + shift.view(n, 1, 1, 1)) * scale.view(n, 1, 1, 1)


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """Test-time augmentation of a normalised batch: the views whose logits are averaged.

    none: the image; flip: it and its mirror; flip-translate: those two, each also shifted 2 px
    down-right and 2 px up-left (reflect padding): 6 views.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; choose one of {', '.join(TTA_MODES)}")
    views = [x] if mode == "none" else [x, x.flip(3)]
    if mode == "flip-translate":
        padded = [F.pad(v, (2, 2, 2, 2), mode="reflect") for v in views]
        views += [p[:, :, :-4, :-4] for p in padded] + [p[:, :, 4:, 4:] for p in padded]
    return views
