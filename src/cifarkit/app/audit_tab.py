"""The app's "Data audit" tab, there when the run folder holds a finished `cifarkit audit` (RUN_DIR/audit): browse
what it flagged by issue and by given class, each image with its labels (a duplicate beside its twin), the
rows as audit.csv has them, and where the audit's files are.

`AuditBrowser` reads the audit's files and the run's images; `audit_tab` draws it with Gradio. The exported
bundle carries neither: it holds a model, not a dataset.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audit.issues import shown_rows
from ..audit.page import image_name
from ..errors import UserError
from ..files.reader import read_json, read_text
from ..rundir.checkpoint import checkpoint_changed
from ..rundir.names import AUDIT_CSV, AUDIT_FOLDER, AUDIT_HTML, AUDIT_JSON, EXCLUDE_TXT
from ..rundir.run_dir import RunDir
from ..runtime.progress import say

ALL_CLASSES = "all classes"
SHOWN_AT_MOST = 100  # images a request draws: the most certain first
ZOOM = 3  # 32x32 images drawn 96x96, pixels kept square (nearest neighbour)
# The issues as the tab names them, in the order it offers them
ISSUE_NAMES = {
    "label": "probable label errors",
    "train_test_duplicate": "test images that duplicate a training image",
    "near_duplicate": "near duplicates within a split",
    "outlier": "outliers",
    "class_imbalance": "images of under-represented classes",
}
PAIRED = ("train_test_duplicate", "near_duplicate")
AUDITED = {"test": "the test images", "train": "the training images", "all": "the training and test images"}


def _caption(row: dict[str, str]) -> str:
    name, score = image_name(row["split"], row["image"]), float(row["score"])
    if row["issue"] == "label":
        return f"{name}: given {row['given_label']} → {row['suggested_label']} {float(row['confidence']):.0%}"
    if row["issue"] in PAIRED:
        twin = image_name(row["duplicate_split"], row["duplicate_image"])
        return f"{name} ({row['given_label']}) = {twin}, distance {score:.3g}"  # side by side in one picture
    return f"{name} ({row['given_label']}), score {score:.3g}"


class AuditBrowser:
    """A finished audit's rows and summary, and `pixels(split, image)`: the uint8 image (3, H, W) a row names, or
    None where the run's images could not be read (the rows are still listed)."""

    def __init__(
        self,
        folder: Path,
        rows: list[dict[str, str]],
        summary: dict[str, Any],
        pixels: Callable[[str, str], torch.Tensor | None],
        stale: bool = False,
    ):
        self.folder, self.rows, self.summary, self.pixels = folder, rows, summary, pixels
        self.stale = stale  # made with an earlier model of the run

    @classmethod
    def of_run(cls, run_path: Path, images: dict[str, tuple[list[str], torch.Tensor]] | None) -> AuditBrowser | None:
        """The audit in RUN_DIR/audit, or None where there is no finished one. `images`: {split: (names,
        uint8 images)} of the run's data, or None when it could not be read."""
        folder = run_path / AUDIT_FOLDER
        if not (folder / AUDIT_JSON).is_file():
            return None
        summary = read_json(folder / AUDIT_JSON, "the audit's summary", "run `cifarkit audit RUN_DIR` again")
        text = read_text(folder / AUDIT_CSV, "the audit's list of flagged images")
        rows = list(csv.DictReader(io.StringIO(text)))
        if not isinstance(summary, dict) or (rows and not {"split", "image", "issue", "score"} <= set(rows[0])):
            raise UserError(f"{folder}: not a cifarkit audit's audit.json and audit.csv; run `cifarkit audit` again")
        where = {s: dict(zip(names, range(len(names)))) for s, (names, _) in (images or {}).items()}

        def pixels(split: str, image: str) -> torch.Tensor | None:
            position = where.get(split, {}).get(image)
            return None if position is None else images[split][1][position]

        stale = checkpoint_changed(RunDir(run_path), summary.get("checkpoint_sha256"))
        return cls(folder, rows, summary, pixels, stale)

    def issues(self) -> list[tuple[str, str]]:
        """(label with its count, issue) of each issue found, in ISSUE_NAMES's order."""
        counts = {issue: len(self.matching(issue, ALL_CLASSES)) for issue in ISSUE_NAMES}
        return [(f"{ISSUE_NAMES[i]} ({n:,})", i) for i, n in counts.items() if n]

    def classes(self) -> list[str]:
        return [ALL_CLASSES, *sorted({row["given_label"] for row in self.rows})]

    def matching(self, issue: str, given: str) -> list[dict[str, str]]:
        """The rows of `issue` whose given label is `given` (or any), most certain first (audit.csv's order)."""
        return shown_rows([r for r in self.rows if given in (ALL_CLASSES, r["given_label"])], issue)

    def picture(self, row: dict[str, str]) -> np.ndarray | None:
        """The row's image zoomed (H x W x 3 uint8), its duplicate beside it; None without the images."""
        images = [self.pixels(row["split"], row["image"])]
        if row["issue"] in PAIRED and row.get("duplicate_image"):
            images.append(self.pixels(row["duplicate_split"], row["duplicate_image"]))
        if any(image is None for image in images):
            return None
        drawn = [image.permute(1, 2, 0).numpy().repeat(ZOOM, 0).repeat(ZOOM, 1) for image in images]
        gap = np.full((drawn[0].shape[0], 2 * ZOOM, 3), 255, dtype=np.uint8)
        return np.concatenate([drawn[0], *(part for d in drawn[1:] for part in (gap, d))], axis=1)

    def show(self, issue: str | None, given: str, count: float) -> tuple[list, list[list[Any]], str]:
        """(gallery items, table rows, a line saying what is shown) for the first `count` rows of `issue`."""
        if issue is None:
            return [], [], "The audit flagged nothing."
        found = self.matching(issue, given)
        shown = found[: max(1, min(int(count), SHOWN_AT_MOST))]
        pictures = [(self.picture(row), _caption(row)) for row in shown]
        gallery = [(picture, caption) for picture, caption in pictures if picture is not None]
        table = [[row.get(column, "") for column in TABLE] for row in shown]
        missing = "" if len(gallery) == len(shown) else " (images not shown: the run's data could not be read)"
        return gallery, table, f"{len(shown)} of {len(found):,} {ISSUE_NAMES[issue]}{missing}"

    def about(self) -> str:
        """The audit in a few lines of Markdown: what was audited, and where its files are."""
        line = self.summary.get("settings_line", "")
        excluded = self.summary.get("excluded")
        retrain = (
            f" `cifarkit train ... --exclude {self.folder / EXCLUDE_TXT}` retrains without the {excluded:,} "
            "training images it lists."
            if isinstance(excluded, int) and excluded
            else ""
        )
        audited = AUDITED.get(self.summary.get("split"), "the data")
        stale = (
            "**Made with an earlier model of this run** (its checkpoint has changed since): `cifarkit audit "
            "RUN_DIR` again audits the model it has now. "
            if self.stale
            else ""
        )
        return stale + (
            f"Audit of {audited} ({line}). Its page: `{self.folder / AUDIT_HTML}`; "
            f"every flagged image: `{self.folder / AUDIT_CSV}`.{retrain}"
        )


TABLE = ("split", "image", "issue", "score", "given_label", "suggested_label", "confidence", "duplicate_image")


def audit_images(ckpt: dict[str, Any], data_dir: str | os.PathLike | None) -> dict | None:
    """{split: (image names, uint8 images)} of the run's data as the audit named them, or None when the data
    cannot be read here (the tab then lists the rows without images)."""
    from ..data.exclude import image_names
    from ..data.loading import load_checkpoint_data

    try:
        data = load_checkpoint_data(ckpt, data_dir, with_train=True)
        return {split: (image_names(data, split), getattr(data, f"{split}_images")) for split in ("train", "test")}
    except UserError:
        return None


def browse_audit(run_path: Path, ckpt: dict[str, Any], data_dir: str | os.PathLike | None) -> AuditBrowser | None:
    """The browser of the run's finished audit; None without one, or with one that cannot be read (said on
    stderr: the model's page is served all the same)."""
    if not (run_path / AUDIT_FOLDER / AUDIT_JSON).is_file():
        return None
    try:
        return AuditBrowser.of_run(run_path, audit_images(ckpt, data_dir))
    except UserError as e:
        say(f"cifarkit app: the audit is not shown ({e})")
        return None


def audit_tab(browser: AuditBrowser) -> None:
    """Draw the tab's controls, gallery and table inside the current gr.Blocks (and gr.Tab)."""
    import gradio as gr

    issues = browser.issues()
    first = issues[0][1] if issues else None
    gr.Markdown(browser.about(), elem_id="audit-about")
    with gr.Row():
        issue = gr.Dropdown(issues, value=first, label="issue", elem_id="audit-issue", scale=3)
        given = gr.Dropdown(browser.classes(), value=ALL_CLASSES, label="given label", elem_id="audit-class")
        count = gr.Slider(1, SHOWN_AT_MOST, value=20, step=1, label="how many (most certain first)")
    first_images, first_rows, first_line = browser.show(first, ALL_CLASSES, 20)
    shown = gr.Markdown(first_line, elem_id="audit-shown")
    gallery = gr.Gallery(
        first_images,
        label="the image (and its duplicate), given → suggested label",
        columns=6,
        height="auto",
        format="png",
        allow_preview=False,
        buttons=[],
        elem_id="audit-gallery",
    )
    table = gr.Dataframe(first_rows, headers=list(TABLE), interactive=False, wrap=True, elem_id="audit-rows")
    controls = [issue, given, count]
    for control in (issue, given):
        control.change(browser.show, controls, [gallery, table, shown], api_name=False)
    count.release(browser.show, controls, [gallery, table, shown], api_name=False)
