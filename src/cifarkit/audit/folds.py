"""K-fold cross-validation for out-of-sample probabilities of the training images: each fold a cifarkit run
folder (AUDIT/fold-K) trained by train() on the other folds, so an interrupted audit continues where it stopped:
a finished fold is reused, an unfinished one resumed from its checkpoint, as `train --resume` does."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..config.train_config import TrainConfig
from ..data.dataset import Dataset
from ..errors import UserError
from ..files.atomic import write_json
from ..files.reader import read_json
from ..rundir.run_dir import CHECKPOINT, CONFIG, RESULTS
from ..runtime.progress import say

FOLDS_FILE = "folds.json"  # what the folds were made of: a later audit into the folder must match it


def check_folds(k: object, labels: np.ndarray, classes: tuple[str, ...]) -> int:
    """K, refused unless it is a whole number from 2 to the image count of the smallest class present."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise UserError(f"--folds {k!r}: must be a whole number >= 2 (each fold's model trains on the others)")
    counts = np.bincount(labels, minlength=len(classes))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise UserError(
            f"the training images audited are all of one class ({classes[present[0]] if len(present) else '-'}); "
            "a label audit needs at least two classes"
        )
    smallest = int(present[np.argmin(counts[present])])
    if k > counts[smallest]:
        raise UserError(
            f"--folds {k}: more than the {counts[smallest]} training images of class "
            f"{classes[smallest]!r}, so some fold would hold none of them; use --folds "
            f"{max(2, int(counts[smallest]))} or fewer"
        )
    return k


def assign_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each image: stratified (each class dealt round the folds in a random order chosen by
    `seed`), so every fold holds every class in its share."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator).numpy()
    fold = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = order[labels[order] == c]
        fold[members] = np.arange(len(members)) % k
    return fold


def fold_config(base: TrainConfig, found_max_lr: float | None) -> TrainConfig:
    """The recipe each fold trains: `base` on the fold's images as given (no limit, exclusion or validation
    split of its own: the audit shaped the data already); a range test's result is reused, not redone per fold."""
    changes = {"limit_train": None, "limit_test": None, "val_split": 0, "exclude": None}
    if base.max_lr == "find" and found_max_lr is not None:
        changes["max_lr"] = float(found_max_lr)
    return dataclasses.replace(base, **changes).validate()


def fold_view(data: Dataset, fold: np.ndarray, k: int) -> Dataset:
    """A Dataset whose training images are those outside fold `k` and whose test images are fold `k`'s."""
    held = torch.from_numpy(fold == k).to(data.train_images.device)
    return dataclasses.replace(
        data,
        train_images=data.train_images[~held],
        train_labels=data.train_labels[~held],
        test_images=data.train_images[held],
        test_labels=data.train_labels[held],
        val_images=None,
        val_labels=None,
    )


def record_folds(folder: Path, settings: dict) -> None:
    """Write the folds' settings into the audit folder, or refuse where an earlier audit there made other folds
    (its fold runs would not be these)."""
    path = folder / FOLDS_FILE
    if os.path.lexists(path):
        earlier = read_json(path, "cifarkit audit folds.json")
        if earlier != settings:
            differ = ", ".join(
                f"{name} {earlier.get(name)!r} (now {value!r})"
                for name, value in settings.items()
                if earlier.get(name) != value
            )
            raise UserError(
                f"{folder}: holds the fold runs of an earlier audit made otherwise: {differ}; audit with "
                "the same settings to continue it, or choose another --out"
            )
        return
    write_json(path, settings)


def train_folds(
    config: TrainConfig, data: Dataset, fold: np.ndarray, k: int, folder: Path, progress: bool = True
) -> list[Path]:
    """Train (or reuse, or resume) the run folder of each fold; their checkpoints, in fold order. One line per
    fold says what happened."""
    from ..training.run import train

    checkpoints = []
    for i in range(k):
        run_dir = folder / f"fold-{i + 1}"
        view = fold_view(data, fold, i)
        started = time.perf_counter()
        if os.path.lexists(run_dir / RESULTS):
            state, results = "reused", read_json(run_dir / RESULTS, "cifarkit results.json")
            _same_recipe(run_dir, config)
        elif os.path.lexists(run_dir / CHECKPOINT):
            _same_recipe(run_dir, config)
            state, results = "resumed", train(None, run_dir, resume=True, data=view, progress=progress)
        else:  # new, or cut off before its first checkpoint: started (again)
            if os.path.lexists(run_dir / CONFIG):
                _same_recipe(run_dir, config)
            state, results = "trained", train(config, run_dir, overwrite=True, data=view, progress=progress)
        if progress:
            accuracy = results.get("test_accuracy")
            shown = f"{accuracy:.2%}" if isinstance(accuracy, (int, float)) else "-"
            say(
                f"fold {i + 1}/{k}: {state}; {len(view.train_labels)} images trained, {len(view.test_labels)} held "
                f"out, held-out accuracy {shown} ({time.perf_counter() - started:.0f}s) -> {run_dir}"
            )
        checkpoints.append(run_dir / CHECKPOINT)
    return checkpoints


def _same_recipe(run_dir: Path, config: TrainConfig) -> None:
    from ..training.run import MACHINE_SETTINGS

    saved = TrainConfig.from_json(run_dir / CONFIG)
    differ = [
        name
        for name in config.to_dict()
        if name not in (*MACHINE_SETTINGS, "device") and getattr(saved, name) != getattr(config, name)
    ]
    if differ:
        raise UserError(
            f"{run_dir}: a fold run of an earlier audit with another recipe ({', '.join(differ[:5])} "
            "differ); audit with the same --preset to continue it, or choose another --out"
        )
