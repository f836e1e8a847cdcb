"""What a sweep tunes: TrainConfig's numbers as --param ranges (NAME=LOW:HIGH, NAME=log:LOW:HIGH), and the setup
a study records on its first run so that a later run cannot mix in other settings or ranges.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from ..config.train_config import MACHINE_SETTINGS, SETTINGS, TrainConfig
from ..errors import UserError

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
