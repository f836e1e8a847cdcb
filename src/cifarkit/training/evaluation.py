"""How a Trainer scores its model: the test or validation images (each rank a slice under torchrun), with the
run's TTA and normalisation, and a progress bar, since the last test with six views takes minutes on a CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..evaluate.metrics import loss_and_correct, predict_logits
from ..runtime.progress import predicting, progress_bar

if TYPE_CHECKING:
    from .trainer import Trainer


def evaluate_split(trainer: Trainer, split: str) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the "test" or "val" images; the test's logits are kept for the plots."""
    started = time.perf_counter()
    all_images, all_labels = getattr(trainer.data, f"{split}_images"), getattr(trainer.data, f"{split}_labels")
    images, labels = trainer.dist.shard(all_images), trainer.dist.shard(all_labels)
    # the last test with six views takes minutes on a CPU: a bar says how far it is
    cfg = trainer.config
    with progress_bar(
        len(images),
        predicting("testing" if split == "test" else "validating", cfg.tta, cfg.tta_below),
        trainer.progress,
        unit="img",
    ) as bar:
        logits = trainer.predict(images, bar.update)
    if split == "test":  # the plots at the end use these rather than predicting again (TTA makes that costly)
        trainer.test_logits = logits if trainer.dist.world_size == 1 else None
    sums = trainer.dist.sum(loss_and_correct(logits, labels))
    trainer.eval_seconds += time.perf_counter() - started
    return sums[0].item() / len(all_labels), sums[1].item() / len(all_labels)


def predict_images(
    trainer: Trainer, images: torch.Tensor, on_batch: Callable[[int], object] | None = None
) -> torch.Tensor:
    """The evaluated model's logits for uint8 images, normalised as in training, with the run's TTA."""
    cfg = trainer.config
    return predict_logits(
        trainer.eval_model,
        images,
        cfg.eval_batch_size,
        trainer.dtype,
        cfg.channels_last,
        cfg.tta,
        trainer.mean,
        trainer.std,
        cfg.tta_below,
        on_batch,
    )


def predict_test_set(trainer: Trainer) -> torch.Tensor:
    """The test images' logits, predicted again (with a progress bar)."""
    cfg = trainer.config
    with progress_bar(
        len(trainer.data.test_labels), predicting("testing", cfg.tta, cfg.tta_below), trainer.progress, unit="img"
    ) as bar:
        return trainer.predict(trainer.data.test_images, bar.update)
