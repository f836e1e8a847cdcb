"""One audit, top to bottom: check the run and the output folder, load the run's data as it trained, predict
(the run's model for the test split and for every embedding, K fold runs for the training split's probabilities),
find the issues, write the files."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config.train_config import TrainConfig, build_config
from ..data.exclude import image_names, kept_positions
from ..errors import UserError
from ..files.atomic import write_json
from ..files.reader import read_json
from ..rundir.names import AUDIT_FOLDER, REPORT
from ..rundir.outputs import data_areas, refuse_inside_data
from ..rundir.run_dir import RunDir
from ..version import __version__
from .folds import (
    assign_folds,
    check_folds,
    fold_config,
    fold_view,
    record_folds,
    train_folds,
)
from .issues import NEAR_DUPLICATE_THRESHOLD, datalab_rows, train_test_rows
from .outputs import AUDIT_JSON, counts, write_outputs
from .page import write_page
from .predict import probabilities_and_embeddings

SPLITS = ("test", "train", "all")
MARKER = ".cifarkit-audit.json"  # makes a folder an audit's own: a later audit may write into it again
MARKER_FORMAT = "cifarkit audit folder"


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
    from ..data.loading import load_checkpoint_data
    from ..evaluate.inference import load_model
    from ..runtime.device import inference_precision, resolve_device

    started = time.perf_counter()
    if split not in SPLITS:
        raise UserError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    try:  # before any work: the fold runs would be wasted
        import cleanlab  # noqa: F401 (only whether it imports)
    except ImportError:
        raise UserError("the audit needs cleanlab: pip install 'cifarkit[audit]'") from None
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise UserError(f"{run.path}: no such run folder")
    if not os.path.lexists(run.checkpoint):
        raise UserError(
            f"{run.path}: no checkpoint (checkpoints/last.pt): an audit needs a trained model; train the "
            "run first, or finish it with `cifarkit train --resume`"
        )
    dev = resolve_device(device)
    model, ckpt = load_model(run.checkpoint, dev)
    config = TrainConfig.from_dict(ckpt["config"])
    folder = Path(out) if out is not None else run.path / AUDIT_FOLDER
    refuse_inside_data(folder, "--out", *data_areas(config.dataset, data_dir or config.data_dir))
    _check_folder(folder)
    data = load_checkpoint_data(ckpt, data_dir, with_train=True)  # the moved folder, other classes: refused here
    kept = kept_positions(data, config.exclude, config.limit_train)  # the images the run trained on
    train_names = [image_names(data, "train")[i] for i in kept.tolist()]
    test_names = image_names(data, "test")[: len(data.test_labels)]
    train_images, train_labels = data.train_images[kept], data.train_labels[kept].numpy()
    test_labels = data.test_labels.numpy()
    classes = tuple(data.classes)
    audited = ("test", "train") if split == "all" else (split,)
    if "test" in audited:
        _need_two_classes(test_labels, classes, "test")
    recipe = None
    if "train" in audited:
        check_folds(folds, train_labels, classes)
        base = (
            config
            if preset is None
            else build_config(
                preset,
                overrides={
                    "dataset": config.dataset,
                    "labels": config.labels,
                    "image_size": config.image_size,
                    "seed": config.seed,
                    **(fold_overrides or {}),
                },
            )
        )
        if preset is None and fold_overrides:
            base = TrainConfig.from_dict({**config.to_dict(), **fold_overrides})
        if device != "auto":  # the folds train where the audit was asked to run
            base = TrainConfig.from_dict({**base.to_dict(), "device": device})
        recipe = fold_config(base, ckpt.get("max_lr") if preset is None else None)
    loaded = time.perf_counter()

    folder.mkdir(parents=True, exist_ok=True)
    lock = RunDir(folder).lock()  # a second audit writing the same folder is refused
    try:
        write_json(folder / MARKER, {"format": MARKER_FORMAT, "run": str(run.path), "cifarkit": __version__})
        dtype = inference_precision(config.precision, dev)

        def predict(net, images, what):
            return probabilities_and_embeddings(
                net,
                images.to(dev),
                ckpt["mean"],
                ckpt["std"],
                config.eval_batch_size,
                dtype,
                config.channels_last,
                what,
                progress,
            )

        test_probs, test_features = predict(model, data.test_images, "test images (the run's model)")
        _, train_features = predict(model, train_images, "training images (the run's model)")
        embedded = time.perf_counter()
        train_probs = None
        if recipe is not None:
            fold = assign_folds(train_labels, folds, config.seed)
            record_folds(
                folder,
                {
                    "folds": folds,
                    "seed": config.seed,
                    "images": len(train_labels),
                    "preset": preset or config.preset,
                    "kept_sha": _digest(kept),
                },
            )
            shaped = data.__class__(
                train_images,
                torch.from_numpy(train_labels),
                data.test_images[:0],
                data.test_labels[:0],
                classes=data.classes,
                name=data.name,
                root=data.root,
                layout=data.layout,
            )
            train_probs = np.zeros((len(train_labels), len(classes)), dtype=np.float32)
            for k, path in enumerate(train_folds(recipe, shaped, fold, folds, folder, progress)):
                fold_model, fold_ckpt = load_model(path, dev)
                held = fold_view(shaped, fold, k).test_images
                train_probs[fold == k], _ = probabilities_and_embeddings(
                    fold_model,
                    held.to(dev),
                    fold_ckpt["mean"],
                    fold_ckpt["std"],
                    recipe.eval_batch_size,
                    inference_precision(recipe.precision, dev),
                    recipe.channels_last,
                    f"fold {k + 1} held out",
                    progress,
                )
        trained = time.perf_counter()

        rows, datalab = [], {}
        if "test" in audited:
            found, datalab["test"] = datalab_rows("test", test_names, test_labels, test_probs, test_features, classes)
            rows += found
        if train_probs is not None:
            found, datalab["train"] = datalab_rows(
                "train", train_names, train_labels, train_probs, train_features, classes
            )
            rows += found
        pairs, across = train_test_rows(
            train_names,
            test_names,
            train_labels,
            test_labels,
            train_images,
            data.test_images,
            train_features,
            test_features,
            classes,
        )
        rows += pairs
        ranked = time.perf_counter()

        per_class = {
            s: dict(zip(classes, np.bincount(labels, minlength=len(classes)).tolist()))
            for s, labels in (("train", train_labels), ("test", test_labels))
        }
        settings = {
            "split": split,
            "folds": folds if recipe is not None else None,
            "fold_preset": (preset or config.preset) if recipe is not None else None,
            "fold_recipe": recipe.to_dict() if recipe is not None else None,
            "near_duplicate_threshold": NEAR_DUPLICATE_THRESHOLD,
            "device": str(dev),
            "dataset": config.dataset,
            "data": str(data.root),
        }
        summary = {
            "run": str(run.path),
            "split": split,
            "settings": settings,
            "settings_line": _settings_line(settings, config),
            "images": {"train": len(train_labels), "test": len(test_labels)},
            "images_per_class": per_class,
            "counts": counts(rows, classes),
            "datalab": datalab,
            "train_test_duplicates": across,
            "cifarkit": __version__,
        }
        pixels = {"train": dict(zip(train_names, train_images)), "test": dict(zip(test_names, data.test_images))}
        page = write_page(rows, summary, lambda s, name: pixels[s][name], classes)
        paged = time.perf_counter()
        summary["timing"] = {
            "data_s": loaded - started,
            "embeddings_s": embedded - loaded,
            "folds_s": trained - embedded,
            "cleanlab_s": ranked - trained,
            "page_s": paged - ranked,
            "total_s": time.perf_counter() - started,
        }
        summary["folder"] = str(folder)
        write_outputs(folder, rows, summary, page, config.dataset)
        summary["report"] = _link_from_report(run, folder)
        return summary
    finally:
        lock.unlock()


def _check_folder(folder: Path) -> None:
    """Refuse an --out that is a file, or a folder of other files (not empty, not an earlier audit's)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder}: a file is in the way; choose a folder")
    if not folder.is_dir():
        return
    if os.path.lexists(folder / MARKER):
        try:
            if read_json(folder / MARKER, "cifarkit audit marker").get("format") == MARKER_FORMAT:
                return
        except (UserError, AttributeError):
            pass
    others = sorted(p.name for p in folder.iterdir() if p.name not in (".cifarkit.lock", ".DS_Store"))
    if others:
        raise UserError(
            f"--out {folder}: a folder of other files ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}), not an earlier audit; choose a new or empty folder"
        )


def _need_two_classes(labels: np.ndarray, classes: tuple[str, ...], split: str) -> None:
    present = np.flatnonzero(np.bincount(labels, minlength=len(classes)))
    if len(present) < 2:
        raise UserError(
            f"the {split} images audited are all of one class "
            f"({classes[present[0]] if len(present) else '-'}); a label audit needs at least two classes"
        )


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
