"""Pictures of images: a grid of them with a caption each (one Axes placed in inches), and the run's grids of
training samples, augmented draws and the test images the model got wrong.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..data.augment import Augment, denormalize, normalize
from ..data.dataset import MEAN, STD
from ..evaluate.metrics import mistakes
from .drawing import figure, save_figure


def _display(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Normalised float (N,3,H,W) -> uint8 (N,H,W,3) for imshow."""
    return denormalize(images.cpu(), mean, std).permute(0, 2, 3, 1).numpy()


def plot_image_grid(
    images: torch.Tensor,
    titles: list[str],
    path: str | os.PathLike,
    cols: int,
    title: str,
    cell_width: float = 1.3,
    mean: tuple[float, ...] = MEAN,
    std: tuple[float, ...] = STD,
) -> None:
    """A grid of images (uint8, or float normalised with `mean`/`std` as the model sees them), a caption each."""
    pixels = _display(images if images.is_floating_point() else normalize(images.cpu(), mean, std), mean, std)
    draw_cells(list(zip(pixels, titles)), cols, title, path, cell_width)


def draw_cells(
    cells: list[tuple[np.ndarray, str]],
    cols: int,
    title: str,
    path: str | os.PathLike,
    cell_width: float = 1.3,
    cell_height: float = 1.5,
    title_size: float | None = None,
    empty: str = "",
) -> int:
    """Images in a grid, `cols` a row, each cell (pixels (H, W, 3) uint8, a caption of up to two lines above them),
    all on one Axes placed in inches (an Axes per image costs 20-50 ms each to make, lay out and draw: seconds at
    the end of every run; benchmarks/plots.py); `empty`: the text when there are no cells. Returns the rows."""
    rows = max(1, math.ceil(len(cells) / cols))
    width, height, header = cols * cell_width, rows * cell_height, 0.45  # inches; header: the title's room
    with figure(figsize=(width, height + header)) as (fig, ax):
        ax.set_position((0, 0, 1, height / (height + header)))
        side = min(cell_width, cell_height) - 0.35  # room for a two-line caption of 7 pt
        for i, (pixels, caption) in enumerate(cells):
            row, col = divmod(i, cols)
            left, top = col * cell_width + (cell_width - side) / 2, (row + 1) * cell_height - side - 0.05
            # extent (left, right, bottom, top) with y growing downwards (ylim below): row 0 of the image on top
            ax.imshow(pixels, interpolation="nearest", extent=(left, left + side, top + side, top))
            ax.text(left + side / 2, top - 0.04, caption, ha="center", va="bottom", fontsize=7)
        if not cells:
            ax.text(0.1, cell_height / 2, empty, fontsize=9)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_aspect("equal")
        ax.axis("off")
        # the title 0.1 in below the top whatever the figure's height (suptitle's default y is a fraction of it)
        fig.suptitle(title, fontsize=title_size, y=1 - 0.1 / (height + header), va="top")
        save_figure(fig, path)
    return rows


def plot_samples(
    images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], path: str | os.PathLike, per_class: int = 2
) -> None:
    """The first `per_class` training images of every class that has any, with class names."""
    labels = labels.cpu()
    picks = [i for c in range(len(classes)) for i in torch.nonzero(labels == c).flatten()[:per_class].tolist()]
    plot_image_grid(
        images.cpu()[picks], [classes[int(labels[i])] for i in picks], path, cols=10, title="Training images"
    )


def plot_augmented(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    augment: Augment,
    path: str | os.PathLike,
    count: int = 6,
    draws: int = 5,
    seed: int = 0,
) -> None:
    """`count` training images as stored (first column), then `draws` augmented versions of each."""
    generator = torch.Generator().manual_seed(seed)
    originals = images[:count].cpu()
    rows, titles = [], []
    for i in range(len(originals)):
        rows += [
            normalize(originals[i : i + 1], augment.mean, augment.std),
            augment(originals[i : i + 1].expand(draws, -1, -1, -1), generator),
        ]
        titles += [classes[int(labels[i])]] + [f"draw {d + 1}" for d in range(draws)]
    plot_image_grid(
        torch.cat(rows),
        titles,
        path,
        cols=draws + 1,
        mean=augment.mean,
        std=augment.std,
        title="Augmented images (first column: original)",
    )


def plot_misclassified(
    images: torch.Tensor,
    labels: torch.Tensor,
    probs: torch.Tensor,
    classes: tuple[str, ...],
    path: str | os.PathLike,
    count: int = 30,
) -> int:
    """The test images the model got wrong, most confident mistakes first; returns how many were wrong."""
    labels, probs = labels.cpu(), probs.cpu()
    confidence, predicted = probs.max(1)
    wrong = mistakes(labels, probs)
    order = wrong[:count]
    titles = [f"true {classes[int(labels[i])]}\npred {classes[int(predicted[i])]} {confidence[i]:.0%}" for i in order]
    plot_image_grid(
        images.cpu()[order],
        titles,
        path,
        cols=10,
        cell_width=1.75,
        title=f"Misclassified test images, most confident first ({len(wrong)} wrong of {len(labels)})",
    )
    return len(wrong)
