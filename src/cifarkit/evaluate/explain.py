"""GradCAM with Captum's LayerGradCam: where a trained model looked, as a heat map per image (drawn as a grid by
report/gradcam.py for `cifarkit gradcam` and report.html, coloured over an image by the app).

The model's weights are never touched: GradCAM runs on an fp32 copy in eval mode (`cam_model`), with
gradients enabled for that copy only. Captum loads late, so a run without it still finishes.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..models.layers import default_layer, feature_layers, layer_problem
from ..runtime.progress import say

CAPTUM_HINT = "pip install 'cifarkit[app]'"
BATCH = 64  # images per GradCAM pass


def cam_model(model: nn.Module) -> nn.Module:
    """An fp32 copy of `model` in eval mode whose weights need no gradient: what GradCAM differentiates (the
    gradients it needs are those of a layer's output, not of the weights)."""
    net = copy.deepcopy(model).float().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def gradcam_maps(
    net: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor, on_batch: Callable[[int], object] | None = None
) -> torch.Tensor:
    """GradCAM heat maps (N, H, W) in [0, 1] for normalised images `x` (N, 3, H, W) and class indices `targets`
    (N,): Captum's LayerGradCam at `layer` (a dotted name), ReLU'd, upsampled bilinearly to the input size and
    scaled so each map's maximum is 1 (a map with no positive evidence stays 0). `net`: a `cam_model`.
    `on_batch(n)` is told each batch's n images once they are explained (a progress bar's update)."""
    from captum.attr import LayerAttribution, LayerGradCam

    module = net.get_submodule(layer)
    out = []
    for start in range(0, len(x), BATCH):
        batch = x[start : start + BATCH].float().clone()  # a fresh tensor: never one made under inference_mode
        with torch.enable_grad():
            maps = LayerGradCam(net, module).attribute(
                batch, target=targets[start : start + BATCH].tolist(), relu_attributions=True
            )
        maps = LayerAttribution.interpolate(maps.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
        out.append(maps[:, 0].clamp_min(0))
        if on_batch is not None:
            on_batch(len(batch))
    maps = torch.cat(out) if out else x.new_zeros(0, *x.shape[-2:])
    peak = maps.flatten(1).amax(1).clamp_min(1e-12) if len(maps) else maps.new_ones(0)
    return (maps / peak[:, None, None]).clamp(0, 1)


# matplotlib's "jet" (blue low, red high) as (position, value) knots per channel, so that the app needs no matplotlib
JET = (
    ((0, 0.35, 0.66, 0.89, 1), (0, 0, 1, 1, 0.5)),
    ((0, 0.125, 0.375, 0.64, 0.91, 1), (0, 0, 1, 1, 0, 0)),
    ((0, 0.11, 0.34, 0.65, 1), (0.5, 1, 1, 0, 0)),
)


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H, W) -> RGB floats (H, W, 3) on the jet scale, as the PNG grids draw them."""
    v = np.clip(heat, 0, 1)
    return np.stack([np.interp(v, xs, ys) for xs, ys in JET], axis=-1)


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """uint8 image (H, W, 3) with the heat map (H, W in [0, 1]) coloured over it at `opacity` -> uint8."""
    mixed = (1 - opacity) * image.astype(np.float32) / 255 + opacity * heat_colours(heat)
    return (np.clip(mixed, 0, 1) * 255).round().astype(np.uint8)


def checked_layer(
    model: nn.Module, layer: str | None, image_size: int = 32
) -> tuple[str, tuple[int, int, int], str | None]:
    """(name, output shape, warning) of the layer to explain: `layer`, or the default when None. An unknown
    name is a UserError listing the valid ones; a map under 5x5 comes with a warning."""
    layers = feature_layers(model, image_size)
    name = layer or default_layer(model, layers)
    valid, message = layer_problem(name, layers)
    if not valid:
        raise UserError(f"--layer {name}: {message}")
    return name, layers[name], message


def load_test_set(ckpt: dict[str, Any], data_dir: str | os.PathLike | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test images (uint8) and labels: the one place GradCAM, the app and the bundle read a dataset."""
    from ..data.loading import load_checkpoint_data

    data = load_checkpoint_data(ckpt, data_dir)
    return data.test_images, data.test_labels


def test_set_or_none(
    ckpt: dict[str, Any], data_dir: str | os.PathLike | None, command: str, without: str
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """load_test_set for what can do without the images (the app, the bundle): None when they cannot be read,
    said on stderr with what is left `without` them, unless `data_dir` was given by name (a slip is an error)."""
    try:
        return load_test_set(ckpt, data_dir)
    except UserError as e:
        if data_dir is not None:
            raise
        say(f"cifarkit {command}: no test images ({e}){without}")  # the app says it while its start's bar runs
        return None


def require_captum() -> None:
    try:
        import captum.attr  # noqa: F401 (only whether it imports)
    except ImportError:
        raise UserError(f"GradCAM needs captum: {CAPTUM_HINT}") from None
