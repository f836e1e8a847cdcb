"""The `cifarkit` command: argparse sub-commands mapped onto the Python API.

Exit codes: 0 success, 2 user error (message, no traceback), 1 a bug (traceback).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import distributed
from .config import DEVICES, PRECISIONS, PRESETS, TTA_MODES, TrainConfig, preset_config
from .errors import UserError


def _max_lr(text: str) -> float | str:
    if text == "find":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'find'") from None


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="CIFAR-10 folder (default: $CIFARKIT_DATA, else ~/.cache/cifarkit)")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by everything that builds a model and trains it (train, lr-find, time_to_accuracy.py)."""
    _add_data_flags(p)
    p.add_argument("--preset", help=f"recipe to start from: {', '.join(PRESETS)} (default s10)")
    p.add_argument("--config", type=Path, help="a config.json (e.g. RUN_DIR/config.json) to start from instead of a preset")
    p.add_argument("--model", help="network to train (default: the preset's; s10)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--optimizer", choices=("adam", "sgd"), help="(s10: adam)")
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction,
                   help="Nesterov momentum (with --optimizer sgd; s10: off, s10-best and fast: on)")
    p.add_argument("--label-smoothing", type=float, help="cross-entropy label smoothing (s10: 0)")
    p.add_argument("--ema-decay", type=float,
                   help="keep an exponential moving average of the weights, evaluated and saved (s10: 0 = off)")
    p.add_argument("--lookahead-decay", type=float,
                   help="Lookahead: the model restarts from a slow average every --lookahead-every steps, decay "
                        "ramping to this value (s10: 0 = off; fast, fast-cpu: 0.774)")
    p.add_argument("--lookahead-every", type=int, metavar="N", help="steps between Lookahead updates (default 5)")
    p.add_argument("--norm-lr-scale", type=float,
                   help="lr multiplier of BatchNorm/bias parameters, weight decay divided by it (s10: 1; fast: 64)")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="test every N epochs, the last always; 0: only at the end (s10: 1; fast: 0)")
    p.add_argument("--alternate-flip", action=argparse.BooleanOptionalAction,
                   help="mirror each training image every other epoch instead of at random (s10: off; fast: on)")
    p.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation of the test evaluations (s10: none)")
    p.add_argument("--device", help=f"{', '.join(DEVICES)} or cuda:N (default auto: a GPU if there is one)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="autocast dtype (default auto: bf16 on CPUs with native bf16, else fp32; bf16/fp16 on GPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="channels_last tensors, faster on CPU and tensor cores (default on; --no-channels-last: NCHW)")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice, the physical cores)")
    p.add_argument("--limit-train", type=int, metavar="N", help="train on the first N images only")
    p.add_argument("--limit-test", type=int, metavar="N", help="test on the first N images only")


# flag dest -> TrainConfig field, where the names differ
FLAG_FIELDS = {"start_lr": "lr_find_start", "end_lr": "lr_find_end", "num_iter": "lr_find_iters"}


def add_sweep_flags(p: argparse.ArgumentParser) -> None:
    """The LR range test's flags (lr-find, and train --max-lr find)."""
    p.add_argument("--start-lr", type=float, help="first lr of the range test (s10: 0.03)")
    p.add_argument("--end-lr", type=float, help="last lr of the range test (s10: 10)")
    p.add_argument("--num-iter", type=int, help="steps of the range test (s10: 200); stops early on divergence")


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """Every flag that defines a training run (train, benchmarks/time_to_accuracy.py)."""
    add_run_flags(p)
    p.add_argument("--max-lr", type=_max_lr, help="One Cycle peak lr (default: the preset's; s10: 4.51e-2)")
    add_sweep_flags(p)


def _add_quiet_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


# The flags (argparse dests) that set a TrainConfig field; unset ones are None and keep the preset's value.
CONFIG_FLAGS = (
    "data_dir", "model", "epochs", "batch_size", "weight_decay", "optimizer", "nesterov", "label_smoothing",
    "ema_decay", "lookahead_decay", "lookahead_every", "norm_lr_scale", "alternate_flip", "eval_every", "tta",
    "device", "precision", "channels_last", "seed",
    "threads", "limit_train", "limit_test", "max_lr", "sync_bn", "start_lr", "end_lr", "num_iter")
# What may differ when a run continues on another machine or in another session; everything else that
# shapes the result comes from the run's checkpoint.
RESUME_FLAGS = ("data_dir", "threads")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {FLAG_FIELDS.get(name, name): getattr(args, name, None) for name in CONFIG_FLAGS}
    if args.config is not None:
        if args.preset is not None:
            raise UserError(f"--config {args.config} and --preset {args.preset}: give one of them")
        config = TrainConfig.from_json(args.config)
        for name, value in overrides.items():
            if value is not None:
                setattr(config, name, value)
        return config.validate()
    return preset_config(args.preset or "s10", **overrides)


def _flag(dest: str, value: object) -> str:
    """The flag as the user typed it: --max-lr, or --no-nesterov for a switch turned off."""
    return f"--{'no-' if value is False else ''}{dest.replace('_', '-')}"


def refuse_run_changing_flags(args: argparse.Namespace) -> None:
    """With --resume, a flag that would change the run is refused by name rather than silently ignored."""
    given = [_flag(d, getattr(args, d)) for d in ("preset", "config", *CONFIG_FLAGS)
             if d not in RESUME_FLAGS and getattr(args, d, None) is not None]
    given += [flag for flag, on in (("--out", args.out is not None), ("--overwrite", args.overwrite)) if on]
    if given:
        raise UserError(f"--resume {args.resume} with {' '.join(given)}: a resumed run keeps the settings it was "
                        f"started with (from its checkpoint); only {', '.join(_flag(d, 1) for d in RESUME_FLAGS)}, "
                        "--quiet, --checkpoint-every and --dist-timeout may change. Drop those flags, or start a new "
                        "run with --out")


def cmd_data(args: argparse.Namespace) -> int:
    from .data import describe, load_cifar10

    print(describe(load_cifar10(args.data_dir, download=not args.no_download)))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .models import build_model, summary

    print(summary(build_model(args.model)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .run import train

    if args.resume is not None:
        refuse_run_changing_flags(args)
        # everything else comes from the run's checkpoint
        config = TrainConfig(data_dir=args.data_dir, threads=args.threads)
        out = args.resume
    else:
        config = config_from_args(args)
        out = args.out
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UserError(f"--checkpoint-every {args.checkpoint_every}: must be a whole number of steps >= 1")
    if args.dist_timeout <= 0:
        raise UserError(f"--dist-timeout {args.dist_timeout}: must be a positive number of seconds")
    results = train(config, out, resume=args.resume is not None, overwrite=args.overwrite,
                    progress=not args.quiet, checkpoint_every=args.checkpoint_every or 0,
                    dist_timeout_s=args.dist_timeout)
    if not distributed.current().is_main:
        return 0
    print(f"test accuracy {results['test_accuracy']:.2%}  (loss {results['test_loss']:.4f})  "
          f"{results['train_images_per_second']:.0f} train img/s  wall {results['wall_time_s']:.0f}s  "
          f"-> {Path(out) if out else 'runs/'}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    import time

    from .data import load_cifar10
    from .engine import resolve_device
    from .lr_finder import find_lr
    config = config_from_args(args)
    resolve_device(config.device)
    out = args.out or Path("runs") / f"lr-find-{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.perf_counter()
    data = load_cifar10(config.data_dir).limit(config.limit_train)
    result = find_lr(config, data, out, progress=not args.quiet)
    print(f"suggested max lr {result.suggestion:.3g} (steepest descent of the smoothed loss); "
          f"loss minimum at lr {result.min_loss_lr:.3g}; {len(result.lrs)} steps"
          f"{' (stopped: diverged)' if result.diverged_at is not None else ''} in {time.perf_counter() - started:.0f}s")
    print(f"wrote {out / 'lr_find.json'} and {out / 'lr_find.png'}; train with --max-lr {result.suggestion:.3g} "
          "or --max-lr find")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .files import write_json
    from .inference import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.data_dir, args.tta, args.limit_test, args.device)
    tta = result["tta"]
    out = args.out or (args.checkpoint / f"evaluate-{tta}.json" if args.checkpoint.is_dir()
                       else args.checkpoint.with_name(f"{args.checkpoint.stem}.evaluate-{tta}.json"))
    write_json(out, result)
    print(f"test accuracy {result['test_accuracy']:.2%}  loss {result['test_loss']:.4f}  "
          f"({result['n_test']} images, tta {tta})")
    for name, acc in result["per_class_accuracy"].items():
        print(f"  {name:<12}{acc:7.2%}")
    print(f"wrote {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from .inference import predict_files

    predictions = predict_files(args.checkpoint, args.images, args.top_k, args.tta, args.device)
    if args.json:
        print(json.dumps(predictions, indent=2))
        return 0
    for p in predictions:
        print(p["image"])
        for rank, t in enumerate(p["top"], start=1):
            print(f"  {rank}. {t['class']:<12}{t['probability']:7.2%}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .inference import export_onnx

    info = export_onnx(args.checkpoint, args.onnx, raw_input=args.raw_input)
    print(f"wrote {info['onnx']}\ninput: {info['input']}\noutput: logits (N x {len(info['classes'])}), classes "
          f"{', '.join(info['classes'])}\nonnxruntime vs PyTorch on 8 images: max abs difference "
          f"{info['max_abs_diff']:.2e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cifarkit", description="Train image classifiers on CIFAR-10.")
    parser.add_argument("--version", action="version", version=f"cifarkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="download CIFAR-10 if absent, else check the local copy and describe it")
    _add_data_flags(p)
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading when absent")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("summary", help="print the model's layers, output shapes and parameter counts")
    p.add_argument("--model", default="s10")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("train", help="train a model; writes RUN_DIR/{config.json,metrics.csv,results.json,checkpoints/}")
    add_train_flags(p)
    _add_quiet_flag(p)
    p.add_argument("--out", type=Path, help="run folder (default runs/PRESET-TIMESTAMP)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps (default: each epoch)")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction,
                   help="under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm, CUDA only)")
    p.add_argument("--dist-timeout", type=float, default=distributed.DEFAULT_TIMEOUT_S, metavar="S",
                   help="under torchrun: seconds a rank waits for the others before the job fails (default 300)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("lr-find", help="LR range test on training batches: suggests the One Cycle peak")
    add_run_flags(p)
    add_sweep_flags(p)
    _add_quiet_flag(p)
    p.add_argument("--out", type=Path, help="folder for lr_find.json and lr_find.png (default runs/lr-find-...)")
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("report", help="(re)build RUN_DIR/report.html from the run folder's files")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("evaluate", help="test accuracy, loss and per-class accuracy of a checkpoint, as JSON")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT_OR_RUN_DIR")
    _add_data_flags(p)
    p.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation (default: the run's, usually none)")
    p.add_argument("--limit-test", type=int, metavar="N", help="the first N test images only")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="JSON file (default: next to the checkpoint, evaluate-TTA.json)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k classes of image files (any size, resized to 32x32)")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT_OR_RUN_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--tta", choices=TTA_MODES, default="none")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a checkpoint to ONNX, checked against PyTorch with onnxruntime")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT_OR_RUN_DIR")
    p.add_argument("--onnx", type=Path, required=True, metavar="FILE")
    p.add_argument("--raw-input", action="store_true",
                   help="the model takes raw pixels 0..255 and normalises itself (default: normalised input)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as e:
        rank = distributed.current()
        where = f" (rank {rank.rank} of {rank.world_size})" if rank.enabled else ""
        print(f"cifarkit {args.command}{where}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cifarkit {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()

