"""One run's folder: the name of every file in it, atomic writes, listing and clearing.

The folder is the contract between train, resume, the range test, report and evaluate (DESIGN.md):
each of them finds a file through `RunDir`, so a path is spelled once, here.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from .errors import UserError
from .files import save_torch, write_bytes, write_json, write_text

CONFIG = "config.json"
METRICS = "metrics.csv"
RESULTS = "results.json"
CHECKPOINT = "checkpoints/last.pt"
LR_FIND_JSON = "lr_find.json"
LR_FIND_PLOT = "lr_find.png"
MODEL_SUMMARY = "model.txt"
REPORT = "report.html"
# (file, heading) in the order report.html shows them; absent files are left out
PLOTS = (
    ("plots/curves.png", "Training curves"),
    ("plots/lr_schedule.png", "One Cycle schedule"),
    (LR_FIND_PLOT, "LR range test"),
    ("plots/samples.png", "Training images"),
    ("plots/augmented.png", "Augmented images"),
    ("plots/misclassified.png", "Misclassified test images"),
    ("plots/confusion.png", "Confusion matrix"),
    ("plots/per_class.png", "Accuracy per class"),
)
# What a run folder holds; --overwrite removes exactly these before starting again.
RUN_FILES = (CONFIG, METRICS, RESULTS, CHECKPOINT, LR_FIND_JSON, MODEL_SUMMARY, REPORT, *(name for name, _ in PLOTS))
METRIC_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "seconds")


class RunDir:
    """A run folder. `writes=False` (ranks other than 0 under torchrun) turns every write into a no-op, so
    callers need not ask which process they are."""

    def __init__(self, path: str | os.PathLike, writes: bool = True):
        self.path = Path(path)
        self.writes = writes

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def plot(self, name: str) -> Path:
        return self.path / "plots" / f"{name}.png"

    # -- listing and clearing -------------------------------------------------------------------------

    def existing(self) -> list[str]:
        """The run files present, in RUN_FILES order."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def clear(self) -> None:
        """Remove the run files (and nothing else a user may keep in the folder)."""
        if self.writes:
            for name in self.existing():
                (self.path / name).unlink()

    # -- reading ----------------------------------------------------------------------------------------

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON file of the run, or None when absent."""
        path = self.path / name
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e}); restore it or start the run again") from None

    def read_metrics(self) -> list[dict[str, float]]:
        with open(self.path / METRICS, newline="") as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]

    # -- writing (atomic: a file is the old one or the new one, never torn) --------------------------------

    def write_json(self, name: str, obj: Any) -> None:
        if self.writes:
            write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> None:
        if self.writes:
            write_text(self.path / name, text)

    def write_bytes(self, name: str, data: bytes) -> None:
        if self.writes:
            write_bytes(self.path / name, data)

    def write_metrics(self, rows: list[dict[str, float]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self.write_text(METRICS, buf.getvalue())

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> Path:
        if self.writes:
            try:
                save_torch(self.checkpoint, checkpoint)
            except OSError as e:  # a full disk, a read-only folder...: the previous checkpoint is untouched
                raise UserError(f"{self.checkpoint}: could not write the checkpoint ({e.strerror or e}); the previous "
                                f"one is intact. Fix the cause, then continue with: cifarkit train --resume "
                                f"{self.path}") from None
        return self.checkpoint
