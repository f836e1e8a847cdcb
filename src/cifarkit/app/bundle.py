"""`cifarkit export RUN_DIR --app DIR`: a folder that runs the app anywhere, without cifarkit (a HuggingFace
Space as it is):

    model.safetensors   the weights inference uses (the EMA when the run had one); no pickle
    meta.json           its format marker, model name, class names, mean/std, image size, test accuracy, the images
    app.py              the model definition, inference, GradCAM and the Gradio page; imports no cifarkit
    requirements.txt    torch, gradio, safetensors, captum, numpy, pillow
    README.md           what it is and the run's test accuracy, under HuggingFace Spaces front matter
    examples/*.png      10 test images; mistakes/*.png: the most confident mistakes, for the gallery

app.py is bundle_app.py's `main` with everything it uses, copied from cifarkit's source (bundle_source.py).
A class name never becomes a path as it is: the images' file names keep its letters and digits only, shortened.
An export goes into a new or empty folder, or over an earlier bundle (known by its meta.json's format marker),
replacing the bundle's own files only: whatever else is there (a Space's .git, a user's files) stays.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .bundle_app import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    IMAGE_FILE,
    IMAGE_FOLDERS,
    MAX_META_BYTES,
)
from .bundle_source import inline
from .local import example_images
from .page import Classifier

MISTAKES = 50  # test images kept for the bundle's gallery (the app's slider goes to 50)
REQUIREMENTS = ("torch>=2.4", "gradio>=6.31,<7", "safetensors>=0.4", "captum>=0.9", "numpy>=1.24", "pillow>=10.0")
NAME_CHARS = 40  # of a class name in an image's file name: far below the 255 bytes a file name may have


def export_app(checkpoint: str | os.PathLike, folder: str | os.PathLike, data_dir: str | None = None) -> dict[str, Any]:
    """Write the bundle for a run (or checkpoint) into `folder`: a new or empty folder, or an earlier bundle's
    (whose own files are replaced; anything else there stays)."""
    try:
        import safetensors.torch  # noqa: F401 (written in _write_bundle)
    except ImportError:
        raise UserError("the app bundle needs safetensors: pip install 'cifarkit[app]'") from None
    from ..evaluate.explain import test_set_or_none
    from ..evaluate.inference import image_size, load_model
    from ..files.atomic import staged_folder
    from ..rundir.run_dir import run_of

    checkpoint, folder = Path(checkpoint), Path(folder)
    earlier = earlier_bundle_images(folder)  # before any work: a folder of other files is refused
    existing = folder.is_dir()
    model, ckpt = load_model(checkpoint, torch.device("cpu"))
    run = run_of(checkpoint)
    results = run.read_results() or {}
    source = inline()  # before writing anything: a bug here leaves no half bundle
    meta = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "model_name": ckpt["model_name"],
        "classes": list(ckpt["classes"]),
        "mean": list(ckpt["mean"]),
        "std": list(ckpt["std"]),
        "image_size": image_size(ckpt),
        "precision": ckpt["config"].get("precision", "fp32"),  # predictions as `cifarkit predict` makes them
        "test_accuracy": results.get("test_accuracy"),
        "run": run.path.name,
        "cifarkit": ckpt.get("cifarkit"),
        "title": f"What does the model see? ({ckpt['model_name']}, run {run.path.name})",
        "examples": [],
        "mistakes": [],
    }
    without = ": the bundle has no examples or gallery"
    images, labels = test_set_or_none(ckpt, data_dir, "export", without) or (None, None)
    # a full disk or a Ctrl-C leaves no half bundle (a new folder appears whole; into an existing one, meta.json,
    # which names the images, moves last)
    with staged_folder(folder, last="meta.json") as staging:
        _write_bundle(staging, model, ckpt, meta, source, images, labels)
        if existing:
            _move_images(staging, folder, earlier or set())
    _remove_stale_images(folder, (earlier or set()) - {e["file"] for key in IMAGE_FOLDERS for e in meta[key]})
    files = ["app.py", "model.safetensors", "meta.json", "requirements.txt", "README.md"]
    return {
        "folder": str(folder),
        "files": files + [f"{len(meta['examples'])} examples", f"{len(meta['mistakes'])} mistakes"],
        "meta": meta,
    }


def image_name(key: str, index: int, class_name: str) -> str:
    """Where an image of class `class_name` goes in the bundle: `key/NN-NAME.png`, NAME the class name's letters,
    digits, `_` and `-` (any run of other characters, `../` or `/` included, one `_`), at most NAME_CHARS of them."""
    name = re.sub(r"[^\w-]+", "_", class_name).strip("_")[:NAME_CHARS] or "class"
    return f"{key}/{index:02d}-{name}.png"


def earlier_bundle_images(folder: Path) -> set[str] | None:
    """The images (as meta.json lists them) of the bundle exported earlier into `folder`; None for a new or empty
    folder. A folder holding anything else is refused: only a bundle's meta.json carries BUNDLE_FORMAT (an
    app.py and a meta.json of one's own project do not make a bundle)."""
    from ..files.atomic import STAGING

    if not folder.exists() and not folder.is_symlink():
        return None
    if not folder.is_dir():
        raise UserError(f"--app {folder}: exists and is not a folder")
    if not any(p.name != STAGING for p in folder.iterdir()):  # STAGING: what an export cut off left
        return None
    meta = _bundle_meta(folder / "meta.json")
    if meta is None:
        raise UserError(
            f"--app {folder}: a folder with other files in it (not an earlier bundle); export into a new "
            f'or empty folder (a bundle is known by its meta.json\'s "format": "{BUNDLE_FORMAT}")'
        )
    for key in IMAGE_FOLDERS:  # the new images go in there: never through a link to elsewhere
        place = folder / key
        if place.is_symlink() or place.exists() and not place.is_dir():
            raise UserError(
                f"--app {folder}: {key} there is {'a link' if place.is_symlink() else 'a file'}, not "
                "the earlier bundle's folder of images; move it away or export into a new folder"
            )
    return {
        e["file"]
        for key in IMAGE_FOLDERS
        for e in (meta.get(key) if isinstance(meta.get(key), list) else [])
        if isinstance(e, dict) and isinstance(e.get("file"), str) and IMAGE_FILE.fullmatch(e["file"])
    }


def _bundle_meta(path: Path) -> dict[str, Any] | None:
    """meta.json as a dict if it is a bundle's (a regular file holding BUNDLE_FORMAT), else None."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_META_BYTES:
            return None
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT else None


def _move_images(staging: Path, folder: Path, earlier: set[str]) -> None:
    """Move the staged images into the existing `folder` one by one, over the earlier bundle's images of the same
    name and never over another file (a user's own picture in examples/ stays); the staged image folders, then
    empty, go (staged_folder moves the rest)."""
    staged = [
        f"{key}/{p.name}"
        for key in IMAGE_FOLDERS
        if (staging / key).is_dir()
        for p in sorted((staging / key).iterdir())
    ]
    for name in staged:
        target = folder / name
        if (target.exists() or target.is_symlink()) and name not in earlier:
            raise UserError(
                f"--app {folder}: {name} there is not an image of the earlier bundle (its meta.json does "
                "not list it); move it away, or export into a new folder"
            )
    for name in staged:
        (folder / name).parent.mkdir(exist_ok=True)
        os.replace(staging / name, folder / name)
    for key in IMAGE_FOLDERS:
        if (staging / key).is_dir():
            (staging / key).rmdir()


def _remove_stale_images(folder: Path, stale: set[str]) -> None:
    """Remove the earlier bundle's images that the new one does not list, then image folders left empty."""
    for name in sorted(stale):
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    for key in IMAGE_FOLDERS:
        place = folder / key
        if place.is_dir() and not place.is_symlink() and not any(place.iterdir()):
            place.rmdir()


def _write_bundle(
    folder: Path,
    model: torch.nn.Module,
    ckpt: dict[str, Any],
    meta: dict[str, Any],
    source: str,
    images: torch.Tensor | None,
    labels: torch.Tensor | None,
) -> None:
    from PIL import Image
    from safetensors.torch import save

    from ..evaluate.metrics import mistakes
    from ..files.atomic import write_bytes, write_json, write_text

    if images is not None:
        clf = Classifier(
            model, ckpt["classes"], ckpt["mean"], ckpt["std"], meta["image_size"], precision=meta["precision"]
        )
        wrong = mistakes(labels.cpu(), clf.probabilities(images))[:MISTAKES]  # as the bundle will predict
        for key, picks in (
            ("examples", example_images(images, labels)),
            ("mistakes", [(images[i].cpu(), int(labels[i])) for i in wrong]),
        ):
            for n, (image, label) in enumerate(picks):
                buf = io.BytesIO()
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, format="png")
                name = image_name(key, n, meta["classes"][label])
                write_bytes(folder / name, buf.getvalue())
                meta[key].append({"file": name, "label": label})
    weights = {k: v.detach().contiguous() for k, v in ckpt["model"].items()}
    write_bytes(folder / "model.safetensors", save(weights, metadata={"model_name": ckpt["model_name"]}))
    write_json(folder / "meta.json", meta)
    write_text(folder / "app.py", source)
    write_text(folder / "requirements.txt", "\n".join(REQUIREMENTS) + "\n")
    write_text(folder / "README.md", readme(meta))


def readme(meta: dict[str, Any]) -> str:
    """The bundle's README.md: HuggingFace Spaces front matter (the Gradio version exporting it), then what it is."""
    from importlib.metadata import PackageNotFoundError, version

    accuracy = meta["test_accuracy"]
    shown = f"{accuracy:.2%}" if accuracy is not None else "not recorded (the run had not finished)"
    names = ", ".join(meta["classes"][:20]) + (", ..." if len(meta["classes"]) > 20 else "")
    try:
        sdk_version = f"sdk_version: {version('gradio')}\n"
    except PackageNotFoundError:
        sdk_version = ""
    return f"""---
title: {meta["model_name"]} with GradCAM
emoji: 🔍
colorFrom: blue
colorTo: red
sdk: gradio
{sdk_version}app_file: app.py
pinned: false
---

# What does the model see?

A `{meta["model_name"]}` image classifier ({len(meta["classes"])} classes: {names}) trained with cifarkit
(run `{meta["run"]}`). **Test accuracy: {shown}.**

Upload an image or pick one of the test images: the page shows the top-k classes with their probabilities
and a GradCAM heat map of where the model looked for the top class (choose the layer and the opacity), and a
gallery of the test images it got most confidently wrong.

- `python app.py` serves the page on http://127.0.0.1:7860 (`--host 0.0.0.0` to share it on a network)
- `python app.py --predict IMAGE...` prints the top-3 classes of image files as JSON
- On HuggingFace: `hf repos create USER/NAME --type space --sdk gradio`, then `hf upload USER/NAME . --type space`
  from this folder (the Space installs `requirements.txt` and runs `app.py`)

`model.safetensors` holds the weights (no pickle), `meta.json` the class names and normalisation, `app.py`
the model definition, inference and the page; it imports nothing of cifarkit.
"""
