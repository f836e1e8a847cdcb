"""The stream of training batches: which images, in which order, with which random draws.

Every draw is a pure function of (seed, purpose, epoch[, step]), so a run resumed at any step sees the
same batches as the uninterrupted one without replaying random number generators, and every process
under torchrun builds the same global batch.
"""
from __future__ import annotations

import hashlib
from typing import Iterator

import torch

from .augment import Augment, alternating_flips
from .config import TrainConfig
from .data import Dataset
from .schedule import steps_per_epoch


def derived_seed(*keys: int | str) -> int:
    """A 63-bit seed from a tuple of keys: independent streams for (seed, epoch[, step])."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(device: torch.device, *keys: int | str) -> torch.Generator:
    # CPU generator for MPS: MPS generators are not supported by every op we use.
    g = torch.Generator(device=device if device.type == "cuda" else "cpu")
    g.manual_seed(derived_seed(*keys))
    return g


def epoch_order(num_images: int, device: torch.device, *keys: int | str) -> torch.Tensor:
    """The shuffled image order of one epoch, a pure function of its keys (seed, purpose, epoch)."""
    g = generator(device, *keys)
    return torch.randperm(num_images, generator=g, device=g.device).to(device)


def even_epoch_flips(num_images: int, device: torch.device, seed: int) -> torch.Tensor:
    """The random half of the training images that alternating flips mirror in even epochs."""
    g = generator(device, seed, "flip")
    return (torch.rand(num_images, generator=g, device=g.device) < 0.5).to(device)


def training_batch(data: Dataset, order: torch.Tensor, step: int, batch_size: int, augment: Augment,
                   g: torch.Generator, channels_last: bool, flips: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `step` of an epoch: its images augmented with `g`'s draws, and their labels.

    `flips`, when given, says which of all the training images this epoch mirrors (alternating flips).
    """
    idx = order[step * batch_size:(step + 1) * batch_size]
    x = augment(data.train_images[idx], g, None if flips is None else flips[idx])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, data.train_labels[idx]


class BatchStream:
    """The augmented training batches of one run (`purpose` "train") or of its LR range test ("lr-find").

    The range test draws from keys of its own, so sweeping first leaves the training batches unchanged; it
    tosses a coin per image for flips (alternating flips are a property of the training epochs).
    """

    def __init__(self, data: Dataset, config: TrainConfig, device: torch.device, purpose: str = "train"):
        self.data, self.config, self.device = data, config, device
        self.keys = ("order", "augment") if purpose == "train" else (f"{purpose}-order", f"{purpose}-augment")
        self.augment = Augment.from_config(config, *data.channel_stats())
        self.even_flips = even_epoch_flips(len(data.train_labels), device, config.seed) \
            if purpose == "train" and config.alternate_flip and config.flip else None
        self.steps_per_epoch = steps_per_epoch(len(data.train_labels), config.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        return epoch_order(len(self.data.train_labels), self.device, self.config.seed, self.keys[0], epoch)

    def batch(self, order: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of `epoch`, augmented: the same on every rank, which then trains on its slice."""
        cfg = self.config
        flips = None if self.even_flips is None else alternating_flips(self.even_flips, epoch)
        return training_batch(self.data, order, step, cfg.batch_size, self.augment,
                              generator(self.device, cfg.seed, self.keys[1], epoch, step), cfg.channels_last, flips)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless: epoch after epoch (what a DataLoader would give the range test)."""
        epoch = 0
        while True:
            order = self.order(epoch)
            for step in range(self.steps_per_epoch):
                yield self.batch(order, epoch, step)
            epoch += 1
