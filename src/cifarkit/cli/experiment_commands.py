"""The sub-commands of experiments: `compare` (several runs side by side) and `sweep` (Optuna). Their flags
here, their work in compare.py and sweep.py (loaded on use)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .flags import add_train_flags, config_from_args
from .parser import Commands


def cmd_compare(args: argparse.Namespace) -> int:
    from ..report.compare import compare

    text, runs = compare(args.runs, args.out)
    print(text)
    if args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..runtime.invoked import program
    from ..tune.params import parse_param
    from ..tune.sweep import sweep

    params = [parse_param(text) for text in args.param or ()]  # refused by name before anything else
    summary = sweep(
        config_from_args(args),
        params,
        args.trials,
        args.out,
        storage=args.storage,
        study_name=args.study,
        prune=not args.no_prune,
        startup_trials=args.startup_trials,
        sampler_seed=args.sampler_seed,
        progress=not args.quiet,
    )
    counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items() if n)
    print(f"trials: {counts}")
    print(
        f"best: trial {summary['best_trial']} ({summary['best_run_dir']}), validation accuracy "
        f"{summary['best_value']:.2%} with "
        + ", ".join(f"{name} {value:.4g}" for name, value in summary["best_params"].items())
    )
    print(f"train it: {program()} train --config {summary['best_config']}")  # runnable as printed
    if summary["plots"]:
        print(f"plots: {', '.join(summary['plots'])}")
    return 0


def add_commands(sub: Commands) -> None:
    """compare and sweep, with their flags (sweep's: every flag that defines a training run, flags.py's)."""
    p = sub.add_parser(
        "compare",
        help="several run folders side by side: a table of what differs and the results, "
        "and an HTML page with their curves overlaid",
    )
    p.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run folders, or folders of run folders (a time_to_accuracy.py or sweep --out)",
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="also write a self-contained HTML page here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sweep", help="tune settings with Optuna on a validation split; each trial a run folder")
    add_train_flags(p)
    group = p.add_argument_group("sweep")
    group.add_argument(
        "--param",
        action="append",
        metavar="NAME=[log:]LOW:HIGH",
        help="a setting to tune and its range, e.g. max_lr=log:0.2:4 or label_smoothing=0:0.3 "
        "(repeat for each; whole numbers for integer settings)",
    )
    group.add_argument("--trials", type=int, default=20, help="trials the study runs in all (default 20)")
    group.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="sweep folder: trial-N run folders, study.db, best_config.json, plots",
    )
    group.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage shared by several workers, e.g. postgresql://USER:PASS@HOST/DB "
        "(default sqlite:///OUT/study.db)",
    )
    group.add_argument("--study", metavar="NAME", help="study name in the storage (default: OUT's folder name)")
    group.add_argument(
        "--no-prune",
        action="store_true",
        help="never stop a trial early (default: Optuna's median pruner on each epoch's validation accuracy)",
    )
    group.add_argument(
        "--startup-trials",
        type=int,
        default=5,
        metavar="N",
        help="trials that finish before the pruner starts comparing (default 5)",
    )
    group.add_argument("--sampler-seed", type=int, metavar="N", help="seed of the TPE sampler (default random)")
    group.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=cmd_sweep)
