"""The progress bar of every step that can take more than a few seconds: training epochs, evaluation (with test-time
views), GradCAM, the app's start. One look everywhere: tqdm on stderr (stdout stays the command's answer), gone
when done, off with --quiet (progress=False in the Python API).
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0, unit: str = "it") -> tqdm:
    """A bar of `total` units (`initial` already done) named `desc`; a no-op object when not `enabled`."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def predicting(what: str, tta: str = "none", tta_below: float = 1.0) -> str:
    """A bar's name for predicting images: "testing", or "testing (flip-translate views where unsure)"."""
    return what if tta == "none" else f"{what} ({tta} views{' where unsure' if tta_below < 1 else ''})"


def say(message: str) -> None:
    """A line on stderr, drawn above any bar in progress rather than into it."""
    tqdm.write(message, file=sys.stderr)
