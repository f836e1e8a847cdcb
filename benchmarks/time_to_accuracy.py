"""Accuracy and wall time of a preset over several seeds: per seed, then mean ± std, with the machine.

    python benchmarks/time_to_accuracy.py --preset s10 --seeds 3 --data-dir D [--out runs/tta-bench]
        [--seed FIRST] [--reuse] [any `cifarkit train` flag that defines the run: --epochs N --max-lr X ...]

Each seed (FIRST, FIRST+1, ..., default 0..N-1) is a full `cifarkit train` into OUT/seedN, its
configuration built from the same flags as `cifarkit train` (a preset or --config, then overrides).
Wall time counts from loading the data on disk to the final test number; accuracy is the official
test set's at the end of training (no best-epoch picking). Each finished seed leaves
OUT/seedN/benchmark.json; with --reuse a seed whose benchmark.json was made with the same
configuration is read back instead of trained again, so a long benchmark can be extended (--seeds 3
after --seeds 1) or, after an interruption, continued from the first unfinished seed (which starts
over: a seed's wall time is one uninterrupted run). The README's results table comes from this script.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from cifarkit import train
from cifarkit.cli import add_train_flags, config_defaults, config_from_args
from cifarkit.runtime import machine_info, resolve_device
from cifarkit.errors import UserError
from cifarkit.files import write_json


def recorded(run_dir: Path, config: dict) -> dict | None:
    """The benchmark record of a finished seed trained with exactly `config`, else None."""
    try:
        record = json.loads((run_dir / "benchmark.json").read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("config") == config else None


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds to run (default 3)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "time-to-accuracy")
    parser.add_argument("--reuse", action="store_true", help="read back seeds already run with the same configuration")
    add_train_flags(parser)  # --seed: the first seed
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: run at least one seed")
    try:
        args = config_defaults(parser, args, argv)  # --config FILE: its settings are the flags' defaults
        first = config_from_args(args).validate()
    except UserError as e:
        parser.error(str(e))
    rows = []
    for seed in range(first.seed, first.seed + args.seeds):
        config = dataclasses.replace(first, seed=seed)
        run_dir = args.out / f"seed{seed}"
        record = recorded(run_dir, config.to_dict()) if args.reuse else None
        reused = record is not None
        if not reused:
            started = time.perf_counter()
            results = train(config, run_dir, overwrite=True, progress=False)
            record = {"config": config.to_dict(), "wall_time_s": time.perf_counter() - started, "results": results}
            write_json(run_dir / "benchmark.json", record)
        results = record["results"]
        rows.append({"seed": seed, "test_accuracy": results["test_accuracy"], "wall_time_s": record["wall_time_s"],
                     "results": results})
        print(f"seed {seed}: test accuracy {results['test_accuracy']:.2%}  wall {record['wall_time_s']:.1f}s"
              f"{'  (reused)' if reused else ''}", flush=True)

    acc = [r["test_accuracy"] * 100 for r in rows]
    wall = [r["wall_time_s"] for r in rows]
    spread = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)
    info = machine_info(resolve_device(rows[0]["results"]["device"]))
    print(f"{first.preset} ({rows[0]['results']['model']}, {rows[0]['results']['epochs']} epochs, "
          f"{rows[0]['results']['n_train']} train images), {len(rows)} seeds:")
    print(f"  test accuracy {statistics.mean(acc):.2f} ± {spread(acc):.2f} %   "
          f"wall time {statistics.mean(wall):.1f} ± {spread(wall):.1f} s")
    print(f"  machine: {info['cpu']}, {info['cpu_count']} CPUs, {info['torch_threads']} torch threads, "
          f"torch {info['torch']}, device {info['device']}{', ' + info['gpu'] if 'gpu' in info else ''}, "
          f"dtype {rows[0]['results']['dtype']}")
    return rows


if __name__ == "__main__":
    main()
