"""What a sweep's study came to: its trials counted by how they ended, why none finished when none did, and for
the best trial best_config.json, the history and importance plots and a summary.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from pathlib import Path
from typing import Any

from ..config.train_config import TrainConfig
from ..errors import UserError
from ..rundir.run_dir import BEST_CONFIG, SWEEP_PLOTS
from .params import Param


def ended(study: Any) -> int:
    """Trials that count towards --trials: complete, pruned, or failed by their own settings (an interrupted one
    does not)."""
    counts = trial_counts(study)
    return counts["complete"] + counts["pruned"] + counts["diverged"] + counts["refused"]


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
