"""A setting's value in each preset, said in words: the flags' help (`cifarkit train --help`, the reference
pages) and the help of the commands that default to a run's own setting are written from PRESETS, never by hand.
"""

from __future__ import annotations

from typing import Any

from .train_config import PRESETS, TrainConfig


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def presets_note(name: str) -> str:
    """Each preset's value of setting `name`, from PRESETS: " (s10, s10-best: 24; fast-v1: 12; fast: 9; ...)"."""
    defaults = TrainConfig().to_dict()
    presets: dict[str, list[str]] = {}
    for preset, changes in PRESETS.items():
        presets.setdefault(_shown({**defaults, **changes}[name]), []).append(preset)
    if list(presets) == ["None"]:
        return ""  # unset in every preset: the help says what that means
    if len(presets) == 1:
        return f" (default {next(iter(presets))})"
    return " (" + "; ".join(", ".join(names) + f": {value}" for value, names in presets.items()) + ")"
