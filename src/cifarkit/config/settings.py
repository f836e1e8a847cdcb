"""How a setting declares itself: its help, group and command-line flag (TrainConfig's fields use `setting`).

cli/main.py generates the `cifarkit train` flags from these declarations and config.validate() names the flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The groups of settings, in the order `cifarkit train --help` shows them: key -> title.
GROUPS = {
    "recipe": "recipe (unset flags keep its values)",
    "model": "model and training",
    "optimiser": "optimiser",
    "schedule": "One Cycle schedule (torch.optim.lr_scheduler.OneCycleLR's arguments)",
    "augmentation": "augmentation of training batches (test images are never augmented)",
    "evaluation": "evaluation",
    "lr range test": "LR range test (cifarkit lr-find, or --max-lr find)",
    "runtime": "device and runtime",
    "data": "data",
}


@dataclass(frozen=True)
class Setting:
    """How one TrainConfig field shows itself: declared in the field's metadata by `setting()`."""

    help: str
    group: str  # a key of GROUPS
    flag: str  # e.g. "--max-lr"; a boolean also gets "--no-..."
    cli: bool = True  # False: no flag of its own is generated (e.g. preset, which --preset sets)
    train_only: bool = False  # a flag of `train` only (not `lr-find`, which trains no schedule)
    machine: bool = False  # where it runs, not what: may change when a run is resumed
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # the flag's text -> value, where the annotation is not enough
    name: str = ""  # the field's name, filled in below
    type: Any = None  # the field's type without None (bool, int, float, str), from its annotation; filled in below


def setting(
    default: Any,
    help: str,
    group: str,
    *,
    flag: str | None = None,
    cli: bool = True,
    train_only: bool = False,
    machine: bool = False,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A TrainConfig field that declares its help, group and flag (default: the field name, `--max-lr`)."""
    if group not in GROUPS:
        raise ValueError(f"setting group {group!r}: choose one of {', '.join(GROUPS)}")
    info = Setting(
        help=help,
        group=group,
        flag=flag or "",
        cli=cli,
        train_only=train_only,
        machine=machine,
        choices=choices,
        metavar=metavar,
        parse=parse,
    )
    return dataclasses.field(default=default, metadata={"setting": info})


def number_or_find(text: str) -> float | str:
    """--max-lr's value: a number, or "find"."""
    if text == "find":
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a number nor 'find'") from None
