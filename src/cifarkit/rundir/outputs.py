"""Where a command's output goes: by default into the run folder of the checkpoint it is about; never onto what it
reads or a file a run or a sweep keeps (check_output), and never among the data that a command reads, where the
next run would read it as data or it would replace a data file."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from .names import BEST_CONFIG, CHECKPOINT, CONFIG, LOCK, RUN_FILES, STUDY_DB, SWEEP_FILES, WEIGHT_SUFFIXES
from .run_dir import RunDir, run_of


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


def default_output(checkpoint: str | os.PathLike, name: str) -> Path:
    """Where a command's output about a checkpoint goes unless told: into its run folder (named as the folder or as
    RUN_DIR/checkpoints/last.pt, so --overwrite clears it), else beside a loose checkpoint file as STEM.NAME."""
    path = Path(checkpoint)
    if path.is_dir():
        return path / name
    real = path.resolve()  # `evaluate last.pt` from inside RUN_DIR/checkpoints too
    run = run_of(real)
    if real.parts[-2:] == tuple(CHECKPOINT.split("/")) and (run / CONFIG).is_file():
        return run / name
    return path.with_name(f"{path.stem}.{name}")


def check_output(output: str | os.PathLike, *inputs: str | os.PathLike) -> Path:
    """`output`, unless it is one of the `inputs`, a file of a run folder that a run writes (a command's own
    results, such as evaluate-*.json, may sit beside the run) or a sweep's own file: outputs never land on what
    they read or on what another command keeps."""
    path = Path(output)
    target = path.resolve()
    for given in inputs:
        source = Path(given)
        if source.is_dir():
            source = RunDir(source).checkpoint
        if source.exists() and target == source.resolve():
            raise UserError(f"{output}: that is the input {given}; write the output elsewhere")
    for folder in list(target.parents)[:2]:  # RUN_DIR/x or RUN_DIR/checkpoints/x, plots/x
        if (folder / CONFIG).is_file() and str(target.relative_to(folder)) in (*RUN_FILES, LOCK):
            raise UserError(f"{output}: a file of the run in {folder}; write the output elsewhere")
    written = target if target.is_dir() else target.parent  # a folder output (export --app) writes inside itself
    if written.is_dir() and not os.access(written, os.W_OK):  # found now, not after the work
        raise UserError(f"{output}: its folder cannot be written (read-only?); write the output elsewhere")
    if target.suffix.lower() in WEIGHT_SUFFIXES and target.is_file():
        raise UserError(f"{output}: an existing model file ({target.suffix}); write the output elsewhere")
    sweep = target.parent
    if target.name in SWEEP_FILES and any((sweep / name).is_file() for name in (STUDY_DB, BEST_CONFIG)):
        raise UserError(f"{output}: a file of the sweep in {sweep}; write the output elsewhere")
    return path
