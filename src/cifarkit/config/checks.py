"""The checks a value passes before it becomes a setting, written once: TrainConfig's ranges, and the objects
the Python API builds by hand (Augment, a checkpoint's image size, --checkpoint-every) use the same ones.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_whole(x: Any, least: int = 0) -> bool:
    """A whole number (numpy's integers too), not a bool, at least `least`."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= least


def is_finite(x: Any) -> bool:
    """A finite real number (numpy's too), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def is_positive(x: Any) -> bool:
    return is_finite(x) and x > 0


def is_fraction(x: Any) -> bool:
    """In [0, 1)."""
    return is_finite(x) and 0 <= x < 1


def in_range(x: Any, low: float, high: float) -> bool:
    """A finite number in [low, high]."""
    return is_finite(x) and low <= x <= high


# The augmentation's brightness jitter, in standard units of the normalised image: the --brightness flag and an
# Augment built by hand accept the same range, and say so in the same words.
BRIGHTNESS_RANGE = (0.0, 2.0)
BRIGHTNESS_RULE = "must be in [0, 2] (standard units)"
