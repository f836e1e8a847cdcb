"""The `cifarkit` command: argparse sub-commands mapped onto the Python API.

The flags that set a TrainConfig field are generated from the field's declaration (flags.py); the commands of
other groups are added by their modules (model_commands.py, experiment_commands.py, audit_commands.py).

Exit codes: 0 success, 2 user error (message, no traceback), 1 a bug (traceback).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config.train_config import MACHINE_SETTINGS, SETTINGS, TrainConfig
from ..errors import Stopped, UserError
from ..runtime import distributed
from .audit_commands import add_commands as add_audit_commands
from .experiment_commands import add_commands as add_track_commands
from .flags import (
    add_data_flags,
    add_quiet_flag,
    add_run_flags,
    add_train_flags,
    config_defaults,
    config_from_args,
    refuse_run_changing_flags,
)
from .model_commands import add_commands
from .parser import CommandParser, command_parser


def cmd_data(args: argparse.Namespace) -> int:
    from ..data.dataset import describe
    from ..data.loading import load_dataset

    # the checks `train` makes of the same three flags (a folder at --image-size 0, coarse CIFAR-10 labels)
    TrainConfig(dataset=args.dataset, labels=args.labels, image_size=args.image_size).validate()
    print(
        describe(
            load_dataset(
                args.dataset,
                args.data_dir,
                labels=args.labels,
                image_size=args.image_size,
                download=not args.no_download,
            )
        )
    )
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from ..models.nets import build_model, summary

    print(summary(build_model(args.model)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.run import train

    if args.resume is not None:
        refuse_run_changing_flags(args)
        # everything else comes from the run's checkpoint
        config = TrainConfig(**{name: getattr(args, name) for name in MACHINE_SETTINGS})
        out = args.resume
    else:
        config = config_from_args(args)
        out = args.out
    results = train(
        config,
        out,
        resume=args.resume is not None,
        overwrite=args.overwrite,
        progress=not args.quiet,
        checkpoint_every=args.checkpoint_every or 0,
        dist_timeout_s=args.dist_timeout,
        tensorboard=args.tensorboard,
    )
    if not distributed.current().is_main:
        return 0
    print(
        f"test accuracy {results['test_accuracy']:.2%}  (loss {results['test_loss']:.4f})  "
        f"{results['train_images_per_second']:.0f} train img/s  wall {results['wall_time_s']:.0f}s  "
        f"-> {results['run_dir']}"
    )
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    import time

    from ..data.loading import load_run_data
    from ..runtime.device import resolve_device
    from ..training.lr_finder import find_lr, range_test_folder
    from ..training.run_folder import timestamped_run_path

    config = config_from_args(args).validate()
    resolve_device(config.device)
    out = args.out or timestamped_run_path(f"lr-find-{config.preset}")
    folder = range_test_folder(out, config)  # checked before the data is read
    started = time.perf_counter()
    result = find_lr(config, load_run_data(config, progress=not args.quiet), folder, progress=not args.quiet)
    print(
        f"suggested max lr {result.suggestion:.3g} (steepest descent of the smoothed loss); "
        f"loss minimum at lr {result.min_loss_lr:.3g}; {len(result.lrs)} steps"
        f"{' (stopped: diverged)' if result.diverged_at is not None else ''} in {time.perf_counter() - started:.0f}s"
    )
    print(
        f"wrote {out / 'lr_find.json'} and {out / 'lr_find.png'}; train with --max-lr {result.suggestion:.3g} "
        "or --max-lr find"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..report.page import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0


def build_parser() -> CommandParser:
    from ..runtime.invoked import program
    from ..version import __version__

    # usage lines name the program as it was started (.venv/bin/cifarkit, python -m cifarkit), so they run as shown
    parser = CommandParser(prog=program(), description="Train image classifiers on CIFAR-10.")
    parser.add_argument("--version", action="version", version=f"cifarkit {__version__}")
    sub = parser.add_commands(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "data",
        help="download CIFAR-10/100 if absent, else check the local copy (or read an image folder) and describe it",
    )
    add_data_flags(p)
    for name in ("dataset", "labels", "image_size"):
        p.add_argument(
            SETTINGS[name].flag,
            default=getattr(TrainConfig(), name),
            choices=SETTINGS[name].choices,
            type=SETTINGS[name].type,
            help=SETTINGS[name].help,
        )
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading when absent")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("summary", help="print the model's layers, output shapes and parameter counts")
    p.add_argument("--model", default="s10")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "train", help="train a model; writes RUN_DIR/{config.json,metrics.csv,results.json,checkpoints/}"
    )
    add_train_flags(p)
    add_quiet_flag(p)
    p.add_argument("--out", type=Path, help="run folder (default runs/PRESET-TIMESTAMP)")
    p.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint"
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument(
        "--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps (default: each epoch)"
    )
    p.add_argument(
        "--tensorboard",
        nargs="?",
        const=True,
        metavar="DIR",
        help="log to TensorBoard (needs cifarkit[tb]): event files in DIR/RUN_NAME, one subfolder a run "
        "(default RUN_DIR/tb)",
    )
    p.add_argument(
        "--dist-timeout",
        type=float,
        default=distributed.DEFAULT_TIMEOUT_S,
        metavar="S",
        help="under torchrun: seconds a rank waits for the others before the job fails (default 300)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("lr-find", help="LR range test on training batches: suggests the One Cycle peak")
    add_run_flags(p)
    add_quiet_flag(p)
    p.add_argument("--out", type=Path, help="folder for lr_find.json and lr_find.png (default runs/lr-find-...)")
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("report", help="(re)build RUN_DIR/report.html from the run folder's files")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.set_defaults(func=cmd_report)

    add_commands(sub)  # evaluate, predict, gradcam, app, export (model_commands.py)
    add_track_commands(sub)  # compare, sweep (experiment_commands.py)
    add_audit_commands(sub)  # audit (audit_commands.py)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "images_anywhere", False) and not any(e.startswith("-") for e in extra):
        args.images += extra  # files after an option: argparse gives an optional ("*") positional only one place
    elif extra:  # said by the command's own parser (its usage line) where it follows the command word
        words = list(sys.argv[1:] if argv is None else argv)
        at = words.index(args.command) if args.command in words else len(words)
        after = extra[0] in words[at + 1 :]
        command = command_parser(parser, args) if after else parser
        # argparse lists a parser's flags nowhere public: its actions are the one place they are
        flags = [o for a in command._actions for o in a.option_strings]
        near = difflib.get_close_matches(extra[0].split("=")[0], flags, n=1)
        command.error(f"unrecognized arguments: {' '.join(extra)}" + (f" (did you mean {near[0]}?)" if near else ""))
    func: Callable[[argparse.Namespace], int] = args.func

    def speaker() -> str:  # under torchrun, which process says it (known once the command has set up its ranks)
        rank = distributed.current()
        return f"cifarkit {args.command}" + (f" (rank {rank.rank} of {rank.world_size})" if rank.enabled else "")

    with warnings.catch_warnings():
        # a warning is one line, as an error is, not Python's path:line and source line
        warnings.showwarning = lambda message, *_: print(f"{speaker()}: warning: {message}", file=sys.stderr)
        try:
            return func(config_defaults(parser, args, argv))
        except Stopped as e:  # Ctrl-C / SIGTERM after a checkpoint: not an error, and the message says how to go on
            print(f"{speaker()}: {e}", file=sys.stderr)
            return 130
        except UserError as e:
            print(f"{speaker()}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{speaker()}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `cifarkit summary | head`: the reader has gone, nothing left to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141  # as a shell reports a process ended by SIGPIPE
        finally:
            distributed.shutdown()
