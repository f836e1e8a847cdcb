"""An exclude list's text (`cifarkit train --exclude FILE`): the training images a run leaves out.

One entry a line: an index into the training set for CIFAR (0-based, as audit.csv numbers them), a path relative
to the dataset folder for image folders (train/cat/0001.png, as audit.csv names them). A line that starts with `#`
is a comment, and so is the rest of a line after whitespace and `#` (what the audit's exclude.txt writes after each
entry: why it is there). The entries are recorded in the run's config (TrainConfig.exclude), so a resume leaves out
the same images; data/exclude.py applies them. Free of torch: the flags parse --exclude FILE while they are built.
"""

from __future__ import annotations

import os
import re

from ..errors import UserError

_INLINE_COMMENT = re.compile(r"\s+#.*$")
MAX_EXCLUDE_BYTES = 64 * 2**20  # far above a list of every CIFAR training image; a larger file is a slip


def parse_exclude_text(text: str, source: str) -> list[str]:
    """The entries of an exclude list's text, in order, each once; a list that names nothing is refused."""
    entries: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        entry = _INLINE_COMMENT.sub("", line).strip()
        if not entry or entry.startswith("#"):
            continue
        if entry not in seen:
            seen.add(entry)
            entries.append(entry)
    if not entries:
        raise UserError(
            f"--exclude {source}: names no image (only blank lines and # comments); give one training "
            "image a line: an index for CIFAR, a path such as train/cat/0001.png for image folders"
        )
    return entries


def read_exclude_file(path: str | os.PathLike) -> list[str]:
    """The entries of the exclude list at `path` (read through the checked reader: a regular file, bounded size)."""
    from ..files.reader import read_text

    return parse_exclude_text(read_text(path, "exclude list", limit=MAX_EXCLUDE_BYTES), os.fspath(path))


def parse_exclude_flag(text: str) -> list[str]:
    """--exclude FILE's value for argparse: the file's entries (a problem with it becomes argparse's error)."""
    try:
        return read_exclude_file(text)
    except UserError as e:
        raise ValueError(str(e)) from None
