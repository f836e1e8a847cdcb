"""One training run, top to bottom: claim (or reopen) its folder, settle the max lr, train, write the ending.

train(config, run_dir)              a new run (an existing run in run_dir is refused unless overwrite)
train(config, run_dir, resume=True) the run in run_dir continues from its checkpoint
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..config.checks import is_whole
from ..config.train_config import MACHINE_SETTINGS, TrainConfig
from ..data.dataset import Dataset, to_nfc
from ..data.loading import load_run_data, run_view
from ..errors import Diverged, Stopped, UserError
from ..optim.schedule import check_schedule, planned_schedule, steps_per_epoch
from ..report.figures import plot_schedule
from ..rundir.run_dir import CONFIG, ENDED, LR_FIND_PLOT, RunDir
from ..runtime import distributed
from ..runtime.device import resolve_device, restored_on_exit
from ..runtime.invoked import program
from .ending import complete_ending, write_ending
from .observer import Observer
from .resume import restore
from .run_folder import claim_new_run, reopen
from .stopping import Interrupted
from .trainer import Trainer


def check_checkpoint_every(steps: Any) -> None:
    """--checkpoint-every N: a whole number of steps; 0 (the default) checkpoints at the end of each epoch only."""
    if not is_whole(steps):
        raise UserError(
            f"--checkpoint-every {steps!r}: must be a whole number of steps >= 1 (0 or absent: at the "
            "end of each epoch)"
        )


def train(
    config: TrainConfig | None,
    run_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    checkpoint_every: int = 0,
    data: Dataset | None = None,
    dist_timeout_s: float = distributed.DEFAULT_TIMEOUT_S,
    tensorboard: str | os.PathLike | bool | None = None,
    observers: Sequence[Observer] = (),
) -> dict[str, Any]:
    """Train `config` into `run_dir` and return the results (also written to RUN_DIR/results.json).

    tensorboard: True for TensorBoard event files in RUN_DIR/tb, or a folder DIR of many runs (this one in
    DIR/RUN_NAME), written by rank 0; observers:
    more Observers (observer.py; called by the Trainer at its sync points, after each epoch, at the end).

    resume=True continues the run in `run_dir` from its last checkpoint, with the settings saved in it
    (`config` then supplies only the machine settings: data_dir, threads, compile; a None keeps the run's, and
    config=None keeps them all). Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 alone prints
    and writes files. The caller's torch thread count and random state are as they were when it returns.
    """
    if resume and config is None:
        config = TrainConfig(**dict.fromkeys(MACHINE_SETTINGS))
    if not isinstance(config, TrainConfig):
        raise UserError(
            f"config: a cifarkit.TrainConfig (e.g. preset_config('s10', epochs=2)), not {type(config).__name__}"
        )
    check_checkpoint_every(checkpoint_every)
    # the caller's threads and random state, the folder's lock and a TensorBoard writer, given back however the
    # run ends (the writer first: last in)
    with restored_on_exit() as on_exit:
        return _train(
            config,
            run_dir,
            on_exit,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            checkpoint_every=checkpoint_every,
            data=data,
            dist_timeout_s=dist_timeout_s,
            tensorboard=tensorboard,
            observers=list(observers),
        )


def _train(
    config: TrainConfig,
    run_dir: str | os.PathLike | None,
    on_exit: contextlib.ExitStack,
    *,
    resume: bool,
    overwrite: bool,
    progress: bool,
    checkpoint_every: int,
    data: Dataset | None,
    dist_timeout_s: float,
    tensorboard: str | os.PathLike | bool | None,
    observers: list[Any],
) -> dict[str, Any]:
    """train() with the caller's state guarded: folder, data, max lr, Trainer, the epochs, the ending."""
    started = time.perf_counter()
    if not resume:
        config.validate()  # once, before any work (on resume: the checkpoint's settings, in reopen)
    # the timeout, torchrun's variables and what several processes cannot do (a resumed run's settings: the
    # Trainer's), all checked before the job is joined
    ranks = distributed.init_from_env(config.device, dist_timeout_s, None if resume else config)
    run, config, checkpoint = _open_run(config, run_dir, ranks, on_exit, resume=resume, overwrite=overwrite)
    # TensorBoard's folder is checked before the data is read, and before --overwrite clears anything: a refusal
    # leaves the old run whole
    if tensorboard not in (None, False) and ranks.is_main:
        observers.append(open_tensorboard(run, tensorboard, on_exit))
    if not resume:
        ranks.barrier()  # every rank has looked before rank 0 clears the folder
        run.clear()
    data = _run_data(config, data, ranks, progress)
    loaded = time.perf_counter()
    _check_schedule(run, config, data, checkpoint)
    max_lr, source = _max_lr(run, config, data, checkpoint, progress)
    trainer = Trainer(
        config,
        run,
        data=data,
        max_lr=max_lr,
        max_lr_source=source,
        progress=progress,
        checkpoint_every=checkpoint_every,
        observers=observers,
    )
    built = time.perf_counter()
    if resume:
        restore(trainer, checkpoint)
        if trainer.state.epoch >= config.epochs:  # trained to the end: what is left is the ending, if anything
            return complete_ending(run, trainer)
        _announce_resume(run, trainer, progress)
    else:
        _write_start(run, trainer)
    return _fit(run, trainer, {"started": started, "loaded": loaded, "built": built})


def _open_run(
    config: TrainConfig,
    run_dir: str | os.PathLike | None,
    ranks: distributed.Distributed,
    on_exit: contextlib.ExitStack,
    *,
    resume: bool,
    overwrite: bool,
) -> tuple[RunDir, TrainConfig, dict[str, Any] | None]:
    """The run's locked folder, its settings and its checkpoint (None for a new run), each checked before any
    data is read; the lock is given back on exit."""
    if resume:
        run, config, checkpoint = reopen(run_dir, config, writes=ranks.is_main)
        resolve_device(config.device)  # a missing GPU is reported before any data is read
        on_exit.callback(run.lock().unlock)
        return run, config, checkpoint
    resolve_device(config.device)  # ... and before any folder is made
    return claim_new_run(config, run_dir, ranks, on_exit, overwrite), config, None


def open_tensorboard(run: RunDir, tensorboard: str | os.PathLike | bool, on_exit: contextlib.ExitStack) -> Observer:
    """The TensorBoard observer of --tensorboard (closed on exit): RUN_DIR/tb for True, else DIR/RUN_NAME, one
    subfolder a run named as its folder, so `tensorboard --logdir DIR` compares them."""
    from .tensorboard import TensorBoard  # late: the tensorboard package is needed on this path only

    observer = TensorBoard(run / "tb") if tensorboard is True else TensorBoard(tensorboard, run_dir=run.path)
    on_exit.callback(observer.close)
    return observer


def _run_data(config: TrainConfig, data: Dataset | None, ranks: distributed.Distributed, progress: bool) -> Dataset:
    """The run's view of its data (limits, validation split, exclude list), loaded unless the caller gave it."""
    if data is None:
        with ranks.main_first():  # one download (or decode), not one per process
            data = load_run_data(config, progress=progress and ranks.is_main)
    return run_view(data, config)  # the range test and the trainer see the same training images


def _check_schedule(run: RunDir, config: TrainConfig, data: Dataset, checkpoint: dict[str, Any] | None) -> None:
    """What the trainer would refuse, before a range test is spent on it; on resume, data that is not the run's
    (other classes, another number of steps: the schedule would stop short or overrun)."""
    per_epoch = steps_per_epoch(len(data.train_labels), config.batch_size)
    steps = config.epochs * per_epoch
    if checkpoint is None:
        check_schedule(config, per_epoch)
    elif tuple(data.classes) != to_nfc(checkpoint["classes"]):
        raise UserError(
            f"{run.checkpoint}: the run trained on the classes "
            f"{', '.join(checkpoint['classes'][:5])}, ...; the data in "
            f"{config.data_dir or 'the default data folder'} has {', '.join(data.classes[:5])}, ...: "
            "resume with the --data-dir it started on"
        )
    elif checkpoint["scheduler"]["total_steps"] != steps:
        raise UserError(
            f"{run.checkpoint}: the run started with a schedule of "
            f"{checkpoint['scheduler']['total_steps']} steps; the data in "
            f"{config.data_dir or 'the default data folder'} gives {steps} ({len(data.train_labels)} "
            f"training images at batch {config.batch_size}): resume with the --data-dir it started on"
        )


def _max_lr(
    run: RunDir, config: TrainConfig, data: Dataset, checkpoint: dict[str, Any] | None, progress: bool
) -> tuple[float | None, str]:
    """The max lr and where it came from: the checkpoint's on resume (a range test's result is never redone),
    else a range test's with --max-lr find, else the config's (None: the Trainer reads it)."""
    if checkpoint is not None:
        return checkpoint["max_lr"], checkpoint["max_lr_source"]
    if config.max_lr != "find":
        return None, "config"
    from .lr_finder import find_lr  # late: torch-lr-finder (and its pyplot) only on this path

    found = find_lr(config, data, run, progress=progress)
    if progress:
        print(
            f"LR range test: suggestion {found.suggestion:.3g} (loss minimum at {found.min_loss_lr:.3g}); "
            f"see {run / LR_FIND_PLOT}",
            file=sys.stderr,
        )
    return found.suggestion, "lr-find"


def _announce_resume(run: RunDir, trainer: Trainer, progress: bool) -> None:
    """A resumed run is running again: no longer marked as ended (a pruned trial trained on to its end by hand)."""
    if run.writes:
        (run / ENDED).unlink(missing_ok=True)
    if progress:
        print(
            f"resuming {run.path} at epoch {trainer.state.epoch + 1}, step {trainer.state.step_in_epoch}",
            file=sys.stderr,
        )


def _write_start(run: RunDir, trainer: Trainer) -> None:
    """What a new run writes before its first step: config.json (to rerun it) and the planned lr schedule."""
    run.write_json(CONFIG, trainer.config.to_dict())
    if run.writes:
        plot_schedule(
            planned_schedule(trainer.config, trainer.max_lr, trainer.steps_per_epoch),
            trainer.steps_per_epoch,
            run.plot("lr_schedule"),
        )


def _fit(run: RunDir, trainer: Trainer, clock: dict[str, float]) -> dict[str, Any]:
    """Train the remaining epochs and write the ending; the results carry where this process's seconds went.

    A diverged run is marked as ended (ended.json says why); a stopped one says how to continue it."""

    def trained():
        return sum(r["seconds"] for r in trainer.state.history) + trainer.state.train_seconds

    trained_before = trained()  # by the earlier processes of a resumed run
    try:
        results = {**trainer.fit(), "run_dir": str(run.path)}
        # where this process's seconds went up to the final number (the ending's plots and report come after);
        # set-up is the model, its whitening, the optimiser, and a --max-lr find range test
        results["timing"] = {
            "data_s": clock["loaded"] - clock["started"],
            "set_up_s": clock["built"] - clock["loaded"],
            "train_steps_s": trained() - trained_before,
            "evaluation_s": trainer.eval_seconds,
            "to_final_number_s": time.perf_counter() - clock["started"],
        }
    except Diverged as e:
        run.write_json(ENDED, {"reason": "diverged", "message": str(e)})
        raise
    except Interrupted as e:
        raise Stopped(
            f"stopped by {e}; checkpoint saved. Continue with: {program()} train --resume {run.path} "
            f"(in Python: train(None, {str(run.path)!r}, resume=True))"
        ) from None
    if run.writes:
        write_ending(run, trainer, results)
    return results
