"""The folder a run trains into: a new one claimed (named, locked, refused when it holds something else), or an
existing run's reopened to resume it with the settings of its checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from ..config.train_config import MACHINE_SETTINGS, TrainConfig
from ..errors import UserError
from ..rundir.checkpoint import load_checkpoint
from ..rundir.outputs import data_areas, refuse_inside_data
from ..rundir.run_dir import CONFIG, RunDir
from ..runtime import distributed


def timestamped_run_path(name: str) -> Path:
    """runs/NAME-YYYYMMDD-HHMMSS: where a command's output folder goes unless told."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def new_run_dir(config: TrainConfig) -> Path:
    """runs/PRESET-TIMESTAMP, made now (with -2, -3, ... when that name is taken), so no two runs share it."""
    base = timestamped_run_path(config.preset)
    for attempt in range(1, 1000):
        path = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise UserError(f"{path}: cannot create the run folder ({e.strerror or e}); pass --out DIR") from None
    raise UserError(f"{base}: 999 runs started this second already; pass --out DIR")


def claim_new_run(
    config: TrainConfig,
    run_dir: str | os.PathLike | None,
    ranks: distributed.Distributed,
    on_exit: contextlib.ExitStack,
    overwrite: bool,
) -> RunDir:
    """The locked folder of a new run (runs/PRESET-TIMESTAMP when none is given), unlocked on exit.

    Refused before anything is written: a folder inside the data (its plots would become training images), a
    folder of other files, a finished or started run unless `overwrite`. A folder made here and left without
    a file is removed again, so a run that fails early leaves nothing behind.
    """
    # never among the data it reads: its plots in a class folder would be the next run's training images
    refuse_inside_data(run_dir or "runs", "--out", *data_areas(config.dataset, config.data_dir))
    made = run_dir is None or not Path(run_dir).exists()
    if run_dir is None:
        run_dir = ranks.broadcast(str(new_run_dir(config)) if ranks.is_main else "")
    others = RunDir(run_dir).foreign_files()
    if others:  # the data folder, a folder of images: a run never mixes its files into them
        raise UserError(
            f"--out {run_dir}: a folder of other files ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}), not a run; choose a new or empty folder"
        )
    run = RunDir(run_dir, writes=ranks.is_main).lock()  # a second process writing this folder is refused
    on_exit.callback(run.unlock)
    if made:  # a run that fails before its first file leaves no empty folder behind
        on_exit.callback(run.discard_if_unused)
    existing = run.existing()
    if existing and not overwrite:
        raise UserError(
            f"--out {run.path}: already holds a run ({', '.join(existing)}); pass --resume "
            f"{run.path} to continue it, --overwrite to replace it, or choose another --out"
        )
    return run


def reopen(
    run_dir: str | os.PathLike | None, given: TrainConfig, writes: bool = True
) -> tuple[RunDir, TrainConfig, dict[str, Any]]:
    """The run folder to resume, its settings and its checkpoint; `writes`: this process writes the folder (under
    torchrun, rank 0 alone: the others never take its lock, not even to look).

    As nanoGPT does, everything that shapes the result is the checkpoint's (its config here, its max lr in
    train()); `given` supplies only the MACHINE_SETTINGS. A config.json that disagrees is refused.
    """
    if run_dir is None:
        raise UserError("--resume needs the run folder to continue")
    run = RunDir(run_dir, writes=writes)
    if not os.path.lexists(run / CONFIG):
        raise UserError(f"--resume {run.path}: no config.json there; is this a cifarkit run folder?")
    if not os.path.lexists(run.checkpoint):
        run.lock().unlock()  # a run still before its first checkpoint is named as running, not as one to restart
        raise UserError(
            f"--resume {run.path}: no checkpoint yet (checkpoints/last.pt); start the run again with --overwrite"
        )
    checkpoint = load_checkpoint(run.checkpoint)  # refuses a hostile file (or its config) before any work
    saved = TrainConfig.from_dict(checkpoint["config"], source=f"{run.checkpoint}: its config")
    written = TrainConfig.from_json(run / CONFIG)
    differ = [
        f"{name} {getattr(written, name)!r} (checkpoint: {getattr(saved, name)!r})"
        for name in saved.to_dict()
        if name not in MACHINE_SETTINGS and getattr(written, name) != getattr(saved, name)
    ]
    if differ:
        raise UserError(
            f"--resume {run.path}: config.json disagrees with the checkpoint it belongs to: "
            f"{', '.join(differ)}. A run continues with the settings it was trained with; restore "
            "config.json, or start a new run (--config FILE --out NEW_DIR) to change them"
        )
    for name in MACHINE_SETTINGS:  # what the caller gives (a --no-compile too), else what the run had
        setattr(saved, name, getattr(saved, name) if getattr(given, name) is None else getattr(given, name))
    return run, saved.validate(), checkpoint
