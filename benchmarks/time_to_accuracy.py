"""Accuracy and wall time of a preset over several seeds, optionally beside a baseline preset in the same sitting.

    python benchmarks/time_to_accuracy.py --preset fast --seeds 5 --data-dir D [--out runs/tta-bench]
        [--seed FIRST] [--reuse] [--baseline fast-v1 [--baseline-seeds N]]
        [any `cifarkit train` flag that defines the run: --epochs N --max-lr X ...]

Each seed (FIRST, FIRST+1, ..., default 0..N-1) is a full `cifarkit train` into OUT/seedN, its
configuration built from the same flags as `cifarkit train` (a preset or --config, then overrides).
Wall time counts from loading the data on disk to the final test number, TTA included ("to final
number"); the run's ending (plots, GradCAM, report) is timed apart. Accuracy is the official test set's
at the end of training (no best-epoch picking). Each seed's time is broken down into data loading, set-up
(model, whitening, optimiser), training steps, evaluation, and the rest (checkpoints, metrics).

With --baseline PRESET, the first --baseline-seeds seeds (default 1) also train PRESET (with the same
--data-dir, --threads, --compile, --device, --precision, --limit-train, --limit-test) into
OUT/baseline/seedN, each just before the same seed of the recipe, so both see the same host in the same
minutes: absolute times differ between machines, even of one kind, and only the ratio travels. Each
finished seed leaves OUT/.../seedN/benchmark.json; with --reuse a seed whose benchmark.json was made with
the same configuration is read back instead of trained again, so a long benchmark can be extended or
continued. With --record FILE the sitting is also written as a benchmark record (records.py: date, commit,
machine line, command, configuration, per-seed numbers), the form the docs' results pages are generated from.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import records

from cifarkit import train
from cifarkit.cli.main import add_train_flags, config_defaults, config_from_args
from cifarkit.config.train_config import PRESETS, SETTINGS, TrainConfig, build_config
from cifarkit.errors import UserError
from cifarkit.files.atomic import write_json
from cifarkit.runtime.device import describe_machine, machine_info, resolve_device


def recorded(run_dir: Path, config: dict) -> dict | None:
    """The benchmark record of a finished seed trained with exactly `config`, else None."""
    try:
        record = json.loads((run_dir / "benchmark.json").read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("config") == config else None


def run_seed(config: TrainConfig, run_dir: Path, reuse: bool) -> dict:
    """One seed's record, trained now (or read back with `reuse`), with its line printed."""
    record = recorded(run_dir, config.to_dict()) if reuse else None
    reused = record is not None
    if not reused:
        started = time.perf_counter()
        results = train(config, run_dir, overwrite=True, progress=False)
        record = {"config": config.to_dict(), "wall_time_s": time.perf_counter() - started, "results": results}
        write_json(run_dir / "benchmark.json", record)
    results, wall = record["results"], record["wall_time_s"]
    t = results["timing"]
    final = t["to_final_number_s"]
    rest = final - t["data_s"] - t["set_up_s"] - t["train_steps_s"] - t["evaluation_s"]
    print(
        f"{config.preset} seed {config.seed}: test accuracy {results['test_accuracy']:.2%}  "
        f"to final number {final:.1f}s (data {t['data_s']:.1f}, set-up {t['set_up_s']:.1f}, train steps "
        f"{t['train_steps_s']:.1f}, evaluation {t['evaluation_s']:.1f}, rest {rest:.1f})  ending {wall - final:.1f}s"
        f"  {results['train_images_per_second']:.0f} img/s{'  (reused)' if reused else ''}",
        flush=True,
    )
    return {
        "seed": config.seed,
        "test_accuracy": results["test_accuracy"],
        "final_s": final,
        "wall_time_s": wall,
        "results": results,
    }


def summarise(name: str, rows: list[dict]) -> tuple[float, float]:
    acc = [r["test_accuracy"] * 100 for r in rows]
    final = [r["final_s"] for r in rows]

    def spread(xs):
        return statistics.stdev(xs) if len(xs) > 1 else 0.0

    first = rows[0]["results"]
    print(
        f"{name} ({first['model']}, {first['epochs']} epochs, batch {first['batch_size']}, {first['n_train']} train "
        f"images), {len(rows)} seed(s): test accuracy {statistics.mean(acc):.2f} ± {spread(acc):.2f} % "
        f"(min {min(acc):.2f})  to final number {statistics.mean(final):.1f} ± {spread(final):.1f} s"
    )
    return statistics.mean(acc), statistics.mean(final)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds to run (default 3)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "time-to-accuracy")
    parser.add_argument("--reuse", action="store_true", help="read back seeds already run with the same configuration")
    parser.add_argument("--baseline", choices=sorted(PRESETS), help="a preset to time beside, seed by seed")
    parser.add_argument("--baseline-seeds", type=int, default=1, help="seeds of the baseline (default 1)")
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="also write the sitting as a benchmark record (e.g. benchmarks/results/DATE-NAME.json)",
    )
    parser.add_argument("--title", help="the record's title (default: the preset and the number of seeds)")
    add_train_flags(parser)  # --seed: the first seed
    args = parser.parse_args(argv)
    if args.seeds < 1 or not 1 <= args.baseline_seeds <= args.seeds:
        parser.error(
            f"--seeds {args.seeds} / --baseline-seeds {args.baseline_seeds}: run at least one seed of each, "
            "and no more baseline seeds than seeds"
        )
    try:
        args = config_defaults(parser, args, argv)  # --config FILE: its settings are the flags' defaults
        first = config_from_args(args).validate()
        # the baseline runs where and on what the recipe runs; everything else is its preset's
        same = [name for name, s in SETTINGS.items() if s.machine] + [
            "device",
            "precision",
            "limit_train",
            "limit_test",
        ]
        baseline = (
            build_config(args.baseline, overrides={name: getattr(first, name) for name in same}).validate()
            if args.baseline
            else None
        )
    except UserError as e:
        parser.error(str(e))
    rows, baseline_rows = [], []
    try:  # what only training finds (the data missing, a diverged run): said as `cifarkit train` says it
        for seed in range(first.seed, first.seed + args.seeds):
            if baseline is not None and len(baseline_rows) < args.baseline_seeds:
                which = f"baseline {baseline.preset} seed {seed}"
                baseline_rows.append(
                    run_seed(
                        dataclasses.replace(baseline, seed=seed), args.out / "baseline" / f"seed{seed}", args.reuse
                    )
                )
            which = f"seed {seed}"
            rows.append(run_seed(dataclasses.replace(first, seed=seed), args.out / f"seed{seed}", args.reuse))
    except UserError as e:
        parser.exit(2, f"{parser.prog}: error: {which}: {e}\n")

    _, final = summarise(first.preset, rows)
    if baseline_rows:
        _, baseline_final = summarise(f"baseline {baseline.preset}", baseline_rows)
        print(
            f"time to final number: {final / baseline_final:.2f}x the baseline's ({baseline_final / final:.2f}x "
            "as fast)"
        )
    info = machine_info(resolve_device(rows[0]["results"]["device"]))
    dtype = rows[0]["results"]["dtype"]
    print(f"machine: {describe_machine(info)}, dtype {dtype}")
    if args.record is not None:
        write_record(args, argv, first, baseline, rows, baseline_rows, info, dtype)
    return rows


def write_record(
    args: argparse.Namespace,
    argv: list[str] | None,
    first: TrainConfig,
    baseline: TrainConfig | None,
    rows: list[dict],
    baseline_rows: list[dict],
    info: dict,
    dtype: str,
) -> None:
    """The sitting as a benchmark record (records.py), written atomically to --record."""

    def given(config: TrainConfig) -> dict:
        return records.settings_given(config.to_dict(), build_config(config.preset).to_dict())

    words = sys.argv[1:] if argv is None else argv
    record = records.make_record(
        title=args.title or f"{first.preset} over {len(rows)} seed(s)",
        command=shlex.join(["python", "benchmarks/time_to_accuracy.py", *words]),
        machine_line=f"{describe_machine(info)}, dtype {dtype}",
        info=info,
        precision=dtype,
        config=given(first),
        runs=records.seed_runs(rows),
        baseline={"config": given(baseline), "runs": records.seed_runs(baseline_rows)} if baseline_rows else None,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        commit=records.git_commit(Path(__file__).resolve().parent),
    )
    write_json(args.record, record)
    print(f"record: {args.record}")


if __name__ == "__main__":
    main()
