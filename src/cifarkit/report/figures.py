"""What a person looks at: the plots of a run, drawn with matplotlib's Figure API (no display needed).

Plots that need the data or the model (samples, augmentations, mistakes, confusion) are drawn at the end of
training; report_page builds RUN_DIR/report.html from the run folder's files alone. Every figure is made in
drawing.py's `figure`, where its text is literal; the grids of images are image_grids.py's.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.path import Path as LinePath
from matplotlib.transforms import Bbox

from ..data.augment import Augment
from ..data.dataset import Dataset
from ..evaluate.metrics import confusion_matrix, per_class_accuracy
from ..rundir.run_dir import RunDir
from .drawing import figure, save_figure
from .image_grids import (  # noqa: F401 (draw_cells re-exported: the plots' one import place for benchmarks/)
    draw_cells,
    plot_augmented,
    plot_misclassified,
    plot_samples,
)

FEW_CLASSES = 20  # up to this many classes, the confusion matrix and per-class plots write every number


def plot_lr_find(result: Any, path: str | os.PathLike) -> None:
    """Smoothed loss against lr on a log axis, with the suggestion and the loss minimum marked (`result`: a
    lr_finder.RangeTestResult)."""
    with figure(figsize=(7, 4.5)) as (fig, ax):
        ax.plot(result.lrs, result.losses, color="tab:blue", label="smoothed training loss")
        s, m = result.suggestion_index, result.min_loss_index
        ax.scatter(
            [result.lrs[s]],
            [result.losses[s]],
            color="tab:red",
            zorder=3,
            label=f"suggestion (steepest descent): {result.suggestion:.3g}",
        )
        ax.scatter(
            [result.lrs[m]],
            [result.losses[m]],
            color="tab:green",
            marker="v",
            zorder=3,
            label=f"loss minimum: {result.min_loss_lr:.3g}",
        )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        title = f"LR range test: {result.start_lr:g} to {result.end_lr:g}, {len(result.lrs)} of {result.num_iter} steps"
        if result.diverged_at is not None:
            title += " (stopped: diverged)"
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        save_figure(fig, path)


def plot_schedule(lrs: list[float], steps_per_epoch: int, path: str | os.PathLike) -> None:
    """The planned lr of every optimiser step, drawn where the step ends (step k of n an epoch at epoch k/n), with
    the start, peak and end marked and labelled beside their points, clear of the line and of each other."""
    with figure(figsize=(7, 4)) as (fig, ax):
        epochs = [(i + 1) / steps_per_epoch for i in range(len(lrs))]
        (line,) = ax.plot(epochs, lrs, color="tab:blue")
        peak = max(range(len(lrs)), key=lrs.__getitem__)
        marks: dict[int, list[str]] = {}  # step -> its names: a peak on the first or last step shares one label
        for i, name in ((0, "start"), (peak, "peak"), (len(lrs) - 1, "end")):
            marks.setdefault(i, []).append(name)
        ax.scatter([epochs[i] for i in marks], [lrs[i] for i in marks], color="tab:red", zorder=3)
        ax.set_ylim(-0.1 * lrs[peak], 1.25 * lrs[peak])  # room for labels above the peak and beside the ends
        ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= 1.25 * lrs[peak]])  # no negative lr on the scale
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.set_title(f"One Cycle schedule: {len(lrs)} steps, {steps_per_epoch} per epoch")
        ax.grid(True, alpha=0.3)
        ax.get_xlim(), ax.get_ylim()  # the autoscaled limits, settled before anything is measured in pixels
        taken = [
            Bbox.from_bounds(x - 5, y - 5, 10, 10)  # the marked points themselves, in pixels
            for x, y in ax.transData.transform([(epochs[i], lrs[i]) for i in marks])
        ]
        for i, names in marks.items():
            label_point(
                ax, f"{' = '.join(names)} {lrs[i]:.3g}\n(epoch {epochs[i]:.2f})", (epochs[i], lrs[i]), line, taken
            )
        save_figure(fig, path)


# Where a label may sit, in points from its point: nearest first, upper right first; the text is aligned away
# from the point (left of it: right-aligned, above it: bottom-aligned)
_BESIDE = [
    (dx * r, dy * r)
    for r in (6, 18, 36, 60)
    for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0))
]
_ALIGN = {1: ("left", "bottom"), 0: ("center", "center"), -1: ("right", "top")}


def label_point(ax: Any, text: str, xy: tuple[float, float], line: Line2D, taken: list[Bbox]) -> Any:
    """Annotate the data point `xy` with `text` at the nearest offset (_BESIDE) where the text lies inside the
    axes and crosses neither `line` nor a box of `taken` (which its box then joins); a label placed further than
    the nearest ring gets a thin line to its point. Call once the axes' limits are final and settled."""
    inside = ax.get_window_extent()
    drawn = LinePath(line.get_transform().transform(line.get_xydata()))
    fallback = None
    for offset in _BESIDE:
        ha, va = _ALIGN[(offset[0] > 0) - (offset[0] < 0)][0], _ALIGN[(offset[1] > 0) - (offset[1] < 0)][1]
        probe = ax.annotate(text, xy, xytext=offset, textcoords="offset points", ha=ha, va=va, fontsize=8)
        box = probe.get_window_extent()
        probe.remove()
        fits = (
            inside.containsx(box.x0)
            and inside.containsx(box.x1)
            and inside.containsy(box.y0)
            and inside.containsy(box.y1)
            and not any(box.overlaps(other) for other in taken)
        )
        if fits and fallback is None:
            fallback = (offset, ha, va, box)
        if fits and not drawn.intersects_bbox(box.padded(4), filled=False):
            break
    else:  # nowhere clear of the line: the nearest place inside the axes and off the other labels
        offset, ha, va, box = fallback or (_BESIDE[0], "left", "bottom", box)
    taken.append(box)
    far = max(abs(offset[0]), abs(offset[1])) > _BESIDE[0][0]
    return ax.annotate(
        text,
        xy,
        xytext=offset,
        textcoords="offset points",
        ha=ha,
        va=va,
        fontsize=8,
        arrowprops={"arrowstyle": "-", "color": "0.45", "lw": 0.7, "shrinkA": 1, "shrinkB": 4} if far else None,
    )


def plot_confusion(counts: np.ndarray, classes: tuple[str, ...], path: str | os.PathLike) -> None:
    """The confusion matrix as counts and row-normalised (each true class sums to 1)."""
    rows = counts.sum(1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    n = len(classes)
    # beyond FEW_CLASSES the cells' numbers would overlap (and CIFAR-100's 20,000 took a minute to draw): a colour
    # bar instead, and every few classes named
    annotate, ticks = n <= FEW_CLASSES, range(0, n, math.ceil(n / 25))
    with figure(1, 2, figsize=(15, 6.5)) as (fig, axes):
        for ax, values, title, fmt in (
            (axes[0], counts, "counts", "d"),
            (axes[1], normalised, "row-normalised", ".2f"),
        ):
            image = ax.imshow(values, cmap="Blues")
            ax.set_xticks(ticks, [classes[i] for i in ticks], rotation=45, ha="right", fontsize=None if annotate else 7)
            ax.set_yticks(ticks, [classes[i] for i in ticks], fontsize=None if annotate else 7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"Confusion matrix ({title})")
            if not annotate:
                fig.colorbar(image, ax=ax, shrink=0.8)
                continue
            top = values.max() or 1
            for (r, c), v in np.ndenumerate(values):
                ax.text(
                    c,
                    r,
                    format(v, fmt),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > 0.6 * top else "black",
                )
        fig.tight_layout()
        save_figure(fig, path)


def plot_per_class(accuracy: np.ndarray, classes: tuple[str, ...], path: str | os.PathLike) -> None:
    few = len(classes) <= FEW_CLASSES  # more: a wider figure, every name upright and small, no number over a bar
    with figure(figsize=(8, 4) if few else (max(8.0, 0.13 * len(classes)), 4.5)) as (fig, ax):
        bars = ax.bar(classes, accuracy * 100, color="tab:blue")
        if few:
            ax.bar_label(bars, labels=[f"{a:.1%}" for a in accuracy], fontsize=8)
        ax.set_xlim(-0.6, len(classes) - 0.4)
        ax.set_ylim(0, 105)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Accuracy per class")
        ax.tick_params(axis="x", rotation=45 if few else 90, labelsize=None if few else 6)
        save_figure(fig, path)


def plot_results(run: RunDir, data: Dataset, augment: Augment, probs: torch.Tensor, seed: int) -> None:
    """The plots of a finished run that need its data and predictions: samples, augmentations, mistakes,
    confusion matrix and per-class accuracy (`probs`: the final model's test-set probabilities)."""
    plot_samples(data.train_images, data.train_labels, data.classes, run.plot("samples"))
    plot_augmented(data.train_images, data.train_labels, data.classes, augment, run.plot("augmented"), seed=seed)
    plot_misclassified(data.test_images, data.test_labels, probs, data.classes, run.plot("misclassified"))
    counts = confusion_matrix(data.test_labels, probs.argmax(1), len(data.classes))
    plot_confusion(counts, data.classes, run.plot("confusion"))
    plot_per_class(per_class_accuracy(counts), data.classes, run.plot("per_class"))


# ---------------------------------------------------------------------------------------------- curves


def plot_curves(history: list[dict[str, float]], path: str | os.PathLike) -> None:
    """Loss and accuracy per epoch, train, validation (when the run has a split) and test, with the lr underneath."""
    epochs = [r["epoch"] for r in history]
    with figure(3, 1, figsize=(8, 9), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.5]}) as (fig, axes):
        for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
            ax.plot(epochs, [r[f"train_{key}"] for r in history], marker="o", label=f"train {label}")
            for split in ("val", "test"):
                # eval_every may skip epochs; with a validation split the test set is evaluated once, at the end
                shown = [r for r in history if math.isfinite(r.get(f"{split}_{key}", math.nan))]
                if shown:
                    ax.plot(
                        [r["epoch"] for r in shown],
                        [r[f"{split}_{key}"] for r in shown],
                        marker="o",
                        label=f"{'validation' if split == 'val' else 'test'} {label}",
                    )
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            ax.legend()
        axes[2].plot(epochs, [r["lr"] for r in history], marker=".", color="tab:gray")
        axes[2].set_ylabel("lr (end of epoch)")
        axes[2].set_xlabel("epoch")
        axes[2].grid(True, alpha=0.3)
        axes[0].set_title("Training curves")
        save_figure(fig, path)
