"""From a model's logits to numbers: prediction over a dataset (with test-time augmentation), accuracy
and loss, the confusion matrix, per-class accuracy, and the mistakes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import normalize, tta_views
from ..data.dataset import MEAN, STD
from ..runtime.device import autocast


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 1024,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
    tta: str = "none",
    mean: tuple[float, ...] = MEAN,
    std: tuple[float, ...] = STD,
    tta_below: float = 1.0,
    on_batch: Callable[[int], object] | None = None,
) -> torch.Tensor:
    """float32 logits (N, classes) for uint8 images: normalised with the dataset's `mean`/`std`, never randomly
    augmented; with `tta`, the mean logits over deterministic test-time views (see augment.tta_views).

    `tta_below` < 1: the extra views only for the images whose plain top-class probability is below it (the
    others keep their plain logits). Each image's result depends on that image alone (BatchNorm in eval mode).
    `on_batch(n)` is told each batch's n images once they are predicted (a progress bar's update).
    """
    model.eval()
    device = images.device
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size], mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            logits = model(x).float()
            if tta != "none" and tta_below >= 1:
                logits = torch.stack([logits] + [model(v).float() for v in tta_views(x, tta)[1:]]).mean(0)
            elif tta != "none":
                unsure = (logits.softmax(1).amax(1) < tta_below).nonzero().squeeze(1)
                if len(unsure):
                    chosen = x[unsure].contiguous(memory_format=torch.channels_last) if channels_last else x[unsure]
                    views = tta_views(chosen, tta)[1:]
                    logits[unsure] = torch.stack([logits[unsure]] + [model(v).float() for v in views]).mean(0)
        out.append(logits)
        if on_batch is not None:
            on_batch(len(x))
    return torch.cat(out) if out else torch.empty(0, 10, device=device)


def loss_and_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[summed cross-entropy, number correct] as one float tensor on the logits' device (summable over ranks)."""
    return torch.stack([F.cross_entropy(logits, labels, reduction="sum"), (logits.argmax(1) == labels).sum().float()])


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> np.ndarray:
    """counts[true, predicted]"""
    flat = labels.cpu().long() * num_classes + predicted.cpu().long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes).numpy()


def per_class_accuracy(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(1)
    return np.divide(np.diag(counts), totals, out=np.zeros(len(counts)), where=totals > 0)


def mistakes(labels: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Indices of the wrongly classified images, the most confident mistake first."""
    confidence, predicted = probs.max(1)
    wrong = torch.nonzero(predicted != labels).flatten()
    return wrong[torch.argsort(confidence[wrong], descending=True, stable=True)]
