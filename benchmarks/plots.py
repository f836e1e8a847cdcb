"""What a run's image grids cost to draw: cifarkit's one-Axes grid against one Axes per image, side by side.

    python benchmarks/plots.py [--repeats 3]

The four grids a run ends with (plots/samples.png, augmented.png, misclassified.png, gradcam.png), with their
sizes and captions, drawn from random pixels to PNG files (in a temporary folder) both ways: `report.draw_cells`
(every image on one Axes, placed in inches) and the `subplots` grid most notebooks draw (an Axes per image, its
title the caption), which cifarkit drew until 2026-11-26 (8ca86cb). Prints the median seconds of each and the ratio.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cifarkit.evaluate.explain import overlay
from cifarkit.report.figures import draw_cells, figure, save_figure
from cifarkit.runtime.device import describe_machine, machine_info

# (plot, images, columns, cell width and height in inches, every other image a GradCAM overlay)
GRIDS = (
    ("samples", 20, 10, 1.3, 1.5, False),
    ("augmented", 36, 6, 1.3, 1.5, False),
    ("misclassified", 30, 10, 1.75, 1.5, False),
    ("gradcam", 20, 10, 1.3, 1.55, True),
)


def axes_per_image(cells: list, cols: int, title: str, path: Path, cell_width: float, cell_height: float) -> None:
    """The notebook way: plt.subplots(rows, cols), imshow and set_title on each Axes."""
    rows = max(1, math.ceil(len(cells) / cols))
    with figure(rows, cols, figsize=(cols * cell_width, rows * cell_height), squeeze=False) as (fig, axes):
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < len(cells):
                pixels, caption = cells[i]
                ax.imshow(pixels, interpolation="nearest")
                ax.set_title(caption, fontsize=7)
        fig.suptitle(title)
        save_figure(fig, path)


def median_seconds(draw, repeats: int, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        draw(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="draws of each grid each way (median reported)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: must be >= 1")
    rng = np.random.default_rng(0)
    print(f"machine: {describe_machine(machine_info(torch.device('cpu')))}; median of {args.repeats} draw(s)")
    print(f"{'grid':<14} {'images':>6}  {'one Axes an image':>17}  {'cifarkit (one Axes)':>19}  ratio")
    totals = [0.0, 0.0]
    with tempfile.TemporaryDirectory() as folder:
        for name, count, cols, cell_width, cell_height, heat in GRIDS:
            path = Path(folder) / f"{name}.png"
            pixels = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
            cells = [
                (overlay(pixels[i], rng.random((32, 32))) if heat and i % 2 else pixels[i], f"true cat\npred dog {i}%")
                for i in range(count)
            ]
            shape = (cells, cols, name, path, cell_width, cell_height)
            draw_cells(*shape)  # fonts and caches warm before either is timed
            old = median_seconds(axes_per_image, args.repeats, *shape)
            new = median_seconds(draw_cells, args.repeats, *shape)
            totals[0], totals[1] = totals[0] + old, totals[1] + new
            print(f"{name:<14} {count:>6}  {old:>16.3f}s  {new:>18.3f}s  {old / new:.1f}x")
    print(f"{'all four':<14} {'':>6}  {totals[0]:>16.3f}s  {totals[1]:>18.3f}s  {totals[0] / totals[1]:.1f}x")


if __name__ == "__main__":
    main()
