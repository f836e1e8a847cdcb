"""GradCAM drawn: image files or the test images a run got most confidently wrong, each beside its heat map, as
a PNG grid (`cifarkit gradcam`, report.html's GradCAM section); the maps come from evaluate/explain.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.augment import normalize
from ..errors import UserError
from ..evaluate.explain import (
    CAPTUM_HINT,
    cam_model,
    checked_layer,
    gradcam_maps,
    load_test_set,
    overlay,
    require_captum,
)
from ..rundir.outputs import check_output, default_output
from ..rundir.run_dir import RunDir
from ..runtime.progress import predicting, progress_bar


def plot_gradcam(
    images: torch.Tensor,
    maps: torch.Tensor,
    captions: list[tuple[str, str]],
    title: str,
    path: str | os.PathLike,
    per_row: int = 5,
) -> int:
    """A grid of (image, heat map over it) pairs, `per_row` pairs a row, each pair captioned (left, right);
    returns the number of rows. `images`: uint8 (N, 3, H, W); `maps`: (N, H, W) in [0, 1]."""
    from .image_grids import draw_cells  # matplotlib only when drawing

    pixels, heat = images.cpu().permute(0, 2, 3, 1).numpy(), maps.cpu().numpy()
    cells = [
        cell
        for i in range(len(images))
        for cell in ((pixels[i], captions[i][0]), (overlay(pixels[i], heat[i]), captions[i][1]))
    ]
    return draw_cells(
        cells,
        2 * max(1, min(len(images), per_row)),
        title,
        path,
        cell_height=1.55,
        title_size=9,
        empty="no images (no mistakes to show)",
    )


def explain_images(
    model: nn.Module,
    images: torch.Tensor,
    probs: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    mean,
    std,
    path: str | os.PathLike,
    layer: str | None = None,
    target: str = "pred",
    names: list[str] | None = None,
    image_size: int = 32,
    what: str = "",
    progress: bool = False,
) -> dict[str, Any]:
    """GradCAM of `images` (uint8, on the model's device) drawn to `path`; `probs` are the model's class
    probabilities for them, `labels` their true classes (-1: unknown, captioned with `names`). `model` is
    copied, never changed. `progress`: a bar on stderr while the maps are computed."""
    layer, shape, warning = checked_layer(model, layer, image_size)
    labels = labels.cpu()
    if target == "true" and bool((labels < 0).any()):
        raise UserError(
            "--target true: image files carry no true class; use --target pred (the default), or "
            "--misclassified N alone for test images"
        )
    confidence, predicted = probs.cpu().max(1)
    targets = predicted if target == "pred" else labels
    net = cam_model(model)
    with progress_bar(len(images), "GradCAM", progress, unit="img") as bar:
        maps = gradcam_maps(net, normalize(images, mean, std), layer, targets.to(images.device), bar.update)
    captions = [
        (
            (f"true {classes[int(labels[i])]}" if labels[i] >= 0 else Path(names[i]).name[:18]),
            f"pred {classes[int(predicted[i])]} {confidence[i]:.0%}",
        )
        for i in range(len(images))
    ]
    title = (
        f"GradCAM{what} at {layer} ({shape[1]}x{shape[2]} map) for the "
        f"{'predicted' if target == 'pred' else 'true'} class; left: image, right: heat map over it"
    )
    rows = plot_gradcam(images, maps, captions, title, path)
    return {
        "out": str(path),
        "layer": layer,
        "map_size": list(shape[1:]),
        "warning": warning,
        "images": len(images),
        "rows": rows,
        "maps": maps,
    }


def gradcam_command(
    checkpoint: str | os.PathLike,
    images: list[str] = (),
    misclassified: int | None = None,
    layer: str | None = None,
    target: str = "pred",
    out: str | os.PathLike | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """`cifarkit gradcam`: image files and/or the `misclassified` most confident test mistakes (10 when no
    file is given), predicted as `cifarkit predict` / `evaluate` do, explained at `layer`, drawn to `out`;
    `progress`: bars on stderr while the test images are predicted (minutes with test-time views) and explained."""
    from ..config.train_config import TrainConfig
    from ..data.folder import read_image
    from ..evaluate.inference import image_size, load_model
    from ..evaluate.metrics import mistakes, predict_logits
    from ..runtime.device import inference_precision, resolve_device

    require_captum()
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
        probs.append(
            predict_logits(model, files, dtype=dtype, mean=ckpt["mean"], std=ckpt["std"]).softmax(1)
        )  # as `cifarkit predict` does
        labels.append(torch.full((len(files),), -1, dtype=torch.long, device=dev))  # unknown
        names += list(images)
    if misclassified or not images:
        test_images, test_labels = load_test_set(ckpt, data_dir)
        test_images, test_labels = test_images.to(dev), test_labels.to(dev)
        with progress_bar(
            len(test_labels),
            predicting("finding the mistakes: testing", config.tta, config.tta_below),
            progress,
            unit="img",
        ) as bar:
            test_probs = predict_logits(
                model,
                test_images,
                config.eval_batch_size,
                dtype,
                config.channels_last,
                config.tta,
                ckpt["mean"],
                ckpt["std"],
                config.tta_below,
                bar.update,
            ).softmax(1)  # as evaluate and the plots
        order = mistakes(test_labels.cpu(), test_probs.cpu())[: misclassified or 10].to(dev)
        pixels.append(test_images[order])
        probs.append(test_probs[order])
        labels.append(test_labels[order])
        names += [f"test image {int(i)}" for i in order]
    return explain_images(
        model,
        torch.cat(pixels),
        torch.cat(probs),
        torch.cat(labels),
        ckpt["classes"],
        ckpt["mean"],
        ckpt["std"],
        out,
        layer,
        target,
        names,
        size,
        progress=progress,
    )


def plot_mistakes_gradcam(
    run: RunDir, images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, count: int = 10
) -> Path | None:
    """report.html's GradCAM section: the `count` most confident mistakes of a finished run (its test `images`,
    `labels` and final `probs`), explained with the weights of its checkpoint as inference loads them. Without
    captum installed it says how to get it and draws nothing."""
    from ..evaluate.inference import image_size, load_model
    from ..evaluate.metrics import mistakes

    try:
        require_captum()
    except UserError:
        print(f"GradCAM plot skipped: captum is not installed ({CAPTUM_HINT})", file=sys.stderr)
        return None
    model, ckpt = load_model(run.checkpoint, images.device)
    order = mistakes(labels.cpu(), probs.cpu())[:count].to(images.device)
    path = run.plot("gradcam")
    explain_images(
        model,
        images[order],
        probs[order],
        labels[order],
        ckpt["classes"],
        ckpt["mean"],
        ckpt["std"],
        path,
        image_size=image_size(ckpt),
        what=" of the most confident mistakes",
    )
    return path
