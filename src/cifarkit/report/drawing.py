"""A figure as this package draws it: made with matplotlib's Figure API (no pyplot, no display), its text literal,
saved atomically as PNG.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

import matplotlib

# Figures without pyplot: no global figure state and no backend switch, so drawing here never changes the
# caller's matplotlib (a notebook's inline backend keeps working); Figure.savefig renders with Agg by itself.
from matplotlib.figure import Figure

from ..files.atomic import write_bytes

# Class, file and run names come from the user's data; matplotlib would parse one holding `$...$` as mathtext
# (and raise on an unknown command such as `$\badcmd$`), so no text of a figure here is parsed.
LITERAL_TEXT = {"text.parse_math": False}


@contextlib.contextmanager
def figure(*args: Any, figsize: tuple[float, float], **kwargs: Any) -> Iterator[tuple[Figure, Any]]:
    """A pyplot-free `plt.subplots` (the same arguments) as the block in which the figure is drawn and saved:
    every text made in it is literal (LITERAL_TEXT). Tick labels are made, and text parsed, when the figure is
    drawn, so save it inside the block; the setting holds only there, and the caller's own figures keep theirs."""
    with matplotlib.rc_context(LITERAL_TEXT):
        fig = Figure(figsize=figsize)
        yield fig, fig.subplots(*args, **kwargs)


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    write_bytes(path, png_bytes(fig))
