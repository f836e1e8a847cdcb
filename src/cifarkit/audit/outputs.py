"""What an audit leaves in its folder, each file written atomically: audit.csv (one row per flagged image),
exclude.txt (the training images to leave out of a retrain: `cifarkit train --exclude`), audit.json (counts per
issue and class, the settings, the timing; written last, so its presence says the audit finished)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from ..files.atomic import write_json, write_text
from ..rundir.names import AUDIT_CSV, AUDIT_HTML, AUDIT_JSON, EXCLUDE_TXT
from .issues import ISSUES, TRAIN_TEST

COLUMNS = (
    "split",
    "image",
    "issue",
    "score",
    "given_label",
    "suggested_label",
    "confidence",
    "duplicate_split",
    "duplicate_image",
)
# What exclude.txt lists: the training images a retrain is better without. Outliers and duplicates within the
# training set are shown, not excluded: they may be rare but right.
EXCLUDED_ISSUES = ("label", TRAIN_TEST)


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def excluded(rows: list[dict]) -> dict[str, str]:
    """{training image: why it is left out}: each image flagged as a label issue or a duplicate of a test image,
    once, in the rows' order."""
    why: dict[str, str] = {}
    for row in rows:
        if row["split"] == "train" and row["issue"] in EXCLUDED_ISSUES and row["image"] not in why:
            why[row["image"]] = (
                f"label issue: given {row['given_label']}, suggested {row['suggested_label']}"
                if row["issue"] == "label"
                else f"duplicates test image {row['duplicate_image']} (distance {row['score']:.4g})"
            )
    return why


def exclude_text(why: dict[str, str], dataset: str) -> str:
    """exclude.txt: the `excluded` training images, one a line, with why after a #."""
    kind = "indices into the training set" if dataset != "folder" else "paths relative to the dataset folder"
    header = [
        f"# training images to leave out ({kind}): {len(why)}",
        "# retrain without them: cifarkit train ... --exclude exclude.txt",
    ]
    return "\n".join(header + [f"{image}  # {reason}" for image, reason in why.items()]) + "\n"


def counts(rows: list[dict], classes: tuple[str, ...]) -> dict:
    """Flagged images per split and issue, and per split, issue and given class."""
    by_issue = Counter((row["split"], row["issue"]) for row in rows)
    by_class = Counter((row["split"], row["issue"], row["given_label"]) for row in rows)
    splits = sorted({row["split"] for row in rows})
    return {
        "per_issue": {s: {issue: by_issue[s, issue] for issue in ISSUES} for s in splits},
        "per_class": {
            s: {issue: {c: by_class[s, issue, c] for c in classes if by_class[s, issue, c]} for issue in ISSUES}
            for s in splits
        },
    }


def write_outputs(folder: Path, rows: list[dict], summary: dict, page: str, dataset: str) -> dict[str, Path]:
    """Write the four files; audit.json last (with how many images exclude.txt lists)."""
    why = excluded(rows)
    summary["excluded"] = len(why)
    paths = {name: folder / name for name in (AUDIT_CSV, EXCLUDE_TXT, AUDIT_HTML, AUDIT_JSON)}
    write_text(paths[AUDIT_CSV], csv_text(rows))
    write_text(paths[EXCLUDE_TXT], exclude_text(why, dataset))
    write_text(paths[AUDIT_HTML], page)
    write_json(paths[AUDIT_JSON], summary)
    return paths
