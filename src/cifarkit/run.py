"""One training run and its folder: create (or refuse to clobber), resume, train, write results."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from . import distributed
from .config import TrainConfig
from .data import CIFAR10, load_cifar10
from .engine import Interrupted, Trainer, load_checkpoint, resolve_device
from .errors import UserError
from .report import PLOTS, plot_schedule, write_report
from .schedule import planned_schedule

# What a run folder holds; --overwrite removes exactly these before starting again.
RUN_FILES = ("config.json", "metrics.csv", "results.json", "checkpoints/last.pt", "lr_find.json", "model.txt",
             "report.html", *(name for name, _ in PLOTS))


def default_run_dir(config: TrainConfig) -> Path:
    return Path("runs") / f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(config: TrainConfig, run_dir: str | os.PathLike | None = None, *, resume: bool = False,
          overwrite: bool = False, progress: bool = True, checkpoint_every: int = 0,
          data: CIFAR10 | None = None, dist_timeout_s: float = distributed.DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Train `config` into `run_dir` and return the results (also written to RUN_DIR/results.json).

    resume=True continues the run in `run_dir` from its last checkpoint, with the settings saved in it
    (`config` then supplies only data_dir and threads).
    Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 alone prints and writes files.
    """
    ranks = distributed.init_from_env(config.device, dist_timeout_s)
    if resume:
        if run_dir is None:
            raise UserError("--resume needs the run folder to continue")
        run_dir = Path(run_dir)
        if not (run_dir / "config.json").exists():
            raise UserError(f"--resume {run_dir}: no config.json there; is this a cifarkit run folder?")
        if not (run_dir / "checkpoints" / "last.pt").exists():
            raise UserError(f"--resume {run_dir}: no checkpoint yet (checkpoints/last.pt); start the run again "
                            "with --overwrite")
        checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # refuses a hostile file before any work
        # As nanoGPT does: everything that shapes the result is the checkpoint's (its config, and below its
        # max lr, which a range test may have found); only where the data lives and the thread count may
        # differ between machines.
        saved = TrainConfig.from_dict(checkpoint["config"], source=f"{run_dir / 'checkpoints' / 'last.pt'} config")
        written = TrainConfig.from_json(run_dir / "config.json")
        differ = [f"{name} {getattr(written, name)!r} (checkpoint: {getattr(saved, name)!r})"
                  for name in saved.to_dict() if name not in ("data_dir", "threads")
                  and getattr(written, name) != getattr(saved, name)]
        if differ:
            raise UserError(f"--resume {run_dir}: config.json disagrees with the checkpoint it belongs to: "
                            f"{', '.join(differ)}. A run continues with the settings it was trained with; restore "
                            "config.json, or start a new run (--config FILE --out NEW_DIR) to change them")
        saved.data_dir = config.data_dir or saved.data_dir
        saved.threads = config.threads or saved.threads
        config = saved
    else:
        run_dir = Path(run_dir) if run_dir is not None else Path(ranks.broadcast(str(default_run_dir(config))))
        existing = [name for name in RUN_FILES if (run_dir / name).exists()]
        if existing and not overwrite:
            raise UserError(f"--out {run_dir}: already holds a run ({', '.join(existing)}); pass --resume {run_dir} "
                            "to continue it, --overwrite to replace it, or choose another --out")
        ranks.barrier()  # every rank has looked before rank 0 clears the folder
        if ranks.is_main:
            for name in existing:
                (run_dir / name).unlink()
    config.validate()
    resolve_device(config.device)  # a missing GPU is reported before any data is read
    if config.max_lr == "find" and ranks.enabled and not resume:
        raise UserError("--max-lr find under torchrun: run `cifarkit lr-find` in one process first, then pass "
                        "its suggestion as --max-lr")
    if data is None:
        with ranks.main_first():  # one download, not one per process
            data = load_cifar10(config.data_dir)
    data = data.limit(config.limit_train, config.limit_test)
    max_lr, source = (checkpoint["max_lr"], checkpoint["max_lr_source"]) if resume else (None, "config")
    if config.max_lr == "find" and not resume:
        from .lr_finder import find_lr  # late: torch-lr-finder imports pyplot, needed by this path only

        run_dir.mkdir(parents=True, exist_ok=True)
        found = find_lr(config, data, run_dir, progress=progress)
        max_lr, source = found.suggestion, "lr-find"
        if progress:
            print(f"LR range test: suggestion {found.suggestion:.3g} (loss minimum at {found.min_loss_lr:.3g}); "
                  f"see {run_dir / 'lr_find.png'}", file=sys.stderr)
    trainer = Trainer(config, run_dir, data=data, max_lr=max_lr, max_lr_source=source, progress=progress,
                      checkpoint_every=checkpoint_every)
    if resume:
        trainer.restore(checkpoint)
        if trainer.state.epoch >= config.epochs:
            raise UserError(f"--resume {run_dir}: the run already finished all {config.epochs} epochs")
        if progress:
            print(f"resuming {run_dir} at epoch {trainer.state.epoch + 1}, step {trainer.state.step_in_epoch}",
                  file=sys.stderr)
    elif ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        trainer.write_config()
        plot_schedule(planned_schedule(config, trainer.max_lr, trainer.steps_per_epoch), trainer.steps_per_epoch,
                      run_dir / "plots" / "lr_schedule.png")
    try:
        results = trainer.fit()
    except Interrupted as e:
        raise UserError(f"stopped by {e}; checkpoint saved. Continue with: cifarkit train --resume {run_dir}") from None
    if ranks.is_main:
        write_report(run_dir)
    return results
