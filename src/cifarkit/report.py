"""Plots of a run (matplotlib, no display needed), each written atomically as a PNG."""
from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only: works on servers and in CI without a display
import matplotlib.pyplot as plt  # noqa: E402

from .files import write_bytes  # noqa: E402

if TYPE_CHECKING:
    from .lr_finder import RangeTestResult


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def plot_lr_find(result: "RangeTestResult", path: str | os.PathLike) -> None:
    """Smoothed loss against lr on a log axis, with the suggestion and the loss minimum marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result.lrs, result.losses, color="tab:blue", label="smoothed training loss")
    s, m = result.suggestion_index, result.min_loss_index
    ax.scatter([result.lrs[s]], [result.losses[s]], color="tab:red", zorder=3,
               label=f"suggestion (steepest descent): {result.suggestion:.3g}")
    ax.scatter([result.lrs[m]], [result.losses[m]], color="tab:green", marker="v", zorder=3,
               label=f"loss minimum: {result.min_loss_lr:.3g}")
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
    """The planned lr of every optimiser step, with the start, peak and end values marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [i / steps_per_epoch for i in range(len(lrs))]
    ax.plot(epochs, lrs, color="tab:blue")
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    for i, label in ((0, "start"), (peak, "peak"), (len(lrs) - 1, "end")):
        ax.scatter([epochs[i]], [lrs[i]], color="tab:red", zorder=3)
        ax.annotate(f"{label} {lrs[i]:.3g}\n(epoch {(i + 1) / steps_per_epoch:.2f})", (epochs[i], lrs[i]),
                    textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(f"One Cycle schedule: {len(lrs)} steps, {steps_per_epoch} per epoch")
    ax.grid(True, alpha=0.3)
    save_figure(fig, path)
