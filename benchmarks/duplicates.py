"""Train/test duplicates against a list people judged: how many of a reference list's test images the audit's rule
finds (recall), and what share of what it flags the list judges the same photograph (a lower bound on precision:
a list can miss pairs), with the run's model's head features (the embeddings) and with its appearance features (a
middle layer), at a range of thresholds (x the median nearest-training-image distance), side by side.

    python benchmarks/duplicates.py RUN_DIR --reference duplicates_cifar10.csv --data-dir DIR

The reference is a CSV of TestID, TrainID and Judgment columns (0 identical, 1 the same photograph processed
otherwise, 2 very similar but different photographs: the format of the ciFAIR project's duplicate lists of
CIFAR-10). Judgments 0 and 1 are the duplicates to find; each test image is counted once, and "paired" counts
those whose nearest training image is the one the list names (another copy of the photograph in the training set
is the rest). The threshold is chosen on the even test indices (the highest recall whose lower bound on precision
is at least --precision) and checked on the odd ones, so the figure quoted is not the figure tuned.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import shlex
import sys
from pathlib import Path

import numpy as np
import records
import torch

from cifarkit.audit.issues import NEAR_DUPLICATE_THRESHOLD, nearest_across
from cifarkit.audit.predict import predict_for_audit
from cifarkit.data.loading import load_checkpoint_data
from cifarkit.evaluate.inference import load_model
from cifarkit.files.atomic import write_json
from cifarkit.runtime.device import describe_machine, inference_precision, machine_info, resolve_device

THRESHOLDS = (0.1, 0.13, 0.15, 0.17, 0.2, 0.25, 0.3, 0.4, 0.5)
FEATURES = ("embeddings", "appearance")


class Reference:
    """A judged list: the training images named for each test image, and the test images judged duplicates."""

    def __init__(self, path: Path):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"TestID", "TrainID", "Judgment"} <= set(rows[0]):
            sys.exit(f"--reference {path}: expected a CSV with TestID, TrainID and Judgment columns")
        self.duplicates = {int(r["TestID"]) for r in rows if int(r["Judgment"]) <= 1}
        self.listed = {int(r["TestID"]) for r in rows}
        self.partners: dict[int, set[int]] = {}
        for r in rows:
            self.partners.setdefault(int(r["TestID"]), set()).add(int(r["TrainID"]))

    def scores(self, flagged: set[int], nearest: np.ndarray, among: set[int] | None = None) -> dict:
        """What the flagged test images are by the list, counting only the test images in `among` (default all)."""
        duplicates = self.duplicates if among is None else self.duplicates & among
        flagged = flagged if among is None else flagged & among
        found = flagged & duplicates
        return {
            "flagged": len(flagged),
            "found": len(found),
            "paired": sum(1 for i in found if int(nearest[i]) in self.partners[i]),
            "recall": round(len(found) / max(len(duplicates), 1), 4),
            "precision_at_least": round(len(found) / max(len(flagged), 1), 4),
            "listed": round(len(flagged & self.listed) / max(len(flagged), 1), 4),
        }


def choose_threshold(distance: np.ndarray, nearest: np.ndarray, reference: Reference, precision: float) -> float:
    """The threshold of THRESHOLDS with the highest recall on the even test indices whose lower bound on precision
    there is at least `precision` (the smallest threshold where none is)."""
    even = set(range(0, len(distance), 2))
    median = float(np.median(distance))
    best = THRESHOLDS[0]
    for threshold in THRESHOLDS:
        flagged = set(np.flatnonzero(distance < threshold * median).tolist())
        if reference.scores(flagged, nearest, even)["precision_at_least"] >= precision:
            best = threshold
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run folder (its checkpoints/last.pt)")
    parser.add_argument("--reference", type=Path, required=True, help="the judged duplicates (CSV, see above)")
    parser.add_argument("--data-dir", default=None, help="the run's data (default: as `cifarkit audit` finds it)")
    parser.add_argument("--precision", type=float, default=0.8, help="the precision bound the threshold keeps")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--record", type=Path, default=None, help="write the numbers as a JSON record here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reference = Reference(args.reference)
    device = resolve_device("auto")
    model, ckpt = load_model(args.run / "checkpoints" / "last.pt", device)
    data = load_checkpoint_data(ckpt, args.data_dir, with_train=True)
    dtype = inference_precision(ckpt["config"].get("precision", "auto"), device)
    seen = {
        split: predict_for_audit(model, images.to(device), ckpt["mean"], ckpt["std"], 1000, dtype)
        for split, images in (("train", data.train_images), ("test", data.test_images))
    }
    print(
        f"reference: {len(reference.duplicates)} test images with a training duplicate (judgments 0-1), "
        f"{len(reference.listed)} listed",
        flush=True,
    )
    table = {}
    for kind in FEATURES:
        nearest, distance = nearest_across(getattr(seen["test"], kind), getattr(seen["train"], kind))
        median = float(np.median(distance))
        table[kind] = {"rows": [], "median_distance": round(median, 6)}
        for threshold in THRESHOLDS:
            flagged = set(np.flatnonzero(distance < threshold * median).tolist())
            row = {"threshold": threshold, **reference.scores(flagged, nearest)}
            table[kind]["rows"].append(row)
            print(
                f"{kind:>10} x{threshold:<4}: flagged {row['flagged']:5d}, found {row['found']:4d} "
                f"(recall {row['recall']:.1%}; {row['paired']} with the listed partner), "
                f"same photograph {row['precision_at_least']:.1%} of the flagged, listed {row['listed']:.1%}",
                flush=True,
            )
        chosen = choose_threshold(distance, nearest, reference, args.precision)
        odd = set(range(1, len(distance), 2))
        check = reference.scores(set(np.flatnonzero(distance < chosen * median).tolist()), nearest, odd)
        table[kind]["chosen"] = {"threshold": chosen, "odd_indices": check}
        print(
            f"{kind:>10}: chosen on the even indices x{chosen}; on the odd ones recall {check['recall']:.1%}, "
            f"precision >= {check['precision_at_least']:.1%} ({check['flagged']} flagged)",
            flush=True,
        )
    machine_line = f"{describe_machine(machine_info(device))}, dtype {str(dtype).removeprefix('torch.')}"
    print(f"the audit's threshold: x{NEAR_DUPLICATE_THRESHOLD}; machine: {machine_line}")
    result = {
        "reference": str(args.reference),
        "duplicates": len(reference.duplicates),
        "listed": len(reference.listed),
        **table,
    }
    if args.record is not None:
        words = sys.argv[1:] if argv is None else argv
        write_json(
            args.record,
            {
                "title": "train/test duplicates against a judged list: head features against appearance features",
                "questions": ["history"],
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
                "commit": records.git_commit(Path(__file__).resolve().parent),
                "machine": machine_line,
                "hardware": records.hardware_of(machine_info(device)),
                "precision": str(dtype).removeprefix("torch."),
                "command": shlex.join(["python", "benchmarks/duplicates.py", *words]),
                "config": {"run": str(args.run), "precision_bound": args.precision},
                "rows": [result],
                "note": "; ".join(
                    f"{kind} x{table[kind]['chosen']['threshold']}: recall "
                    f"{table[kind]['chosen']['odd_indices']['recall']:.1%} on the odd test indices"
                    for kind in FEATURES
                ),
            },
        )
        print(f"record: {args.record}")
    return result


if __name__ == "__main__":
    main()
