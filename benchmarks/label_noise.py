"""Label noise with a known answer: flip a share of CIFAR-10's training labels (fixed seed, each to a random other
class), audit the training split with K fold runs of a preset, and measure how well the audit finds the flips
(precision and recall of the flipped images among those flagged as label issues); then train the preset on the
noisy labels, on the noisy labels less the audit's exclude.txt, and on the clean labels, and print the three test
accuracies.

    python benchmarks/label_noise.py --preset fast --folds 5 --record benchmarks/results/label-noise-fast.json
    python benchmarks/label_noise.py --limit-train 2000 --limit-test 1000 --epochs 1 --folds 2   # a quick check

The noisy labels are written as a copy of CIFAR-10 (python layout) in OUT/noisy-data, so every run and the audit
read them as any dataset; the flipped indices are in OUT/flipped.txt. The same command again continues an
interrupted sitting: finished runs and folds are read back, a begun one resumes from its last checkpoint; the audit
is made again from its folds, and the cleaned run trained again if the audit now flags other images.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import pickle
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import records

from cifarkit import audit, preset_config, train
from cifarkit.config.train_config import PRESETS
from cifarkit.data.dataset import CLASSES
from cifarkit.data.loading import load_dataset
from cifarkit.files.atomic import write_bytes, write_json, write_text
from cifarkit.runtime.device import describe_machine, machine_info, resolve_device


def flip_labels(labels: np.ndarray, share: float, seed: int, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, flipped indices sorted): round(share x N) images chosen by `seed`, each given a random other
    class."""
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), size=round(share * len(labels)), replace=False))
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, size=len(flipped))) % classes
    return noisy, flipped


def write_cifar_copy(folder: Path, train_images, train_labels, test_images, test_labels) -> None:
    """CIFAR-10's python layout (five training batches, the test batch, the meta file) holding these arrays."""
    root = folder / "cifar-10-batches-py"
    for i, part in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
        write_bytes(
            root / f"data_batch_{i}",
            pickle.dumps(
                {"labels": train_labels[part].tolist(), "data": train_images[part].reshape(len(part), -1)}, protocol=2
            ),
        )
    write_bytes(
        root / "test_batch",
        pickle.dumps({"labels": test_labels.tolist(), "data": test_images.reshape(len(test_labels), -1)}, protocol=2),
    )
    write_bytes(root / "batches.meta", pickle.dumps({"label_names": list(CLASSES)}, protocol=2))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset",
        default="fast",
        choices=tuple(PRESETS),
        help="the recipe of every run and fold (fast-cpu on a CPU without native bf16)",
    )
    parser.add_argument("--folds", type=int, default=5, metavar="K")
    parser.add_argument("--noise", type=float, default=0.05, help="share of training labels flipped (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="chooses the flips (the runs keep the preset's seed)")
    parser.add_argument("--data-dir", help="where CIFAR-10 is (default: $CIFARKIT_DATA, else ~/.cache/cifarkit)")
    parser.add_argument("--limit-train", type=int, metavar="N", help="the first N training images only (a check)")
    parser.add_argument("--limit-test", type=int, metavar="N")
    parser.add_argument("--epochs", type=int, help="instead of the preset's (a check)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="default runs/label-noise-TIMESTAMP")
    parser.add_argument("--record", type=Path, metavar="FILE", help="also write the sitting as a benchmark record")
    args = parser.parse_args(argv)
    out = args.out or Path("runs") / f"label-noise-{time.strftime('%Y%m%d-%H%M%S')}"

    clean = load_dataset("cifar10", args.data_dir)
    n = min(args.limit_train or len(clean.train_labels), len(clean.train_labels))
    labels = clean.train_labels.numpy()
    noisy_part, flipped = flip_labels(labels[:n], args.noise, args.seed)
    noisy = np.concatenate([noisy_part, labels[n:]])  # the flips among the images the runs train on
    write_cifar_copy(
        out / "noisy-data", clean.train_images.numpy(), noisy, clean.test_images.numpy(), clean.test_labels.numpy()
    )
    write_text(out / "flipped.txt", "".join(f"{i}\n" for i in flipped))
    print(f"flipped {len(flipped)} of {n} training labels (seed {args.seed})", file=sys.stderr)

    overrides = {k: v for k, v in (("epochs", args.epochs), ("threads", args.threads)) if v is not None}
    shared = dict(limit_train=args.limit_train, limit_test=args.limit_test, **overrides)
    timing = {}

    def run(name: str, data_dir, **extra) -> dict:
        """Train `name` in OUT/name; a run an earlier sitting finished is read back, one it began is resumed (a
        sitting that was stopped continues where it stopped: the same command again). A run that left out other
        images than asked now (the audit flagged others) is trained again."""
        folder = out / name
        recorded = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
        same_images = recorded.get("exclude") == extra.get("exclude")
        if same_images and (folder / "results.json").is_file():
            results = json.loads((folder / "results.json").read_text())
            timing[f"{name}_s"] = round(results["wall_time_s"], 1)
            return results
        started = time.perf_counter()
        config = preset_config(args.preset, data_dir=str(data_dir) if data_dir else None, **shared, **extra)
        if same_images and (folder / "checkpoints" / "last.pt").is_file():
            results = train(config, folder, resume=True)
        else:
            results = train(config, folder, overwrite=True)
        timing[f"{name}_s"] = round(time.perf_counter() - started, 1)
        return results

    clean_results = run("clean", args.data_dir)  # first: its folder can be audited on the test split meanwhile
    noisy_results = run("noisy", out / "noisy-data")
    started = time.perf_counter()
    # the noisy copy named: $CIFARKIT_DATA (or --data-dir's clean copy) must not stand in for the run's own data
    summary = audit(
        out / "noisy",
        split="train",
        folds=args.folds,
        preset=args.preset,
        data_dir=out / "noisy-data",
        fold_overrides=overrides,
    )
    timing["audit_s"] = round(time.perf_counter() - started, 1)
    with open(out / "noisy" / "audit" / "audit.csv", newline="") as f:
        flagged = {int(r["image"]) for r in csv.DictReader(f) if r["split"] == "train" and r["issue"] == "label"}
    truth = set(flipped.tolist())
    hits = len(flagged & truth)
    precision, recall = hits / max(len(flagged), 1), hits / max(len(truth), 1)
    from cifarkit.audit import read_exclude_file

    excluded = read_exclude_file(out / "noisy" / "audit" / "exclude.txt")
    cleaned_results = run("cleaned", out / "noisy-data", exclude=excluded)

    print(
        f"label issues flagged: {len(flagged)}; flipped: {len(truth)}; precision {precision:.1%}, recall {recall:.1%}"
    )
    for name, results in (
        ("noisy", noisy_results),
        (f"cleaned (-{len(excluded)})", cleaned_results),
        ("clean labels", clean_results),
    ):
        print(f"test accuracy, {name}: {results['test_accuracy']:.2%}")
    info = machine_info(resolve_device(noisy_results["device"]))
    machine_line = f"{describe_machine(info)}, dtype {noisy_results['dtype']}"
    print(f"machine: {machine_line}; audit timing: {summary['timing']}")
    row = {
        "flipped": len(truth),
        "flagged": len(flagged),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "excluded": len(excluded),
        "test_accuracy_noisy": round(noisy_results["test_accuracy"] * 100, 2),
        "test_accuracy_cleaned": round(cleaned_results["test_accuracy"] * 100, 2),
        "test_accuracy_clean": round(clean_results["test_accuracy"] * 100, 2),
        "audit_timing_s": {k: round(v, 1) for k, v in summary["timing"].items()},
        "audit_memory_peak_mib": summary["memory_peak_mib"],
        **timing,
    }
    if args.record is not None:
        words = sys.argv[1:] if argv is None else argv
        record = {
            "title": f"label noise {args.noise:.0%}: the audit ({args.folds} folds of {args.preset}) and a "
            "retrain without what it flags",
            "questions": ["history"],
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "commit": records.git_commit(Path(__file__).resolve().parent),
            "machine": machine_line,
            "hardware": records.hardware_of(info),
            "precision": noisy_results["dtype"],
            "command": shlex.join(["python", "benchmarks/label_noise.py", *words]),
            "config": {"preset": args.preset, **shared},
            "rows": [row],
            "note": (
                f"precision {precision:.1%}, recall {recall:.1%} of {len(truth)} flipped labels; test "
                f"accuracy noisy {row['test_accuracy_noisy']}%, cleaned {row['test_accuracy_cleaned']}%, "
                f"clean labels {row['test_accuracy_clean']}%"
            ),
        }
        write_json(args.record, record)
        print(f"record: {args.record}")
    return row


if __name__ == "__main__":
    main()
