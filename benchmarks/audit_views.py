"""How the views a model predicts with change what the audit finds: the fold runs of a label-noise sitting
(benchmarks/label_noise.py's OUT folder) predict their held-out images once per test-time augmentation (none,
flip, flip-translate), cleanlab flags label issues from each, and the flags are scored against the flipped labels.

    python benchmarks/audit_views.py runs/label-noise-20261206-080000

Prints, per set of views: how often the held-out predictions agree with the noisy labels, how many images are
flagged, precision and recall of the flipped among them, and the precision of the top 250 and 500 by label quality.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cifarkit.audit.folds import assign_folds
from cifarkit.config.train_config import TTA_MODES
from cifarkit.data.loading import load_dataset
from cifarkit.evaluate.inference import load_model
from cifarkit.evaluate.metrics import predict_logits
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
        logits = predict_logits(model, held, 500, dtype, True, tta, ckpt["mean"], ckpt["std"])
        probs[fold == k] = logits.float().softmax(1).numpy()
    return probs


def main(argv: list[str] | None = None) -> list[dict]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a label-noise sitting's folder (its noisy/audit/fold-K runs)")
    args = parser.parse_args(argv)
    made_of = read_json(args.out / "noisy" / "audit" / "folds.json", "the audit's folds.json")
    n, folds = made_of["images"], made_of["folds"]
    data = load_dataset("cifar10", args.out / "noisy-data")
    labels, images = data.train_labels[:n].numpy(), data.train_images[:n]
    flipped = np.zeros(n, dtype=bool)
    flipped[[int(line) for line in (args.out / "flipped.txt").read_text().split()]] = True
    fold = assign_folds(labels, folds, made_of["seed"])
    rows = []
    for tta in TTA_MODES:
        probs = held_out_probabilities(args.out, images, fold, folds, tta)
        flagged = find_label_issues(labels, probs)
        ranked = np.argsort(get_label_quality_scores(labels, probs))
        hits = int((flagged & flipped).sum())
        row = {
            "views": tta,
            "agree": float((probs.argmax(1) == labels).mean()),
            "flagged": int(flagged.sum()),
            "precision": hits / max(int(flagged.sum()), 1),
            "recall": hits / int(flipped.sum()),
            "top250": float(flipped[ranked[:250]].mean()),
            "top500": float(flipped[ranked[:500]].mean()),
        }
        rows.append(row)
        print(
            f"{tta:>15}: agree {row['agree']:.1%}; flagged {row['flagged']}, precision {row['precision']:.1%}, "
            f"recall {row['recall']:.1%}; top 250 {row['top250']:.1%}, top 500 {row['top500']:.1%}",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    main()
