"""GradCAM with Captum's LayerGradCam: where a trained model looked, on image files or on the test images it
got most confidently wrong, drawn as a PNG grid (`cifarkit gradcam`, report.html's GradCAM section) and
coloured over an image (the app).

The model's weights are never touched: GradCAM runs on an fp32 copy in eval mode (`cam_model`), with
gradients enabled for that copy only. Captum loads late, so a run without it still finishes.
"""
from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .augment import normalize
from .errors import UserError
from .layers import default_layer, feature_layers, layer_problem
from .progress import predicting, progress_bar, say
from .rundir import RunDir, check_output, default_output

CAPTUM_HINT = "pip install 'cifarkit[app]'"
BATCH = 64  # images per GradCAM pass


def cam_model(model: nn.Module) -> nn.Module:
    """An fp32 copy of `model` in eval mode whose weights need no gradient: what GradCAM differentiates (the
    gradients it needs are those of a layer's output, not of the weights)."""
    net = copy.deepcopy(model).float().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def gradcam_maps(net: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor,
                 on_batch: Callable[[int], object] | None = None) -> torch.Tensor:
    """GradCAM heat maps (N, H, W) in [0, 1] for normalised images `x` (N, 3, H, W) and class indices `targets`
    (N,): Captum's LayerGradCam at `layer` (a dotted name), ReLU'd, upsampled bilinearly to the input size and
    scaled so each map's maximum is 1 (a map with no positive evidence stays 0). `net`: a `cam_model`.
    `on_batch(n)` is told each batch's n images once they are explained (a progress bar's update)."""
    from captum.attr import LayerAttribution, LayerGradCam

    module = net.get_submodule(layer)
    out = []
    for start in range(0, len(x), BATCH):
        batch = x[start:start + BATCH].float().clone()  # a fresh tensor: never one made under inference_mode
        with torch.enable_grad():
            maps = LayerGradCam(net, module).attribute(batch, target=targets[start:start + BATCH].tolist(),
                                                       relu_attributions=True)
        maps = LayerAttribution.interpolate(maps.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
        out.append(maps[:, 0].clamp_min(0))
        if on_batch is not None:
            on_batch(len(batch))
    maps = torch.cat(out) if out else x.new_zeros(0, *x.shape[-2:])
    peak = maps.flatten(1).amax(1).clamp_min(1e-12) if len(maps) else maps.new_ones(0)
    return (maps / peak[:, None, None]).clamp(0, 1)


# matplotlib's "jet" (blue low, red high) as (position, value) knots per channel, so that the app needs no matplotlib
JET = (((0, 0.35, 0.66, 0.89, 1), (0, 0, 1, 1, 0.5)),
       ((0, 0.125, 0.375, 0.64, 0.91, 1), (0, 0, 1, 1, 0, 0)),
       ((0, 0.11, 0.34, 0.65, 1), (0.5, 1, 1, 0, 0)))


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H, W) -> RGB floats (H, W, 3) on the jet scale, as the PNG grids draw them."""
    v = np.clip(heat, 0, 1)
    return np.stack([np.interp(v, xs, ys) for xs, ys in JET], axis=-1)


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """uint8 image (H, W, 3) with the heat map (H, W in [0, 1]) coloured over it at `opacity` -> uint8."""
    mixed = (1 - opacity) * image.astype(np.float32) / 255 + opacity * heat_colours(heat)
    return (np.clip(mixed, 0, 1) * 255).round().astype(np.uint8)


def checked_layer(model: nn.Module, layer: str | None, image_size: int = 32) -> tuple[str, tuple[int, int, int],
                                                                                      str | None]:
    """(name, output shape, warning) of the layer to explain: `layer`, or the default when None. An unknown
    name is a UserError listing the valid ones; a map under 5x5 comes with a warning."""
    layers = feature_layers(model, image_size)
    name = layer or default_layer(model, layers)
    valid, message = layer_problem(name, layers)
    if not valid:
        raise UserError(f"--layer {name}: {message}")
    return name, layers[name], message


def plot_gradcam(images: torch.Tensor, maps: torch.Tensor, captions: list[tuple[str, str]], title: str,
                 path: str | os.PathLike, per_row: int = 5) -> int:
    """A grid of (image, heat map over it) pairs, `per_row` pairs a row, each pair captioned (left, right);
    returns the number of rows. `images`: uint8 (N, 3, H, W); `maps`: (N, H, W) in [0, 1]."""
    from .report import draw_cells  # matplotlib only when drawing

    pixels, heat = images.cpu().permute(0, 2, 3, 1).numpy(), maps.cpu().numpy()
    cells = [cell for i in range(len(images))
             for cell in ((pixels[i], captions[i][0]), (overlay(pixels[i], heat[i]), captions[i][1]))]
    return draw_cells(cells, 2 * max(1, min(len(images), per_row)), title, path, cell_height=1.55, title_size=9,
                      empty="no images (no mistakes to show)")


def explain_images(model: nn.Module, images: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor,
                   classes: list[str], mean, std, path: str | os.PathLike, layer: str | None = None,
                   target: str = "pred", names: list[str] | None = None, image_size: int = 32,
                   what: str = "", progress: bool = False) -> dict[str, Any]:
    """GradCAM of `images` (uint8, on the model's device) drawn to `path`; `probs` are the model's class
    probabilities for them, `labels` their true classes (-1: unknown, captioned with `names`). `model` is
    copied, never changed. `progress`: a bar on stderr while the maps are computed."""
    layer, shape, warning = checked_layer(model, layer, image_size)
    labels = labels.cpu()
    if target == "true" and bool((labels < 0).any()):
        raise UserError("--target true: image files carry no true class; use --target pred (the default), or "
                        "--misclassified N alone for test images")
    confidence, predicted = probs.cpu().max(1)
    targets = predicted if target == "pred" else labels
    net = cam_model(model)
    with progress_bar(len(images), "GradCAM", progress, unit="img") as bar:
        maps = gradcam_maps(net, normalize(images, mean, std), layer, targets.to(images.device), bar.update)
    captions = [((f"true {classes[int(labels[i])]}" if labels[i] >= 0 else Path(names[i]).name[:18]),
                 f"pred {classes[int(predicted[i])]} {confidence[i]:.0%}") for i in range(len(images))]
    title = (f"GradCAM{what} at {layer} ({shape[1]}x{shape[2]} map) for the "
             f"{'predicted' if target == 'pred' else 'true'} class; left: image, right: heat map over it")
    rows = plot_gradcam(images, maps, captions, title, path)
    return {"out": str(path), "layer": layer, "map_size": list(shape[1:]), "warning": warning,
            "images": len(images), "rows": rows, "maps": maps}


def load_test_set(ckpt: dict[str, Any], data_dir: str | os.PathLike | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test images (uint8) and labels: the one place GradCAM, the app and the bundle read a dataset."""
    from .datasets import load_for_checkpoint

    data = load_for_checkpoint(ckpt, data_dir)
    return data.test_images, data.test_labels


def test_set_or_none(ckpt: dict[str, Any], data_dir: str | os.PathLike | None, command: str, without: str
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


def gradcam_command(checkpoint: str | os.PathLike, images: list[str] = (), misclassified: int | None = None,
                    layer: str | None = None, target: str = "pred", out: str | os.PathLike | None = None,
                    data_dir: str | None = None, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """`cifarkit gradcam`: image files and/or the `misclassified` most confident test mistakes (10 when no
    file is given), predicted as `cifarkit predict` / `evaluate` do, explained at `layer`, drawn to `out`;
    `progress`: bars on stderr while the test images are predicted (minutes with test-time views) and explained."""
    from .config import TrainConfig
    from .folder import read_image
    from .inference import image_size, load_model
    from .metrics import mistakes, predict_logits
    from .runtime import inference_precision, resolve_device

    _require_captum()
    if misclassified is not None and misclassified < 1:
        raise UserError(f"--misclassified {misclassified}: must be at least 1")
    checkpoint = Path(checkpoint)
    out = check_output(out or default_output(checkpoint, "gradcam.png"), checkpoint, *images)
    dev = resolve_device(device)
    model, ckpt = load_model(checkpoint, dev)
    config = TrainConfig.from_dict(ckpt["config"])
    dtype = inference_precision(config.precision, dev)
    size = image_size(ckpt)
    checked_layer(model, layer, size)  # a wrong --layer is refused before any data is read
    pixels, probs, labels, names = [], [], [], []
    if images:
        files = torch.stack([read_image(p, size) for p in images]).to(dev)
        pixels.append(files)
        probs.append(predict_logits(model, files, dtype=dtype, mean=ckpt["mean"], std=ckpt["std"]
                                    ).softmax(1))  # as `cifarkit predict` does
        labels.append(torch.full((len(files),), -1, dtype=torch.long, device=dev))  # unknown
        names += list(images)
    if misclassified or not images:
        test_images, test_labels = load_test_set(ckpt, data_dir)
        test_images, test_labels = test_images.to(dev), test_labels.to(dev)
        with progress_bar(len(test_labels), predicting("finding the mistakes: testing", config.tta,
                                                       config.tta_below), progress, unit="img") as bar:
            test_probs = predict_logits(model, test_images, config.eval_batch_size, dtype, config.channels_last,
                                        config.tta, ckpt["mean"], ckpt["std"], config.tta_below, bar.update
                                        ).softmax(1)  # as evaluate and the plots
        order = mistakes(test_labels.cpu(), test_probs.cpu())[:misclassified or 10].to(dev)
        pixels.append(test_images[order])
        probs.append(test_probs[order])
        labels.append(test_labels[order])
        names += [f"test image {int(i)}" for i in order]
    return explain_images(model, torch.cat(pixels), torch.cat(probs), torch.cat(labels), ckpt["classes"],
                          ckpt["mean"], ckpt["std"], out, layer, target, names, size, progress=progress)


def plot_mistakes_gradcam(run: RunDir, images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor,
                          count: int = 10) -> Path | None:
    """report.html's GradCAM section: the `count` most confident mistakes of a finished run (its test `images`,
    `labels` and final `probs`), explained with the weights of its checkpoint as inference loads them. Without
    captum installed it says how to get it and draws nothing."""
    from .inference import image_size, load_model
    from .metrics import mistakes

    try:
        _require_captum()
    except UserError:
        print(f"GradCAM plot skipped: captum is not installed ({CAPTUM_HINT})", file=sys.stderr)
        return None
    model, ckpt = load_model(run.checkpoint, images.device)
    order = mistakes(labels.cpu(), probs.cpu())[:count].to(images.device)
    path = run.plot("gradcam")
    explain_images(model, images[order], probs[order], labels[order], ckpt["classes"], ckpt["mean"], ckpt["std"],
                   path, image_size=image_size(ckpt), what=" of the most confident mistakes")
    return path


def _require_captum() -> None:
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        raise UserError(f"GradCAM needs captum: {CAPTUM_HINT}") from None
