"""One audit, top to bottom: check the run and the output folder, load the run's data as it trained, predict
(the run's model for the test split and for every image's features, K fold runs for the training split's
probabilities), find the issues, write the files."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config.train_config import TrainConfig
from ..errors import UserError
from ..files.atomic import write_json
from ..rundir.checkpoint import checkpoint_digest
from ..rundir.names import AUDIT_FOLDER, REPORT
from ..rundir.run_dir import RunDir
from ..version import __version__
from .folds import (
    assign_folds,
    fold_view,
    record_folds,
    train_folds,
)
from .issues import NEAR_DUPLICATE_THRESHOLD, datalab_rows, train_test_rows
from .outputs import AUDIT_JSON, counts, write_outputs
from .page import write_page
from .predict import Predicted, class_probabilities, predict_for_audit
from .prepare import MARKER, MARKER_FORMAT, Audited, prepare


def audit(
    run_dir: str | os.PathLike,
    split: str = "test",
    folds: int = 5,
    preset: str | None = None,
    out: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
    fold_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Audit the data of the run in `run_dir` and return the summary (also written as OUT/audit.json).

    split: test (the run's own model predicts it), train (K = `folds` fold runs of the run's recipe, or of
    `preset` with `fold_overrides` on top, predict their held-out images), or all. out: the audit folder
    (default RUN_DIR/audit): new, empty, or an earlier audit's (whose finished folds are reused). Writes
    audit.csv, audit.json, audit.html and exclude.txt there.
    """
    clock = _Clock()
    audited = prepare(run_dir, split, folds, preset, out, data_dir, device, fold_overrides)
    clock.lap("data")
    audited.folder.mkdir(parents=True, exist_ok=True)
    lock = RunDir(audited.folder).lock()  # a second audit writing the same folder is refused
    try:
        marker = {"format": MARKER_FORMAT, "run": str(audited.run.path), "cifarkit": __version__}
        write_json(audited.folder / MARKER, marker)
        test, train = _embed(audited, progress)
        clock.lap("embeddings")
        train_probs = _fold_probabilities(audited, folds, preset, progress) if audited.recipe else None
        clock.lap("folds")
        rows, datalab, across = _find_issues(audited, test, train, train_probs)
        clock.lap("cleanlab")
        summary = _summary(audited, split, folds, preset, rows, datalab, across)
        pixels = {
            "train": dict(zip(audited.train_names, audited.train_images)),
            "test": dict(zip(audited.test_names, audited.data.test_images)),
        }
        page = write_page(rows, summary, lambda s, name: pixels[s][name], audited.classes)
        clock.lap("page")
        summary["timing"], summary["memory_peak_mib"] = clock.timing(), clock.memory
        summary["folder"] = str(audited.folder)
        write_outputs(audited.folder, rows, summary, page, audited.config.dataset)
        summary["report"] = _link_from_report(audited.run, audited.folder)
        return summary
    finally:
        lock.unlock()


def _inference(ckpt: dict, config: TrainConfig, dev: torch.device) -> dict[str, Any]:
    """How a model of this run predicts: its data's normalisation, its batch size, precision and memory layout."""
    from ..runtime.device import inference_precision

    return {
        "mean": ckpt["mean"],
        "std": ckpt["std"],
        "batch_size": config.eval_batch_size,
        "dtype": inference_precision(config.precision, dev),
        "channels_last": config.channels_last,
    }


def _embed(a: Audited, progress: bool) -> tuple[Predicted, Predicted]:
    """The run's model on both splits: the test split's probabilities (out of sample: it never trained on them,
    averaged over the run's test-time augmentation views) and every image's features. The training images'
    probabilities are not used (they come from the folds), so they are predicted without the views."""
    how = _inference(a.ckpt, a.config, a.device)
    test = predict_for_audit(
        a.model,
        a.data.test_images.to(a.device),
        **how,
        what="test images (the run's model)",
        progress=progress,
        tta=a.config.tta,
    )
    train = predict_for_audit(
        a.model, a.train_images.to(a.device), **how, what="training images (the run's model)", progress=progress
    )
    return test, train


def _fold_probabilities(a: Audited, folds: int, preset: str | None, progress: bool) -> np.ndarray:
    """Out-of-sample probabilities of the training images: K fold runs (run folders in the audit folder, reused or
    resumed), each predicting the fold it did not train on."""
    from ..evaluate.inference import load_model

    labels = a.train_labels
    fold = assign_folds(labels, folds, a.config.seed)
    made_of = {
        "folds": folds,
        "seed": a.config.seed,
        "images": len(labels),
        "preset": preset or a.config.preset,
        "kept_sha": _digest(a.kept),
    }
    record_folds(a.folder, made_of)
    shaped = a.data.__class__(  # the training images audited, as a dataset of its own
        a.train_images,
        torch.from_numpy(labels),
        a.data.test_images[:0],
        a.data.test_labels[:0],
        classes=a.data.classes,
        name=a.data.name,
        root=a.data.root,
        layout=a.data.layout,
    )
    probs = np.zeros((len(labels), len(a.classes)), dtype=np.float32)
    for k, path in enumerate(train_folds(a.recipe, shaped, fold, folds, a.folder, progress)):
        fold_model, fold_ckpt = load_model(path, a.device)
        held = fold_view(shaped, fold, k).test_images
        probs[fold == k] = class_probabilities(
            fold_model,
            held.to(a.device),
            **_inference(fold_ckpt, a.recipe, a.device),
            what=f"fold {k + 1} held out",
            progress=progress,
            tta=a.recipe.tta,
        )
    return probs


def _find_issues(
    a: Audited, test: Predicted, train: Predicted, train_probs: np.ndarray | None
) -> tuple[list, dict, dict]:
    """(rows, Datalab's summary per split, the train/test duplicates' summary); `train_probs` the folds'."""
    rows, datalab = [], {}
    test_labels = a.data.test_labels.numpy()
    if "test" in a.splits:
        found, datalab["test"] = datalab_rows(
            "test", a.test_names, test_labels, test.probabilities, test.embeddings, test.appearance, a.classes
        )
        rows += found
    if train_probs is not None:
        found, datalab["train"] = datalab_rows(
            "train", a.train_names, a.train_labels, train_probs, train.embeddings, train.appearance, a.classes
        )
        rows += found
    pairs, across = train_test_rows(
        a.train_names,
        a.test_names,
        a.train_labels,
        test_labels,
        a.train_images,
        a.data.test_images,
        train.appearance,
        test.appearance,
        a.classes,
    )
    return rows + pairs, datalab, across


def _summary(a: Audited, split: str, folds: int, preset: str | None, rows, datalab, across) -> dict[str, Any]:
    """audit.json's content but for the timing: what was audited, how, and what was found."""
    per_class = {
        s: dict(zip(a.classes, np.bincount(labels, minlength=len(a.classes)).tolist()))
        for s, labels in (("train", a.train_labels), ("test", a.data.test_labels.numpy()))
    }
    settings = {
        "split": split,
        "folds": folds if a.recipe is not None else None,
        "fold_preset": (preset or a.config.preset) if a.recipe is not None else None,
        "fold_recipe": a.recipe.to_dict() if a.recipe is not None else None,
        "near_duplicate_threshold": NEAR_DUPLICATE_THRESHOLD,
        "device": str(a.device),
        "dataset": a.config.dataset,
        "data": str(a.data.root),
    }
    return {
        "run": str(a.run.path),
        "split": split,
        "settings": settings,
        "settings_line": _settings_line(settings, a.config),
        "images": {"train": len(a.kept), "test": len(a.data.test_labels)},
        "images_per_class": per_class,
        "counts": counts(rows, a.classes),
        "datalab": datalab,
        "train_test_duplicates": across,
        "checkpoint_sha256": checkpoint_digest(a.run),  # the model audited: a later look tells if the run moved on
        "cifarkit": __version__,
    }


class _Clock:
    """Seconds each part of the audit took, and the process's peak memory (resident set, MiB) when each ended:
    what `audit.json` reports as the cost of the audit."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.memory: dict[str, float] = {}

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        self.seconds[f"{part}_s"], self.last = now - self.last, now
        self.memory[part] = _peak_memory_mib()

    def timing(self) -> dict[str, float]:
        return {**self.seconds, "total_s": time.perf_counter() - self.started}


def _peak_memory_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _digest(kept: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(kept.numpy().astype("<i8").tobytes()).hexdigest()[:16]


def _settings_line(settings: dict, config: TrainConfig) -> str:
    line = f"{settings['dataset']}, split {settings['split']}, model {config.model} ({config.preset})"
    if settings["folds"]:
        recipe = settings["fold_recipe"]
        line += (
            f", {settings['folds']} folds of {settings['fold_preset']} ({recipe['model']}, {recipe['epochs']} epochs)"
        )
    return line + f", near duplicates below {NEAR_DUPLICATE_THRESHOLD} x the median distance"


def _link_from_report(run: RunDir, folder: Path) -> str | None:
    """Rebuild the run's report.html, which links the audit in its default folder; the report's path, or None
    where there is no report to rebuild (an audit elsewhere, a run without one, a folder not the run's own)."""
    from ..report.page import write_report

    if folder.resolve() != (run.path / AUDIT_FOLDER).resolve() or not (run.path / REPORT).is_file():
        return None
    try:
        return str(write_report(run))
    except UserError:
        return None


def finished(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a finished audit (its audit.json)."""
    return (Path(folder) / AUDIT_JSON).is_file()
