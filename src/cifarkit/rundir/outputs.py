"""Where a command's output may go, beyond a run folder's own rules (rundir.check_output): never among the data
that a command reads, where the next run would read it as data or it would replace a data file."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError


def data_areas(dataset: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """What a command reading `dataset` from `data_dir` (None: $CIFARKIT_DATA, else the default folder) takes as
    data: an image folder's whole tree; of a CIFAR folder, its unpacked folders and archives (a run beside them in
    the same parent is fine: nothing reads it as data)."""
    from ..data.cifar import ARCHIVE_URL, BIN_ARCHIVE, BIN_DIR, CIFAR100_DIR, CIFAR100_URL, PY_DIR
    from ..data.dataset import default_data_dir

    root = default_data_dir(data_dir)
    if dataset == "folder" or root.name in (PY_DIR, BIN_DIR, CIFAR100_DIR):
        return [root]
    archives = (ARCHIVE_URL.rsplit("/", 1)[1], BIN_ARCHIVE, CIFAR100_URL.rsplit("/", 1)[1])
    return [root / name for name in (PY_DIR, BIN_DIR, CIFAR100_DIR, *archives)]


def refuse_inside_data(output: str | os.PathLike, flag: str, *areas: Path) -> None:
    """Refuse an output (a file or a folder) inside the data a command reads (see data_areas): a JSON over
    test_batch would replace the data, a run's plots in a class folder would become the next run's images."""
    target = Path(os.path.realpath(Path(output).expanduser()))
    for area in areas:
        if target.is_relative_to(os.path.realpath(area)):
            raise UserError(
                f"{flag} {output}: inside the data in {area}; an output never goes among the data a "
                "command reads (the next run would read it as data, or it would replace a data file): "
                "choose a place outside it"
            )
