"""The one way in to a dataset: by name (cifar10 | cifar100 | folder), then shaped for a run (first N
images, the validation split)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from ..config.train_config import TrainConfig
from ..errors import UserError
from .cifar import load_cifar10, load_cifar100
from .dataset import Dataset, to_nfc
from .exclude import exclude_images
from .folder import load_folder


def load_dataset(
    name: str = "cifar10",
    data_dir: str | os.PathLike | None = None,
    *,
    labels: str = "fine",
    image_size: int = 32,
    download: bool = True,
    progress: bool = True,
    test_only: bool = False,
) -> Dataset:
    """The whole dataset `name` from `data_dir` (default $CIFARKIT_DATA, else ~/.cache/cifarkit). `test_only`:
    a folder's training images may be left out (none, when they are not decoded yet) for what needs only the test
    set."""
    if name == "cifar10":
        return load_cifar10(data_dir, download=download)
    if name == "cifar100":
        return load_cifar100(data_dir, labels=labels, download=download)
    if name == "folder":
        return load_folder(data_dir, image_size=image_size, progress=progress, test_only=test_only)
    raise ValueError(f"unknown dataset {name!r}")


def load_run_data(config: TrainConfig, progress: bool = True) -> Dataset:
    """The dataset a config names, from its data_dir."""
    return load_dataset(
        config.dataset, config.data_dir, labels=config.labels, image_size=config.image_size, progress=progress
    )


def load_checkpoint_data(
    ckpt: dict[str, Any],
    data_dir: str | os.PathLike | None = None,
    limit_test: int | None = None,
    with_train: bool = False,
) -> Dataset:
    """The dataset a checkpoint's run was trained on, for evaluate/gradcam/app, its test set limited as the run's
    (or to `limit_test`): from `data_dir` (the flag), else the run's own data_dir if it exists here (the data it
    trained on, which a general $CIFARKIT_DATA must not replace; a path from another machine is a hint, never
    created), else $CIFARKIT_DATA, else the default cache folder. Data whose classes are not the checkpoint's is
    refused. `with_train`: an image folder's training images too (read
    for its test images alone otherwise; CIFAR's archives hold both)."""
    config = TrainConfig.from_dict(ckpt["config"])
    hint = config.data_dir if config.data_dir and Path(config.data_dir).expanduser().is_dir() else None
    where = data_dir or hint or os.environ.get("CIFARKIT_DATA")
    if data_dir and not Path(data_dir).expanduser().is_dir():  # a slip of the keyboard: never a download into it
        raise UserError(f"--data-dir {data_dir}: no such folder")
    if where is None and config.dataset == "folder" and config.data_dir:  # no default folder holds the user's images
        raise UserError(
            f"the run's image folder {config.data_dir} is not here (moved, or a path relative to "
            "where it trained?); pass --data-dir where its train/ and test/ are"
        )
    # CIFAR may still be fetched, into the default folder only: the run's own was on another machine
    data = load_dataset(
        config.dataset, where, labels=config.labels, image_size=config.image_size, test_only=not with_train
    )
    if tuple(data.classes) != to_nfc(ckpt["classes"]):  # a checkpoint may hold a Mac's decomposed names
        raise UserError(
            f"{data.root}: its classes ({', '.join(data.classes[:5])}, ...) are not the ones the model "
            f"was trained on ({', '.join(ckpt['classes'][:5])}, ...); pass the run's --data-dir"
        )
    return data.limit(test=limit_test or config.limit_test)


def run_view(data: Dataset, config: TrainConfig) -> Dataset:
    """The run's view of `data`: its first limit_train / limit_test images, less the training images --exclude
    lists, then val_split of the training images held out (stratified, by the seed). Applied once: a dataset
    already split is returned as it is. A dataset given through the Python API is checked here first
    (Dataset.check)."""
    if not isinstance(data, Dataset):
        raise UserError(
            f"data: a cifarkit.data.dataset.Dataset (e.g. from cifarkit.data.loading.load_run_data), not "
            f"{type(data).__name__}"
        )
    data.check()
    if data.val_labels is not None:
        return data
    for flag, limit, have in (
        ("--limit-train", config.limit_train, len(data.train_labels)),
        ("--limit-test", config.limit_test, len(data.test_labels)),
    ):
        if limit is not None and limit > have:  # the run is smaller than asked for: say so, not silently
            warnings.warn(f"{flag} {limit}: the data has only {have} images; using all {have}", stacklevel=2)
    # --exclude: the listed training images left out of the first limit_train (entries checked against the data)
    kept = exclude_images(data, config.exclude, config.limit_train)
    return kept.limit(test=config.limit_test).split_validation(config.val_split, config.seed)
