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
import io
import json
import math
import os
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.train_config import SETTINGS, TrainConfig
from ..errors import Diverged, RecipeFailed, Stopped, UserError
from ..rundir.run_dir import BEST_CONFIG, CONFIG, ENDED, STUDY_DB, SWEEP_PLOTS, RunDir
from ..training.observer import Observer
from .storage import open_study

# TrainConfig's numbers a sweep may tune (the validation split defines the objective, so it is not one of them)
TUNABLE = (
    "max_lr",
    *(
        n
        for n, s in SETTINGS.items()
        if s.type in (int, float) and s.type is not bool and not s.machine and n != "val_split"
    ),
)


@dataclass(frozen=True)
class Param:
    name: str
    low: float
    high: float
    log: bool
    integer: bool

    def suggest(self, trial: Any) -> float | int:
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def parse_param(text: str) -> Param:
    """NAME=LOW:HIGH (uniform) or NAME=log:LOW:HIGH (log-uniform); whole numbers for integer settings."""
    name, sep, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    if name not in TUNABLE:
        raise UserError(
            f"--param {text}: unknown setting {name!r}; the numbers a sweep can tune are {', '.join(TUNABLE)}"
        )
    parts = spec.split(":")
    log = parts[0] == "log"
    if log:
        parts = parts[1:]
    integer = name != "max_lr" and SETTINGS[name].type is int
    try:
        if not sep or len(parts) != 2:
            raise ValueError
        low, high = (int(p) if integer else float(p) for p in parts)
    except ValueError:
        kind = "whole numbers" if integer else "numbers"
        raise UserError(
            f"--param {text}: expected {name}=LOW:HIGH or {name}=log:LOW:HIGH with {kind}, e.g. "
            f"{name}={'1:8' if integer else '0.1:0.5'}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise UserError(f"--param {text}: the low end must be below the high end")
    if log and low <= 0:
        raise UserError(f"--param {text}: a log range needs positive bounds")
    return Param(name, low, high, log, integer)


def keep_to_the_studys_setup(study: Any, base: TrainConfig, params: list[Param]) -> None:
    """Record the settings and ranges a study sweeps the first time it runs, and refuse a later run that differs:
    its trials would mix two setups, and best_config.json would hold a setting no trial ran. Where each worker
    computes (the data folder, threads, --compile) may differ."""
    from ..config.train_config import MACHINE_SETTINGS

    setup = {
        "settings": {k: v for k, v in base.to_dict().items() if k not in MACHINE_SETTINGS},
        "params": [dataclasses.asdict(p) for p in params],
    }
    setup = json.loads(json.dumps(setup))  # as the study stores it
    recorded = study.user_attrs.get("setup")
    if recorded is None:
        study.set_user_attr("setup", setup)
        return
    differ = [
        f"{k} {setup['settings'].get(k)!r} (the study's: {v!r})"
        for k, v in recorded["settings"].items()
        if setup["settings"].get(k) != v
    ]
    if recorded["params"] != setup["params"]:
        differ.append(
            "--param "
            + " ".join(_param_text(p) for p in setup["params"])
            + " (the study's: "
            + " ".join(_param_text(p) for p in recorded["params"])
            + ")"
        )
    if differ:
        raise UserError(
            f"study {study.study_name!r} was started with other settings: {'; '.join(differ)}. Continue it "
            "with its own command, or sweep into another --out (or --study NAME)"
        )


def _param_text(p: dict[str, Any]) -> str:
    return f"{p['name']}={'log:' if p['log'] else ''}{p['low']:g}:{p['high']:g}"


def ended(study: Any) -> int:
    """Trials that count towards --trials: complete, pruned, or failed by their own settings (an interrupted one
    does not)."""
    counts = trial_counts(study)
    return counts["complete"] + counts["pruned"] + counts["diverged"] + counts["refused"]


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
    from ..training.run import train

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

    def objective(trial: Any) -> float:
        config = dataclasses.replace(base, **{p.name: p.suggest(trial) for p in params})
        run_dir = out / f"trial-{trial.number}"
        if (run_dir / CONFIG).exists():  # trial numbers are never reused: this is another study's run
            raise UserError(
                f"{run_dir}: holds a run that is not trial {trial.number} of this study (another study "
                "swept into this folder, or its study.db was replaced); sweep into another --out"
            )
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
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

    def stop_when_done(study: Any, _trial: Any) -> None:
        if ended(study) >= trials:
            study.stop()

    if ended(study) < trials:
        study.optimize(objective, callbacks=[stop_when_done], catch=())
    return finish(study, base, params, out)


def finish(study: Any, base: TrainConfig, params: list[Param], out: Path) -> dict[str, Any]:
    """best_config.json, the history and importance plots, and the summary of the best trial."""
    from ..files.atomic import write_json

    counts = trial_counts(study)
    if not counts["complete"]:
        raise UserError(
            f"{out}: no trial of the study has finished: {why_none_finished(study, counts)}; no "
            f"{BEST_CONFIG} was written"
        )
    best = study.best_trial
    config = dataclasses.replace(base, **{p.name: best.params[p.name] for p in params if p.name in best.params})
    write_json(out / BEST_CONFIG, config.to_dict())
    plots = write_plots(study, out)
    return {
        "best_value": best.value,
        "best_params": best.params,
        "best_trial": best.number,
        "best_run_dir": best.user_attrs.get("run_dir"),
        "best_config": str(out / BEST_CONFIG),
        "trials": counts,
        "plots": plots,
    }


def trial_counts(study: Any) -> dict[str, int]:
    """The study's trials by how they ended, a failed one by its cause (its own settings, or an interruption)."""
    from optuna.trial import TrialState

    counts = dict.fromkeys(("complete", "pruned", "diverged", "refused", "failed", "running"), 0)
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.FAIL:
            counts[next((why for why in ("diverged", "refused") if why in t.user_attrs), "failed")] += 1
        elif t.state.name.lower() in counts:
            counts[t.state.name.lower()] += 1
    return counts


def why_none_finished(study: Any, counts: dict[str, int]) -> str:
    """How the trials ended, e.g. 'all 3 trials diverged (trial 2: the loss became nan at epoch 2, step 1 (lr
    1.49e+06)); lower ...': each cause with its latest trial's reason, and what to change."""
    trials = study.get_trials(deepcopy=False)
    reasons = {
        why: next(
            (
                f" (trial {t.number}: {t.user_attrs[why].split(';')[0]})"
                for t in reversed(trials)
                if why in t.user_attrs
            ),
            "",
        )
        for why in ("diverged", "refused")
    }
    named = {"failed": "stopped or crashed", "running": "still running in another worker"}
    advice = {
        "diverged": "lower the --param ranges that made the loss diverge (e.g. max_lr's high end)",
        "refused": "change the settings the refusal names",
        "pruned": "pass --no-prune or more --startup-trials",
        "failed": "run the same command again to run them anew",
        "running": "wait for the other workers",
    }
    causes = [why for why, n in counts.items() if n]
    if not causes:
        return "the study holds no trial; run the sweep again"
    said = [f"{named.get(why, why)}{reasons.get(why, '')}" for why in causes]
    if len(causes) == 1:
        n = counts[causes[0]]
        text = f"{'all ' + str(n) + ' trials' if n > 1 else 'its only trial'} {said[0]}"
    else:
        text = ", ".join(f"{counts[why]} {what}" for why, what in zip(causes, said))
    return text + "; " + "; ".join(advice[why] for why in causes)


def write_plots(study: Any, out: Path) -> list[str]:
    """Optuna's optimisation history and parameter importances as PNG (pyplot figures, closed after saving)."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    from ..files.atomic import write_bytes

    written = []
    for name, draw in zip(SWEEP_PLOTS, (ovm.plot_optimization_history, ovm.plot_param_importances)):
        try:
            with warnings.catch_warnings(), plt.rc_context():  # optuna's plt.style.use("ggplot") ends here
                warnings.simplefilter("ignore")  # ExperimentalWarning
                ax = draw(study)
        except Exception as e:  # noqa: BLE001 (importances need two finished trials with different values)
            warnings.warn(f"sweep: {name} was not drawn ({type(e).__name__}: {e})", stacklevel=2)
            continue
        fig = ax.figure
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        write_bytes(out / name, buf.getvalue())
        written.append(str(out / name))
    return written
