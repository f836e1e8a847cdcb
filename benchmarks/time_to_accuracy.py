"""Accuracy and wall time of a preset over several seeds: per seed, then mean ± std, with the machine.

    python benchmarks/time_to_accuracy.py --preset s10 --seeds 3 --data-dir D [--out runs/tta-bench]
        [--epochs N --limit-train N --model NAME --batch-size N --max-lr X --device X]

Each seed is a full `cifarkit train` into OUT/seedN. Wall time counts from loading the data on disk
to the final test number; accuracy is the official test set's at the end of training (no best-epoch
picking). The README's results table comes from this script.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from cifarkit import preset_config, train
from cifarkit.engine import machine_info, resolve_device


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="s10")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", type=Path, default=Path("runs") / "time-to-accuracy")
    for flag, kind in (("--epochs", int), ("--limit-train", int), ("--batch-size", int), ("--max-lr", float),
                       ("--threads", int)):
        parser.add_argument(flag, type=kind)
    parser.add_argument("--model")
    parser.add_argument("--device")
    args = parser.parse_args(argv)

    overrides = {k: getattr(args, k) for k in ("data_dir", "epochs", "limit_train", "batch_size", "max_lr", "model",
                                               "device", "threads")}
    rows = []
    for seed in range(args.seeds):
        config = preset_config(args.preset, seed=seed, **overrides)
        started = time.perf_counter()
        results = train(config, args.out / f"seed{seed}", overwrite=True, progress=False)
        rows.append({"seed": seed, "test_accuracy": results["test_accuracy"],
                     "wall_time_s": time.perf_counter() - started, "results": results})
        print(f"seed {seed}: test accuracy {results['test_accuracy']:.2%}  wall {rows[-1]['wall_time_s']:.1f}s",
              flush=True)

    acc = [r["test_accuracy"] * 100 for r in rows]
    wall = [r["wall_time_s"] for r in rows]
    spread = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)
    info = machine_info(resolve_device(rows[0]["results"]["device"]))
    print(f"{args.preset} ({rows[0]['results']['model']}, {rows[0]['results']['epochs']} epochs, "
          f"{rows[0]['results']['n_train']} train images), {len(rows)} seeds:")
    print(f"  test accuracy {statistics.mean(acc):.2f} ± {spread(acc):.2f} %   "
          f"wall time {statistics.mean(wall):.1f} ± {spread(wall):.1f} s")
    print(f"  machine: {info['cpu']}, {info['cpu_count']} CPUs, {info['torch_threads']} torch threads, "
          f"torch {info['torch']}, device {info['device']}{', ' + info['gpu'] if 'gpu' in info else ''}, "
          f"dtype {rows[0]['results']['dtype']}")
    return rows


if __name__ == "__main__":
    main()
