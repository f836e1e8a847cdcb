"""How the views a model predicts with, and the rule that flags, change what the audit finds: the fold runs of a
label-noise sitting (benchmarks/label_noise.py's OUT folder) predict their held-out images once per test-time
augmentation (none, flip, flip-translate), cleanlab flags label issues from each by each of its rules
(`find_label_issues(filter_by=...)`), and the flags are scored against the flipped labels.

    python benchmarks/audit_views.py runs/label-noise-20261206-080000
    python benchmarks/audit_views.py OUT --views flip-translate --rules prune_by_noise_rate low_self_confidence

Prints, per set of views: how often the held-out predictions agree with the noisy labels and the precision of the
top 250 and 500 by label quality; per rule: how many images are flagged, precision and recall of the flipped among
them, and their F1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cifarkit.audit.folds import assign_folds
from cifarkit.audit.issues import LABEL_RULE
from cifarkit.audit.predict import class_probabilities
from cifarkit.config.train_config import TTA_MODES
from cifarkit.data.loading import load_dataset
from cifarkit.evaluate.inference import load_model
from cifarkit.files.reader import read_json
from cifarkit.runtime.device import inference_precision


def held_out_probabilities(out: Path, images: torch.Tensor, fold: np.ndarray, folds: int, tta: str) -> np.ndarray:
    """Each fold run's probabilities of the images it did not train on, with the views of `tta`."""
    cpu = torch.device("cpu")
    probs = np.zeros((len(images), 10), dtype=np.float32)
    for k in range(folds):
        model, ckpt = load_model(out / "noisy" / "audit" / f"fold-{k + 1}" / "checkpoints" / "last.pt", cpu)
        held = images[torch.from_numpy(fold == k)]
        dtype = inference_precision(ckpt["config"].get("precision", "auto"), cpu)
        probs[fold == k] = class_probabilities(model, held, ckpt["mean"], ckpt["std"], 500, dtype, True, tta=tta)
    return probs


# cleanlab's rules that flag from probabilities alone (find_label_issues' filter_by)
RULES = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)


def main(argv: list[str] | None = None) -> list[dict]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a label-noise sitting's folder (its noisy/audit/fold-K runs)")
    parser.add_argument("--views", nargs="+", choices=TTA_MODES, default=list(TTA_MODES), help="(default: all)")
    parser.add_argument(
        "--rules", nargs="+", choices=RULES, default=[LABEL_RULE], help=f"cleanlab's filter_by (default: {LABEL_RULE})"
    )
    args = parser.parse_args(argv)
    made_of = read_json(args.out / "noisy" / "audit" / "folds.json", "the audit's folds.json")
    n, folds = made_of["images"], made_of["folds"]
    data = load_dataset("cifar10", args.out / "noisy-data")
    labels, images = data.train_labels[:n].numpy(), data.train_images[:n]
    flipped = np.zeros(n, dtype=bool)
    flipped[[int(line) for line in (args.out / "flipped.txt").read_text().split()]] = True
    fold = assign_folds(labels, folds, made_of["seed"])
    rows = []
    for tta in args.views:
        probs = held_out_probabilities(args.out, images, fold, folds, tta)
        ranked = np.argsort(get_label_quality_scores(labels, probs))
        agree, top250, top500 = (
            (probs.argmax(1) == labels).mean(),
            flipped[ranked[:250]].mean(),
            flipped[ranked[:500]].mean(),
        )
        print(f"{tta:>15}: agree {agree:.1%}; top 250 {top250:.1%}, top 500 {top500:.1%}", flush=True)
        for rule in args.rules:
            flagged = find_label_issues(labels, probs, filter_by=rule)
            hits = int((flagged & flipped).sum())
            precision, recall = hits / max(int(flagged.sum()), 1), hits / int(flipped.sum())
            row = {
                "views": tta,
                "rule": rule,
                "agree": float(agree),
                "flagged": int(flagged.sum()),
                "precision": precision,
                "recall": recall,
                "f1": 2 * precision * recall / max(precision + recall, 1e-12),
                "top250": float(top250),
                "top500": float(top500),
            }
            rows.append(row)
            print(
                f"{tta:>15}, {rule}: flagged {row['flagged']}, precision {precision:.1%}, recall {recall:.1%}, "
                f"F1 {row['f1']:.3f}",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
