"""Validation accuracy of variants of one recipe, paired by seed: which change helps, before the test set is used.

    python benchmarks/variants.py --preset fast-cpu --epochs 8 --small-crop 0 --small-crop-epochs 0 --muon-lr 0.24
        --val-split 5000 --seeds 12 --data-dir D --variant "mu20=--muon-lr 0.2"
        --variant "pr11-6=--epochs 11 --small-crop 24 --small-crop-epochs 6" [--processes 4] [--seed FIRST] [--reuse]
        [--out runs/variants]

The flags outside --variant define the base recipe (any `cifarkit train` flag, as in time_to_accuracy.py, and
--val-split is required); each variant NAME=FLAGS is the base with FLAGS on top (not the data: --seed, --val-split,
--data-dir, --dataset, ... belong to the base). Every seed trains the base and each variant with that seed, so they
hold out the same validation images and start from the same draw: the table gives each one's validation accuracy
(mean ± standard deviation over seeds) and its difference from the base paired by seed (mean ± standard error),
which cancels much of a seed's luck. Each run still ends as `cifarkit train` does, the test set scored into its
results.json; this script does not print it: choose here, then measure the choice on the test set with
time_to_accuracy.py. (The example above is how today's fast-cpu was chosen, on 2026-11-26 (0467255), from the
fast-cpu of c4efa2d.)

Each run leaves OUT/NAME/seedN (its run folder and variant.json); with --reuse a run whose variant.json was made
with the same configuration is read back, so a comparison grows by more seeds or variants. --processes N trains
N runs at once, each loading the data itself: a GPU has room for several small runs (4 at once on an H100 for
fast-small); on a 2-core CPU keep 1, and compare training times only between runs made alike.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import shlex
import statistics
import sys
import time
from pathlib import Path

from cifarkit import train
from cifarkit.cli.main import add_train_flags, config_defaults, config_from_args
from cifarkit.config.train_config import SETTINGS, TrainConfig
from cifarkit.errors import UserError
from cifarkit.files.atomic import write_json
from cifarkit.runtime.device import describe_machine, machine_info, resolve_device

BASE = "base"
# What a variant may not change: the pairing needs the same held-out images and seeds
DATA = ("seed", "val_split", "data_dir", "dataset", "labels", "image_size", "limit_train", "limit_test")


def run_one(name: str, config: TrainConfig, run_dir: Path, reuse: bool) -> dict:
    """One (variant, seed) run's numbers, trained now or, with `reuse`, read back from an identical earlier run."""
    record_file = run_dir / "variant.json"
    if reuse:
        try:
            record = json.loads(record_file.read_text())
            if record["config"] == config.to_dict():
                return {**record["row"], "reused": True}
        except (OSError, ValueError, KeyError, TypeError):
            pass
    started = time.perf_counter()
    results = train(config, run_dir, overwrite=True, progress=False)
    row = {
        "name": name,
        "seed": config.seed,
        "val": results["val_accuracy"],
        "train": results["train_accuracy"],
        "train_s": results["train_seconds"],
        "wall_s": time.perf_counter() - started,
        "device": results["device"],
        "dtype": results["dtype"],
    }
    write_json(record_file, {"config": config.to_dict(), "row": row})
    return {**row, "reused": False}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds of every variant (default 4)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="a variant: the base with these `cifarkit train` flags on top (repeatable)",
    )
    parser.add_argument("--processes", type=int, default=1, help="runs trained at once (default 1)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "variants")
    parser.add_argument("--reuse", action="store_true", help="read back runs already made with the same configuration")
    add_train_flags(parser)  # --seed: the first seed
    return parser


def config_of(argv: list[str]) -> TrainConfig:
    """The configuration these flags give; a fresh parser each time, since --config sets the parser's defaults."""
    parser = make_parser()
    return config_from_args(config_defaults(parser, parser.parse_args(argv), argv)).validate()


def parse(argv: list[str]) -> tuple[argparse.Namespace, TrainConfig, dict[str, TrainConfig]]:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.processes < 1:
        parser.error(f"--seeds {args.seeds} / --processes {args.processes}: each must be at least 1")
    train_flags = argparse.ArgumentParser(prog=f"{parser.prog} --variant", add_help=False)
    add_train_flags(train_flags)
    variants: dict[str, TrainConfig] = {}
    try:
        base = config_of(argv)
        if not base.val_split:
            raise UserError(
                "--val-split N is required: variants are compared on held-out training images, never on the test set"
            )
        for spec in args.variant:
            name, sep, flags = spec.partition("=")
            name = name.strip()
            if (
                not sep
                or not name
                or name == BASE
                or name in variants
                or not name.replace("-", "").replace("_", "").replace(".", "").isalnum()
            ):
                raise UserError(
                    f"--variant {spec!r}: write NAME=FLAGS with a new name of letters, digits, - _ . "
                    f'(not {BASE!r}), e.g. --variant "mu20=--muon-lr 0.2"'
                )
            try:
                train_flags.parse_args(shlex.split(flags))  # only training flags (a typo is named by argparse)
            except ValueError as e:  # unbalanced quotes
                raise UserError(f"--variant {spec!r}: {e}") from None
            config = config_of(argv + shlex.split(flags))  # the last occurrence of a flag wins: the variant's
            changed = [SETTINGS[k].flag for k in DATA if getattr(config, k) != getattr(base, k)]
            if changed:
                raise UserError(
                    f"--variant {spec!r}: {', '.join(changed)}: the base's to set, not a variant's (the "
                    "pairing needs the same seeds and held-out images)"
                )
            variants[name] = config
    except UserError as e:
        parser.error(str(e))
    return args, base, variants


def summarise(names: list[str], rows: list[dict], flags: dict[str, str]) -> None:
    by = {name: {r["seed"]: r for r in rows if r["name"] == name} for name in names}

    def spread(xs):
        return statistics.stdev(xs) if len(xs) > 1 else 0.0

    print(f"{'variant':<16} {'seeds':>5}  {'validation accuracy':<19}  {'vs base, paired':<15}  train acc  train s")
    for name in names:
        runs = by[name]
        val = [r["val"] * 100 for r in runs.values()]
        paired = [runs[s]["val"] * 100 - by[BASE][s]["val"] * 100 for s in runs if s in by[BASE]]
        versus = "" if name == BASE else f"{statistics.mean(paired):+.2f} ± {spread(paired) / len(paired) ** 0.5:.2f}"
        print(
            f"{name:<16} {len(val):>5}  {statistics.mean(val):6.2f} ± {spread(val):.2f} %      {versus:<15}  "
            f"{statistics.mean(r['train'] for r in runs.values()) * 100:7.1f} %  "
            f"{statistics.mean(r['train_s'] for r in runs.values()):7.1f}  {flags.get(name, '')}"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, base, variants = parse(argv)
    configs = {BASE: base, **variants}
    tasks = [
        (name, dataclasses.replace(config, seed=seed), args.out / name / f"seed{seed}")
        for seed in range(base.seed, base.seed + args.seeds)
        for name, config in configs.items()
    ]
    rows: list[dict] = []

    def report(row: dict) -> None:
        rows.append(row)
        print(
            f"{row['name']} seed {row['seed']}: validation accuracy {row['val']:.2%} (train {row['train']:.2%}) "
            f"in {row['train_s']:.1f}s of training{'  (reused)' if row['reused'] else ''}",
            flush=True,
        )

    name, seed = BASE, base.seed
    try:
        if args.processes == 1:
            for name, config, run_dir in tasks:
                seed = config.seed
                report(run_one(name, config, run_dir, args.reuse))
        else:
            spawn = multiprocessing.get_context(
                "spawn"
            )  # a fresh interpreter each: safe beside torch's threads and CUDA
            with concurrent.futures.ProcessPoolExecutor(args.processes, mp_context=spawn) as pool:
                futures = {pool.submit(run_one, *task, args.reuse): task for task in tasks}
                try:
                    for future in concurrent.futures.as_completed(futures):
                        name, seed = futures[future][0], futures[future][1].seed
                        report(future.result())
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # not the queued runs first: they could take hours
                    raise
    except UserError as e:
        print(f"{Path(sys.argv[0]).name}: error: {name} seed {seed}: {e}", file=sys.stderr)
        sys.exit(2)
    flags = {spec.partition("=")[0].strip(): spec.partition("=")[2].strip() for spec in args.variant}
    summarise(list(configs), rows, flags)
    made_on = sorted({f"{r['device']} {r['dtype']}" for r in rows})
    print(
        f"machine: {describe_machine(machine_info(resolve_device(base.device)))}; runs made on {', '.join(made_on)}"
        + ("  (reused runs from elsewhere: their training times do not compare)" if len(made_on) > 1 else "")
    )
    return rows


if __name__ == "__main__":
    main()
