"""What an audit reads and checks before any work (K fold runs would be wasted on a slip): the run, its model,
its data as it trained, the audit folder, and the fold runs' recipe."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config.train_config import TrainConfig, build_config
from ..data.dataset import Dataset
from ..data.exclude import image_names, kept_positions
from ..errors import UserError
from ..files.reader import read_json
from ..rundir.names import AUDIT_FOLDER, LOCK
from ..rundir.outputs import data_areas, refuse_inside_data
from ..rundir.run_dir import RunDir
from .folds import check_folds, fold_config

SPLITS = ("test", "train", "all")
MARKER = ".cifarkit-audit.json"  # makes a folder an audit's own: a later audit may write into it again
MARKER_FORMAT = "cifarkit audit folder"


@dataclasses.dataclass
class Audited:
    """What an audit reads before any work: the run's model, its data as it trained (the images it left out by
    --exclude or --limit-train are not audited), the splits to audit and the fold runs' recipe."""

    run: RunDir
    folder: Path
    device: torch.device
    model: torch.nn.Module
    ckpt: dict[str, Any]
    config: TrainConfig
    data: Dataset
    kept: torch.Tensor  # positions of the training images the run trained on
    train_names: list[str]
    test_names: list[str]
    splits: tuple[str, ...]
    recipe: TrainConfig | None  # the fold runs' recipe, where the training split is audited

    @functools.cached_property  # a copy of the kept images: made once
    def train_images(self) -> torch.Tensor:
        return self.data.train_images[self.kept]

    @functools.cached_property
    def train_labels(self) -> np.ndarray:
        return self.data.train_labels[self.kept].numpy()

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.data.classes)


def prepare(run_dir, split, folds, preset, out, data_dir, device, fold_overrides) -> Audited:
    """Check everything that can be checked before any work (the fold runs would be wasted) and load the run's
    model and data."""
    from ..data.loading import load_checkpoint_data
    from ..evaluate.inference import load_model
    from ..runtime.device import resolve_device

    if split not in SPLITS:
        raise UserError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    try:
        import cleanlab  # noqa: F401 (only whether it imports)
    except ImportError:
        raise UserError("the audit needs cleanlab: pip install 'cifarkit[audit]'") from None
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise UserError(f"{run.path}: no such run folder")
    if not os.path.lexists(run.checkpoint):
        raise UserError(
            f"{run.path}: no checkpoint (checkpoints/last.pt): an audit needs a trained model; train the "
            "run first, or finish it with `cifarkit train --resume`"
        )
    dev = resolve_device(device)
    model, ckpt = load_model(run.checkpoint, dev)
    config = TrainConfig.from_dict(ckpt["config"])
    folder = Path(out) if out is not None else run.path / AUDIT_FOLDER
    refuse_inside_data(folder, "--out", *data_areas(config.dataset, data_dir or config.data_dir))
    _check_folder(folder)
    data = load_checkpoint_data(ckpt, data_dir, with_train=True)  # the moved folder, other classes: refused here
    kept = kept_positions(data, config.exclude, config.limit_train)  # the images the run trained on
    splits = ("test", "train") if split == "all" else (split,)
    train_names = image_names(data, "train")  # once: an image folder's names are listed from disk
    audited = Audited(
        run,
        folder,
        dev,
        model,
        ckpt,
        config,
        data,
        kept,
        [train_names[i] for i in kept.tolist()],
        image_names(data, "test")[: len(data.test_labels)],
        splits,
        None,
    )
    if "test" in splits:
        _need_two_classes(data.test_labels.numpy(), audited.classes, "test")
    if "train" in splits:
        check_folds(folds, audited.train_labels, audited.classes)
        audited.recipe = _fold_recipe(config, ckpt, preset, fold_overrides, device)
    return audited


def _fold_recipe(
    config: TrainConfig, ckpt: dict[str, Any], preset: str | None, overrides: dict[str, Any] | None, device: str
) -> TrainConfig:
    """The fold runs' recipe: the run's own (its max lr too), or `preset` on the run's data; `overrides` on top."""
    if preset is not None:
        same_data = {k: getattr(config, k) for k in ("dataset", "labels", "image_size", "seed")}
        base = build_config(preset, overrides={**same_data, **(overrides or {})})
    else:
        base = TrainConfig.from_dict({**config.to_dict(), **(overrides or {})}) if overrides else config
    if device != "auto":  # the folds train where the audit was asked to run
        base = TrainConfig.from_dict({**base.to_dict(), "device": device})
    return fold_config(base, ckpt.get("max_lr") if preset is None else None)


def _check_folder(folder: Path) -> None:
    """Refuse an --out that is a file, or a folder of other files (not empty, not an earlier audit's)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder}: a file is in the way; choose a folder")
    if not folder.is_dir():
        return
    if os.path.lexists(folder / MARKER):
        try:
            if read_json(folder / MARKER, "cifarkit audit marker").get("format") == MARKER_FORMAT:
                return
        except (UserError, AttributeError):
            pass
    others = sorted(p.name for p in folder.iterdir() if p.name not in (LOCK, ".DS_Store"))
    if others:
        raise UserError(
            f"--out {folder}: a folder of other files ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}), not an earlier audit; choose a new or empty folder"
        )


def _need_two_classes(labels: np.ndarray, classes: tuple[str, ...], split: str) -> None:
    present = np.flatnonzero(np.bincount(labels, minlength=len(classes)))
    if len(present) < 2:
        raise UserError(
            f"the {split} images audited are all of one class "
            f"({classes[present[0]] if len(present) else '-'}); a label audit needs at least two classes"
        )
