"""`cifarkit audit RUN_DIR`: the data audit's flags here, its work in the audit package (loaded on use)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .parser import Commands


def cmd_audit(args: argparse.Namespace) -> int:
    from ..audit import audit

    summary = audit(
        args.run_dir,
        split=args.split,
        folds=args.folds,
        preset=args.preset,
        out=args.out,
        data_dir=args.data_dir,
        device=args.device,
        progress=not args.quiet,
    )
    for split, per_issue in summary["counts"]["per_issue"].items():
        found = ", ".join(f"{n} {issue.replace('_', ' ')}" for issue, n in per_issue.items() if n) or "no issues"
        print(f"{split} ({summary['images'][split]} images): {found}")
    folder = Path(summary["folder"])
    print(
        f"wrote {folder / 'audit.html'}, audit.csv, audit.json, exclude.txt "
        f"({summary['timing']['total_s']:.0f}s); retrain without the flagged training images: "
        f"cifarkit train ... --exclude {folder / 'exclude.txt'}"
    )
    if summary["report"]:
        print(f"report: {summary['report']} links the audit")
    return 0


def add_commands(sub: Commands) -> None:
    """The `audit` sub-command."""
    from ..config.train_config import PRESETS, SETTINGS

    p = sub.add_parser(
        "audit",
        help="find probable label errors, duplicates (also between train and test) and "
        "outliers in a run's data (cleanlab); writes RUN_DIR/audit/",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a trained run (its checkpoints/last.pt)")
    p.add_argument(
        "--split",
        choices=("test", "train", "all"),
        default="test",
        help="test: the run's model predicts it; train: K fold runs predict their held-out images; all: "
        "both (default test)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=5,
        metavar="K",
        help="fold runs for the training split, each trained on (K-1)/K of it (default 5)",
    )
    p.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        metavar="NAME",
        help=f"train the folds with this preset ({', '.join(PRESETS)}) instead of the run's own recipe",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="the audit folder (default RUN_DIR/audit); an earlier audit's folder continues it",
    )
    p.add_argument(
        SETTINGS["data_dir"].flag,
        help="where the run's data is (default: the run's, else $CIFARKIT_DATA, else ~/.cache/cifarkit)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps or cuda:N (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-fold lines")
    p.set_defaults(func=cmd_audit)
