"""Applying an exclude list (config/exclude_list.py reads it) to a dataset: which training images a run
leaves out, named as audit.csv names them (an index for CIFAR, a relative path for image folders).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    import torch

    from .dataset import Dataset


def training_names(data: Dataset) -> list[str]:
    """How exclude lists and audits name each training image of `data`: its path relative to the dataset folder
    for image folders (train/CLASS/FILE, in the order the images were read), else its index."""
    return image_names(data, "train")


def image_names(data: Dataset, split: str) -> list[str]:
    """The names of `data`'s images of `split` (train | test): relative paths for image folders, else indices."""
    count = len(getattr(data, f"{split}_labels"))
    if data.layout != "folder" or data.root is None:
        return [str(i) for i in range(count)]
    from .folder import list_split

    folder = data.root / split if split == "train" or (data.root / "test").is_dir() else data.root / "val"
    _, files = list_split(folder)
    names = [path.relative_to(data.root).as_posix() for path, _ in files]
    if len(names) != count:  # the folder changed after its images were read
        raise UserError(f"{folder}: holds {len(names)} images now, {count} when the data was read; run again")
    return names


def excluded_positions(data: Dataset, entries: list[str]) -> torch.Tensor:
    """The positions in `data`'s training set of the images `entries` name; an entry that names no training image
    is refused, with the first few such entries named."""
    import torch

    names = training_names(data)
    position = {name: i for i, name in enumerate(names)}
    unknown = [e for e in entries if e not in position]
    if unknown:
        shown = ", ".join(repr(e) for e in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        what = (
            "paths relative to the dataset folder, e.g. " + repr(names[0])
            if data.layout == "folder" and names
            else f"indices 0 to {len(names) - 1}"
        )
        raise UserError(
            f"--exclude: {len(unknown)} entr{'y' if len(unknown) == 1 else 'ies'} name no training image "
            f"of {data.root or data.name}: {shown}; entries are {what}"
        )
    return torch.tensor(sorted(position[e] for e in entries), dtype=torch.int64)


def exclude_images(data: Dataset, entries: list[str] | None, within: int | None = None) -> Dataset:
    """`data` without the training images `entries` names (checked against the whole training set), then, when
    `within` is given, only those among its first `within` images left (--limit-train: the first N, less the
    excluded). A list that leaves no training image is refused."""
    import dataclasses

    import torch

    limited = data.limit(within) if within is not None else data
    if not entries or data.excluded is not None:  # nothing to leave out, or left out already
        return limited
    positions = excluded_positions(data, entries)
    n = len(limited.train_labels)
    keep = torch.ones(n, dtype=torch.bool)
    keep[positions[positions < n]] = False
    if not keep.any():
        raise UserError(
            f"--exclude: leaves out every one of the {n} training images; nothing would be left to train on"
        )
    keep = keep.to(data.train_images.device)
    return dataclasses.replace(
        limited,
        train_images=limited.train_images[keep],
        train_labels=limited.train_labels[keep],
        excluded=tuple(positions.tolist()),
    )


def kept_positions(data: Dataset, entries: list[str] | None, within: int | None = None) -> torch.Tensor:
    """The positions in `data`'s whole training set of the images a run with these `entries` and --limit-train
    `within` trains on (what exclude_images keeps), in order."""
    import torch

    n = min(len(data.train_labels), within) if within is not None else len(data.train_labels)
    keep = torch.ones(n, dtype=torch.bool)
    if entries:
        positions = excluded_positions(data, entries)
        keep[positions[positions < n]] = False
    return keep.nonzero().squeeze(1)
