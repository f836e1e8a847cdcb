"""The stream of training batches: which images, in which order, with which random draws.

Every draw is a pure function of (seed, purpose, epoch[, step]), so a run resumed at any step sees the
same batches as the uninterrupted one without replaying random number generators, and every process
under torchrun builds the same global batch.

With `prune_easy` P > 0 an epoch may leave out well-learned images, as InfoBatch (Qin et al., ICLR 2024)
does: every epoch but the first (no losses yet) and the last (annealing: all images), each image whose
latest training loss is below the mean of all is dropped with probability P, and the easy images kept
weigh 1 / (1 - P) in the loss, so the epoch's expected gradient stays the full epoch's. The epoch keeps
its number of steps (the schedule is untouched) and its batches shrink: a CPU spends its time on the
images that still teach something. Which images are left out is a pure function of (seed, epoch) and the
losses at the epoch's start, which the checkpoint keeps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch

from ..config.train_config import TrainConfig
from ..optim.schedule import steps_per_epoch
from .augment import Augment, alternating_flips, bernoulli, random_window
from .dataset import Dataset


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
    return bernoulli(num_images, 0.5, g, device)


def easy_images(losses: torch.Tensor) -> torch.Tensor:
    """The images whose latest loss is below the mean of all (InfoBatch's well-learned ones)."""
    return losses < losses.mean()


def training_batch(
    data: Dataset,
    idx: torch.Tensor,
    augment: Augment,
    g: torch.Generator,
    channels_last: bool,
    flips: torch.Tensor | None = None,
    window: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images `idx`, augmented with `g`'s draws, and their labels.

    `flips`, when given, says which of all the training images this epoch mirrors (alternating flips);
    `window` > 0: a random window x window of each augmented image (--small-crop), drawn after the rest.
    """
    x = augment(data.train_images[idx], g, None if flips is None else flips[idx])
    if window:
        x = random_window(x, window, window, g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, data.train_labels[idx]


class BatchStream:
    """The augmented training batches of one run (`purpose` "train") or of its LR range test ("lr-find").

    The range test draws from keys of its own, so sweeping first leaves the training batches unchanged; it
    tosses a coin per image for flips and sweeps at full size (alternating flips and --small-crop windows are
    properties of the training epochs).
    """

    def __init__(self, data: Dataset, config: TrainConfig, device: torch.device, purpose: str = "train"):
        self.data, self.config, self.device = data, config, device
        self.keys = ("order", "augment") if purpose == "train" else (f"{purpose}-order", f"{purpose}-augment")
        self.augment = Augment.from_config(config, *data.channel_stats())
        self.even_flips = (
            even_epoch_flips(len(data.train_labels), device, config.seed)
            if purpose == "train" and config.alternate_flip and config.flip
            else None
        )
        self.steps_per_epoch = steps_per_epoch(len(data.train_labels), config.batch_size)
        self.small_crop_epochs = config.small_crop_epochs if purpose == "train" else 0

    def prunes(self, epoch: int) -> bool:
        """Whether `epoch` leaves out easy images (prune_easy): never the first nor the last."""
        return self.config.prune_easy > 0 and 0 < epoch < self.config.epochs - 1

    def order(self, epoch: int, losses: torch.Tensor | None = None) -> torch.Tensor:
        """The images of `epoch`, shuffled: all of them, or with `losses` (each image's latest, at the epoch's
        start) in an epoch that prunes, all but the easy images left out this time."""
        n = len(self.data.train_labels)
        order = epoch_order(n, self.device, self.config.seed, self.keys[0], epoch)
        if losses is None or not self.prunes(epoch):
            return order
        g = generator(self.device, self.config.seed, "prune", epoch)
        left_out = easy_images(losses) & bernoulli(n, self.config.prune_easy, g, self.device)
        kept = order[~left_out[order]]
        return kept if len(kept) >= self.steps_per_epoch else order  # every step keeps at least one image

    def indices(self, order: torch.Tensor, step: int) -> torch.Tensor:
        """Which training images batch `step` of an epoch of `order` holds: slices of the batch size, or in a
        pruned epoch, the kept images split evenly over the epoch's steps."""
        n, k, steps = len(self.data.train_labels), len(order), self.steps_per_epoch
        if k == n:
            return order[step * self.config.batch_size : (step + 1) * self.config.batch_size]
        return order[step * k // steps : (step + 1) * k // steps]

    def batch(self, order: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of `epoch`, augmented: the same on every rank, which then trains on its slice."""
        cfg = self.config
        flips = None if self.even_flips is None else alternating_flips(self.even_flips, epoch)
        window = cfg.small_crop if epoch < self.small_crop_epochs else 0
        return training_batch(
            self.data,
            self.indices(order, step),
            self.augment,
            generator(self.device, cfg.seed, self.keys[1], epoch, step),
            cfg.channels_last,
            flips,
            window,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless: epoch after epoch (what a DataLoader would give the range test)."""
        epoch = 0
        while True:
            order = self.order(epoch)
            for step in range(self.steps_per_epoch):
                yield self.batch(order, epoch, step)
            epoch += 1


class Pruning:
    """--prune-easy's state: each training image's latest loss, and the losses as the epoch in progress started
    (which decide the images it leaves out and the weights of the easy ones it keeps)."""

    def __init__(self, stream: BatchStream):
        self.stream, self.prune = stream, stream.config.prune_easy
        self.losses = torch.zeros(len(stream.data.train_labels), device=stream.device)
        self.at_epoch_start: torch.Tensor | None = None

    def order(self, epoch: int, step_in_epoch: int) -> torch.Tensor:
        """`epoch`'s images in order; the losses are taken as the epoch starts (a resumed epoch keeps its own)."""
        if step_in_epoch == 0 or self.at_epoch_start is None:
            self.at_epoch_start = self.losses.clone()
        return self.stream.order(epoch, self.at_epoch_start)

    def weights(self, order: torch.Tensor, epoch: int, step: int) -> torch.Tensor | None:
        """In a pruned epoch, each image's weight in its batch's mean loss: 1 / (1 - P) for the easy ones, else 1,
        times the batch's size over a full epoch's batch size (n / steps), so that the epoch's summed update is a full
        epoch's in expectation (InfoBatch's unbiased rescaling), however few images it kept."""
        if not self.stream.prunes(epoch) or len(order) == len(self.losses):
            return None
        idx = self.stream.indices(order, step)
        full_batch = len(self.losses) / self.stream.steps_per_epoch
        return torch.where(easy_images(self.at_epoch_start)[idx], 1 / (1 - self.prune), 1.0) * (len(idx) / full_batch)

    def record(self, order: torch.Tensor, step: int, losses: torch.Tensor) -> None:
        """The losses the images of batch `step` had in training."""
        self.losses[self.stream.indices(order, step)] = losses

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "losses": self.losses,
            "at_epoch_start": self.losses if self.at_epoch_start is None else self.at_epoch_start,
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.losses.copy_(state["losses"])
        self.at_epoch_start = state["at_epoch_start"].to(self.losses.device).clone()
