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
from pathlib import Path
from typing import Any

from ..config.checks import is_whole
from ..config.train_config import MACHINE_SETTINGS, TrainConfig
from ..data.dataset import Dataset, to_nfc
from ..data.loading import load_run_data, run_view
from ..errors import Diverged, Stopped, UserError
from ..models.nets import build_model, summary
from ..optim.schedule import check_schedule, planned_schedule, steps_per_epoch
from ..report.figures import plot_results, plot_schedule
from ..report.page import write_report
from ..rundir.checkpoint import load_checkpoint
from ..rundir.outputs import data_areas, refuse_inside_data
from ..rundir.run_dir import CONFIG, ENDED, LR_FIND_PLOT, MODEL_SUMMARY, REPORT, RESULTS, RunDir
from ..runtime import distributed
from ..runtime.device import resolve_device, restored_on_exit
from ..runtime.invoked import program
from .observer import Observer
from .resume import restore
from .stopping import Interrupted
from .trainer import Trainer

# What a finished run adds to its folder after the last epoch (write_ending); a resume completes what is missing.
FINAL_FILES = (RESULTS, MODEL_SUMMARY, REPORT)


def timestamped_run_path(name: str) -> Path:
    """runs/NAME-YYYYMMDD-HHMMSS: where a command's output folder goes unless told."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_checkpoint_every(steps: Any) -> None:
    """--checkpoint-every N: a whole number of steps; 0 (the default) checkpoints at the end of each epoch only."""
    if not is_whole(steps):
        raise UserError(
            f"--checkpoint-every {steps!r}: must be a whole number of steps >= 1 (0 or absent: at the "
            "end of each epoch)"
        )


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
    started = time.perf_counter()
    if not resume:
        config.validate()  # once, before any work (on resume: the checkpoint's settings, in reopen)
    # the timeout, torchrun's variables and what several processes cannot do (a resumed run's settings: the
    # Trainer's), all checked before the job is joined
    ranks = distributed.init_from_env(config.device, dist_timeout_s, None if resume else config)
    if resume:
        run, config, checkpoint = reopen(run_dir, config, writes=ranks.is_main)
        resolve_device(config.device)  # a missing GPU is reported before any data is read
        on_exit.callback(run.lock().unlock)
    else:
        resolve_device(config.device)  # ... and before any folder is made
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
    if tensorboard not in (None, False) and ranks.is_main:  # its folder is checked before the data is read, and
        from .tensorboard import TensorBoard  # before --overwrite clears anything: a refusal leaves the old run whole

        # --tensorboard DIR: one subfolder a run, named as its folder, so `tensorboard --logdir DIR` compares them
        observers.append(TensorBoard(run / "tb") if tensorboard is True else TensorBoard(tensorboard, run_dir=run.path))
        on_exit.callback(observers[-1].close)
    if not resume:
        ranks.barrier()  # every rank has looked before rank 0 clears the folder
        run.clear()
    if data is None:
        with ranks.main_first():  # one download (or decode), not one per process
            data = load_run_data(config, progress=progress and ranks.is_main)
    data = run_view(data, config)  # the range test and the trainer see the same training images
    loaded = time.perf_counter()

    per_epoch = steps_per_epoch(len(data.train_labels), config.batch_size)
    steps = config.epochs * per_epoch
    if not resume:  # what the trainer would refuse, before a range test is spent on it
        check_schedule(config, per_epoch)
    elif tuple(data.classes) != to_nfc(checkpoint["classes"]):
        raise UserError(
            f"{run.checkpoint}: the run trained on the classes "
            f"{', '.join(checkpoint['classes'][:5])}, ...; the data in "
            f"{config.data_dir or 'the default data folder'} has {', '.join(data.classes[:5])}, ...: "
            "resume with the --data-dir it started on"
        )
    elif checkpoint["scheduler"]["total_steps"] != steps:  # other data: the schedule would stop short or overrun
        raise UserError(
            f"{run.checkpoint}: the run started with a schedule of "
            f"{checkpoint['scheduler']['total_steps']} steps; the data in "
            f"{config.data_dir or 'the default data folder'} gives {steps} ({len(data.train_labels)} "
            f"training images at batch {config.batch_size}): resume with the --data-dir it started on"
        )
    # The max lr: the checkpoint's on resume (a range test's result is never redone), else found or given.
    max_lr, source = (checkpoint["max_lr"], checkpoint["max_lr_source"]) if resume else (None, "config")
    if config.max_lr == "find" and not resume:
        from .lr_finder import find_lr  # late: torch-lr-finder (and its pyplot) only on this path

        found = find_lr(config, data, run, progress=progress)
        max_lr, source = found.suggestion, "lr-find"
        if progress:
            print(
                f"LR range test: suggestion {found.suggestion:.3g} (loss minimum at {found.min_loss_lr:.3g}); "
                f"see {run / LR_FIND_PLOT}",
                file=sys.stderr,
            )

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
            if all((run / name).exists() for name in FINAL_FILES):
                raise UserError(f"--resume {run.path}: the run already finished all {config.epochs} epochs")
            results = {**trainer.results(), "run_dir": str(run.path)}
            write_ending(run, trainer, results)
            return results
        if run.writes:  # continued by hand (a pruned trial trained on to its end): no longer ended
            (run / ENDED).unlink(missing_ok=True)
        if progress:
            print(
                f"resuming {run.path} at epoch {trainer.state.epoch + 1}, step {trainer.state.step_in_epoch}",
                file=sys.stderr,
            )
    else:
        run.write_json(CONFIG, config.to_dict())
        if run.writes:
            plot_schedule(
                planned_schedule(config, trainer.max_lr, trainer.steps_per_epoch),
                trainer.steps_per_epoch,
                run.plot("lr_schedule"),
            )

    def trained():
        return sum(r["seconds"] for r in trainer.state.history) + trainer.state.train_seconds

    trained_before = trained()  # by the earlier processes of a resumed run
    try:
        results = {**trainer.fit(), "run_dir": str(run.path)}
        # where this process's seconds went up to the final number (the ending's plots and report come after);
        # set-up is the model, its whitening, the optimiser, and a --max-lr find range test
        results["timing"] = {
            "data_s": loaded - started,
            "set_up_s": built - loaded,
            "train_steps_s": trained() - trained_before,
            "evaluation_s": trainer.eval_seconds,
            "to_final_number_s": time.perf_counter() - started,
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


def write_ending(run: RunDir, trainer: Trainer, results: dict[str, Any]) -> None:
    """What a finished run adds to its folder: the plots that need the model, model.txt, results.json and
    report.html."""
    data = trainer.data
    probs = trainer.final_test_logits().softmax(1)  # once: without the last evaluation's logits, a TTA pass
    plot_results(run, data, trainer.batches.augment, probs, trainer.config.seed)
    run.write_text(MODEL_SUMMARY, summary(build_model(trainer.config.model, len(data.classes))))
    run.write_json(RESULTS, results)
    from ..report.gradcam import plot_mistakes_gradcam  # without captum: one line saying how to get it, no plot

    plot_mistakes_gradcam(run, data.test_images, data.test_labels, probs)
    write_report(run)
