"""What an audit asks of a model: class probabilities (averaged over the run's test-time augmentation views, as its
final test computes them) and the pooled features the head reads (the embeddings, of the plain image), for every
image."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..evaluate.metrics import predict_logits
from ..runtime.progress import progress_bar


def head_layer(model: nn.Module) -> nn.Linear:
    """The classifier's head: its last linear layer (every cifarkit net ends global pool -> flatten -> fc)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"{type(model).__name__}: no linear head to read the pooled features from")
    return linears[-1]


def probabilities_and_embeddings(
    model: nn.Module,
    images: torch.Tensor,
    mean,
    std,
    batch_size: int = 1024,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
    what: str = "",
    progress: bool = False,
    tta: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, classes), embeddings (N, features)), float32 numpy arrays, for uint8 images on the
    model's device. The embeddings are the input of the head, caught by a hook in a plain pass; the probabilities
    come from that pass too, or, with `tta` other than none, from a second pass averaging its views (better
    out-of-sample probabilities find more flipped labels: docs/experiments.md)."""
    caught: list[torch.Tensor] = []
    hook = head_layer(model).register_forward_pre_hook(lambda _, args: caught.append(args[0].float().cpu()))
    passes = 1 if tta == "none" else 2
    try:
        with progress_bar(passes * len(images), what, progress, unit="img") as bar:
            logits = predict_logits(
                model, images, batch_size, dtype, channels_last, "none", mean, std, on_batch=bar.update
            )
            hook.remove()  # the views of a second pass are not the images' embeddings
            if tta != "none":
                logits = predict_logits(
                    model, images, batch_size, dtype, channels_last, tta, mean, std, on_batch=bar.update
                )
    finally:
        hook.remove()
    features = torch.cat(caught) if caught else torch.empty(0, head_layer(model).in_features)
    return logits.float().softmax(1).cpu().numpy().astype(np.float32), features.reshape(len(images), -1).numpy()
