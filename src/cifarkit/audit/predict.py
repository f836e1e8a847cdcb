"""What an audit asks of a model, for every image: class probabilities (averaged over the run's test-time
augmentation views, as its final test computes them), the pooled features the head reads (the embeddings: what the
model makes of the image, for outliers), and a middle layer's feature map pooled to 2 x 2 (the appearance: what
the image looks like, for duplicates).

Why two kinds of features: the head's are trained to be alike for every image of a class, so two copies of one
photograph (shifted, rescaled, recoloured) are hardly nearer each other than two different photographs of that
class; a middle layer still holds where things are in the picture. On CIFAR-10's test set, a middle layer finds
about twice the published train/test duplicates at the same precision (docs/experiments.md#audit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..evaluate.metrics import predict_logits
from ..runtime.progress import progress_bar

# The appearance layer: the first of the model's top-level blocks whose feature map is at most this fraction of the
# image's side (the fast net's group2, 7 x 7 of 32; the S10 ResNet's layer2, 8 x 8), pooled to APPEARANCE_GRID^2.
APPEARANCE_SIDE = 1 / 4
APPEARANCE_GRID = 2


@dataclass
class Predicted:
    """A model's view of N images, float32 arrays of N rows."""

    probabilities: np.ndarray  # (N, classes)
    embeddings: np.ndarray  # (N, the head's input features)
    appearance: np.ndarray  # (N, channels x APPEARANCE_GRID^2)


def head_layer(model: nn.Module) -> nn.Linear:
    """The classifier's head: its last linear layer (every cifarkit net ends global pool -> flatten -> fc)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"{type(model).__name__}: no linear head to read the pooled features from")
    return linears[-1]


def appearance_layer(model: nn.Module, image_shape: tuple[int, ...]) -> nn.Module:
    """The block whose output is the appearance: the first top-level block, in the order a forward pass runs them,
    whose feature map's side is at most APPEARANCE_SIDE of the image's; the head where no block is (the embeddings
    then serve both)."""
    shapes: list[tuple[nn.Module, torch.Size]] = []
    hooks = [
        child.register_forward_hook(lambda m, _, out: shapes.append((m, getattr(out, "shape", ()))))
        for child in model.children()
    ]
    parameter = next(model.parameters())
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *image_shape, device=parameter.device, dtype=parameter.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    side = min(image_shape[-2:])
    for module, shape in shapes:
        if len(shape) == 4 and min(shape[-2:]) <= side * APPEARANCE_SIDE:
            return module
    return head_layer(model)


def class_probabilities(
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
) -> np.ndarray:
    """The class probabilities (N, classes) of uint8 images on the model's device, averaged over `tta`'s views, in
    one pass and without features: what a fold model is asked of the images it did not train on."""
    with progress_bar(len(images), what, progress, unit="img") as bar:
        logits = predict_logits(model, images, batch_size, dtype, channels_last, tta, mean, std, on_batch=bar.update)
    return logits.float().softmax(1).cpu().numpy().astype(np.float32)


def predict_for_audit(
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
) -> Predicted:
    """The probabilities, embeddings and appearance of uint8 images on the model's device. The features are
    caught by hooks in a plain pass; the probabilities come from that pass too, or, with `tta` other than none,
    from a second pass averaging its views (better out-of-sample probabilities find more flipped labels:
    docs/experiments.md)."""
    embeddings: list[torch.Tensor] = []
    appearance: list[torch.Tensor] = []
    looks = appearance_layer(model, tuple(images.shape[1:]))

    def pooled(output: torch.Tensor) -> torch.Tensor:
        if output.dim() != 4:  # the head's input: already one vector an image
            return output.float().flatten(1).cpu()
        return nn.functional.adaptive_avg_pool2d(output.float(), APPEARANCE_GRID).flatten(1).cpu()

    hooks = [
        head_layer(model).register_forward_pre_hook(lambda _, args: embeddings.append(args[0].float().cpu())),
        looks.register_forward_hook(lambda _, args, output: appearance.append(pooled(output)))
        if looks is not head_layer(model)
        else looks.register_forward_pre_hook(lambda _, args: appearance.append(pooled(args[0]))),
    ]
    passes = 1 if tta == "none" else 2
    try:
        with progress_bar(passes * len(images), what, progress, unit="img") as bar:
            logits = predict_logits(
                model, images, batch_size, dtype, channels_last, "none", mean, std, on_batch=bar.update
            )
            for hook in hooks:  # the views of a second pass are not the images' features
                hook.remove()
            if tta != "none":
                logits = predict_logits(
                    model, images, batch_size, dtype, channels_last, tta, mean, std, on_batch=bar.update
                )
    finally:
        for hook in hooks:
            hook.remove()

    def stacked(caught: list[torch.Tensor]) -> np.ndarray:
        rows = torch.cat(caught).numpy() if caught else np.zeros((0, 0), dtype=np.float32)
        if len(rows) != len(images):  # a block run twice a forward pass: its rows would not be the images'
            raise ValueError(f"{type(model).__name__}: {len(rows)} feature rows for {len(images)} images")
        return rows

    return Predicted(
        logits.float().softmax(1).cpu().numpy().astype(np.float32), stacked(embeddings), stacked(appearance)
    )
