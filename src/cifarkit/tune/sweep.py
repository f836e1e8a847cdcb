"""`cifarkit sweep`: tune TrainConfig's numbers with Optuna on the validation split (never the test set).

Each trial is a normal run folder, OUT/trial-N, trained by run.train; its objective is the final validation
accuracy. After every epoch it reports the validation accuracy to Optuna, whose pruner (the median one by
default) may stop it there. The study lives in OUT/study.db (SQLite) unless --storage names another database
(PostgreSQL: several processes or machines then work on one study); the same command continues an interrupted
sweep. `--trials N` is the study's total of trials that ended (complete, pruned, or failed by their own settings:
diverged, or refused as unschedulable), whichever worker ran them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.train_config import TrainConfig
from ..errors import Diverged, RecipeFailed, Stopped, UserError
from ..rundir.run_dir import CONFIG, ENDED, STUDY_DB, RunDir
from ..training.observer import Observer
from .outcome import ended, finish
from .params import Param, keep_to_the_studys_setup
from .storage import open_study

if TYPE_CHECKING:
    from ..data.dataset import Dataset  # torch: loaded by the sweep itself, not by importing this module


class ReportValidation(Observer):
    """An Observer that reports each epoch's validation accuracy to the trial."""

    def __init__(self, trial: Any):
        self.trial = trial

    def after_sync(self, trainer: Any, step_loss: float, lrs: list[float]) -> None:
        pass

    def after_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        import optuna

        if math.isfinite(row.get("val_acc", math.nan)) and not math.isfinite(row.get("val_loss", 0.0)):
            # the last step's update made the weights NaN after its loss was taken: every prediction is NaN, and
            # the validation accuracy (argmax of NaN: class 0) is no result
            raise Diverged(
                f"the validation loss became {row['val_loss']} after epoch {int(row['epoch'])} (lr "
                f"{row['lr']:.3g}): the weights are no longer finite; try a lower --max-lr"
            )
        if math.isfinite(row.get("val_acc", math.nan)):
            self.trial.report(row["val_acc"], int(row["epoch"]))
            # after the last epoch there is nothing left to save: the trial finishes and counts as complete
            if int(row["epoch"]) < trainer.config.epochs and self.trial.should_prune():
                raise optuna.TrialPruned(f"epoch {int(row['epoch'])}: validation accuracy {row['val_acc']:.2%}")

    def at_end(self, trainer: Any, results: dict[str, Any]) -> None:
        pass


def sweep(
    base: TrainConfig,
    params: list[Param],
    trials: int,
    out: str | Path,
    storage: str | None = None,
    study_name: str | None = None,
    prune: bool = True,
    startup_trials: int = 5,
    sampler_seed: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or continue) the sweep until the study has `trials` ended trials; returns the best trial's summary."""
    from ..data.loading import load_run_data, run_view

    check_sweep(base, params, trials, startup_trials, sampler_seed)
    try:
        import optuna
    except ImportError:
        raise UserError("a sweep needs optuna: pip install 'cifarkit[sweep]'") from None
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the sweep folder ({e.strerror or e})") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's traceback: cifarkit says it in a line
    storage = storage or f"sqlite:///{out.resolve() / STUDY_DB}"
    study = open_study(storage, study_name or out.resolve().name, prune, startup_trials, sampler_seed)
    keep_to_the_studys_setup(study, base, params)
    if sampler_seed is not None:  # a continued sweep draws on from where it stopped, not its first trials again
        study.sampler = optuna.samplers.TPESampler(seed=(sampler_seed + len(study.trials)) % 2**32)
    data = load_run_data(base, progress=progress)  # once for every trial (each shapes it: limits, validation split)
    run_view(data, base)  # a validation split larger than the data is named now, not inside the first trial

    def stop_when_done(study: Any, _trial: Any) -> None:
        if ended(study) >= trials:
            study.stop()

    if ended(study) < trials:
        study.optimize(
            lambda trial: run_trial(trial, base, params, out, data, progress), callbacks=[stop_when_done], catch=()
        )
    return finish(study, base, params, out)


def check_sweep(
    base: TrainConfig, params: list[Param], trials: int, startup_trials: int, sampler_seed: int | None
) -> None:
    """Refuse a sweep that cannot run before anything is made: no trial, no --param, a setting twice, no
    validation split (it never tunes on the test set), or a --param range with an end that is no valid value."""
    if trials < 1:
        raise UserError(f"--trials {trials}: run at least one trial")
    if not params:
        raise UserError("a sweep needs at least one --param NAME=LOW:HIGH")
    if len({p.name for p in params}) < len(params):
        raise UserError("--param: each setting may be given once")
    if not base.val_split:
        raise UserError("a sweep tunes on a validation split, never on the test set: pass --val-split N (e.g. 5000)")
    if startup_trials < 0:
        raise UserError(f"--startup-trials {startup_trials}: must be a whole number >= 0")
    if sampler_seed is not None and not 0 <= sampler_seed < 2**32:
        raise UserError(f"--sampler-seed {sampler_seed}: must be a whole number in [0, 2**32)")
    base.validate()
    for p in params:  # both ends, now: a trial that samples a bad value would fail only after the data has loaded
        for end in (p.low, p.high):
            try:
                dataclasses.replace(base, **{p.name: end}).validate()
            except UserError as e:
                raise UserError(
                    f"--param {p.name}={p.low:g}:{p.high:g}: its end {end:g} is not a valid value ({e})"
                ) from None


def run_trial(trial: Any, base: TrainConfig, params: list[Param], out: Path, data: Dataset, progress: bool) -> float:
    """The objective: train the trial's settings into OUT/trial-N; its final validation accuracy, or nan for a
    trial that failed by its own settings (diverged, refused), which Optuna records while the sweep goes on."""
    import optuna

    from ..training.run import train

    config = dataclasses.replace(base, **{p.name: p.suggest(trial) for p in params})
    run_dir = trial_folder(trial, out)
    config.validate()
    if progress:
        print(
            f"trial {trial.number}: {', '.join(f'{p.name} {trial.params[p.name]:.4g}' for p in params)}",
            file=sys.stderr,
        )
    try:
        results = train(
            config, run_dir, overwrite=True, progress=progress, data=data, observers=[ReportValidation(trial)]
        )
    except optuna.TrialPruned as e:  # the run folder says so too (`cifarkit compare` shows it)
        RunDir(run_dir).write_json(ENDED, {"reason": "pruned", "message": str(e)})
        raise
    except Stopped:  # Ctrl-C: the trial is left failed, and the sweep (not the run) is what continues
        raise Stopped(
            f"stopped during trial {trial.number} ({run_dir}); it is not counted. Continue the sweep "
            "with the same command: it runs the trials still to do"
        ) from None
    except RecipeFailed as e:
        what = "diverged" if isinstance(e, Diverged) else "refused"
        trial.set_user_attr(what, str(e))
        if progress:
            print(f"trial {trial.number}: {what} ({e})", file=sys.stderr)
        return math.nan  # Optuna records a failed trial; the sweep goes on
    return results["val_accuracy"]


def trial_folder(trial: Any, out: Path) -> Path:
    """OUT/trial-N, recorded in the trial with the worker that runs it; refused when it holds another study's run
    (trial numbers are never reused)."""
    run_dir = out / f"trial-{trial.number}"
    if (run_dir / CONFIG).exists():
        raise UserError(
            f"{run_dir}: holds a run that is not trial {trial.number} of this study (another study "
            "swept into this folder, or its study.db was replaced); sweep into another --out"
        )
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    return run_dir
