"""What the exported bundle's app.py runs: bundle_source.py copies `main`, and everything it uses, into app.py,
where no cifarkit can be imported. The bundle's meta.json and model.safetensors are checked before use (a
damaged or foreign file is a one-line error and exit 2, not a traceback); `python app.py` serves the page,
`python app.py --predict IMAGE...` prints JSON as `cifarkit predict --json` does.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch

from ..data.folder import read_image
from ..errors import UserError
from ..models.nets import MODELS, build_model
from .page import Classifier, build_demo, launch

# meta.json's "format" and "format_version": what tells a bundle's folder from any folder holding a meta.json
BUNDLE_FORMAT = "cifarkit-app-bundle"
BUNDLE_FORMAT_VERSION = 1
IMAGE_FOLDERS = ("examples", "mistakes")
# an image as meta.json lists it: one of IMAGE_FOLDERS, then a plain name (no dots or separators but ".png")
IMAGE_FILE = re.compile(r"(examples|mistakes)/[\w-]+\.png")
MAX_META_BYTES = 10_000_000  # the meta.json of a 100-class model is a few kB
BUNDLE_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
EXPORT_AGAIN = "export the bundle again with `cifarkit export RUN --app DIR`"


def check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """`meta` (meta.json as parsed), once every field this app.py uses is checked; a UserError naming the first
    field that is wrong otherwise."""

    def need(ok: bool, field: str, what: str) -> None:
        if not ok:
            raise UserError(f"{path}: not a bundle's meta.json this app.py can use: {field} {what}; {EXPORT_AGAIN}")

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    need(isinstance(meta, dict), "the file", f"holds {type(meta).__name__}, not an object")
    need(
        meta.get("format") == BUNDLE_FORMAT and meta.get("format_version") == BUNDLE_FORMAT_VERSION,
        "format",
        f"must be {BUNDLE_FORMAT!r}, version {BUNDLE_FORMAT_VERSION}",
    )
    need(
        isinstance(meta.get("model_name"), str) and meta["model_name"] in MODELS,
        "model_name",
        f"must be one of {', '.join(MODELS)}",
    )
    classes = meta.get("classes")
    need(
        isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) and c for c in classes),
        "classes",
        "must be a list of at least 2 class names",
    )
    for key in ("mean", "std"):
        values = meta.get(key)
        need(
            isinstance(values, list)
            and len(values) == 3
            and all(number(v) for v in values)
            and (key == "mean" or min(values) > 0),
            key,
            "must be 3 finite numbers (one per colour channel)" + (", each above 0" if key == "std" else ""),
        )
    need(
        whole(meta.get("image_size")) and 16 <= meta["image_size"] <= 512,
        "image_size",
        "must be a whole number of pixels in 16..512",
    )
    need(meta.get("precision") in BUNDLE_PRECISIONS, "precision", f"must be one of {', '.join(BUNDLE_PRECISIONS)}")
    accuracy = meta.get("test_accuracy")
    need(accuracy is None or number(accuracy) and 0 <= accuracy <= 1, "test_accuracy", "must be null or in 0..1")
    need(isinstance(meta.get("title", ""), str), "title", "must be text")
    for key in IMAGE_FOLDERS:
        entries = meta.get(key)
        need(
            isinstance(entries, list)
            and all(
                isinstance(e, dict)
                and isinstance(e.get("file"), str)
                and IMAGE_FILE.fullmatch(e["file"])
                and e["file"].startswith(f"{key}/")
                and whole(e.get("label"))
                and 0 <= e["label"] < len(classes)
                for e in entries
            ),
            key,
            f'must list images as {{"file": "{key}/NAME.png", "label": CLASS_INDEX}}',
        )
    return meta


def read_meta(folder: Path) -> dict[str, Any]:
    """The bundle's meta.json, checked (a regular file of a sane size holding what check_meta wants)."""
    path = folder / "meta.json"
    if not path.is_file():  # missing, a folder, a FIFO or a device: never opened (a FIFO would hang)
        raise UserError(f"{path}: {'not a regular file' if path.exists() else 'missing'}; {EXPORT_AGAIN}")
    if path.stat().st_size > MAX_META_BYTES:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes is not a bundle's meta.json; {EXPORT_AGAIN}")
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:  # unreadable, not JSON (or not UTF-8), nested too deep
        raise UserError(f"{path}: not readable as JSON ({type(e).__name__}: {str(e)[:200]}); {EXPORT_AGAIN}") from None
    return check_meta(meta, path)


def read_weights(path: Path, model: torch.nn.Module) -> None:
    """Load the bundle's model.safetensors into `model`; a missing, damaged or foreign file is a UserError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path}: {'not a regular file' if path.exists() else 'missing'}; {EXPORT_AGAIN}")
    try:
        model.load_state_dict(load_file(path))
    except (OSError, SafetensorError, RuntimeError) as e:  # garbage, cut short, another model's tensors
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"{path}: not this bundle's model weights ({reason}); {EXPORT_AGAIN}") from None


def load_bundle(folder: str | os.PathLike | None = None, with_images: bool = True) -> tuple[Any, dict[str, Any]]:
    """(Classifier, meta) of a bundle folder (default: the folder of this file); `with_images=False`: without the
    example and mistake images (to predict, which needs none of them)."""
    folder = Path(folder or Path(__file__).resolve().parent)
    meta = read_meta(folder)
    model = build_model(meta["model_name"], num_classes=len(meta["classes"]))
    read_weights(folder / "model.safetensors", model)
    stored = {
        key: [(read_image(folder / e["file"], meta["image_size"]), e["label"]) for e in meta[key]]
        if with_images
        else []
        for key in IMAGE_FOLDERS
    }
    candidates = None
    if stored["mistakes"]:

        def candidates():
            return (
                torch.stack([image for image, _ in stored["mistakes"]]),
                torch.tensor([label for _, label in stored["mistakes"]]),
            )

    return Classifier(
        model.eval(),
        meta["classes"],
        meta["mean"],
        meta["std"],
        meta["image_size"],
        examples=stored["examples"],
        candidates=candidates,
        precision=meta["precision"],
    ), meta


def predict(
    paths: list[str], top_k: int | None = None, folder: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Top-k classes (default 3, or every class of a model with fewer) with probabilities of image files, as
    `cifarkit predict --json` prints them."""
    clf, _ = load_bundle(folder, with_images=False)
    top_k = min(3, len(clf.classes)) if top_k is None else top_k
    if not 1 <= top_k <= len(clf.classes):
        raise UserError(f"--top-k {top_k}: must lie in 1..{len(clf.classes)}")
    probs = clf.probabilities(torch.stack([read_image(p, clf.image_size) for p in paths]))
    top = probs.topk(top_k, dim=1)
    return [
        {
            "image": str(p),
            "top": [{"class": clf.classes[int(i)], "probability": float(v)} for v, i in zip(values, indices)],
        }
        for p, values, indices in zip(paths, top.values, top.indices)
    ]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="A CIFAR classifier with GradCAM (exported by cifarkit).")
    parser.add_argument("--predict", nargs="+", metavar="IMAGE", help="print the top-k classes as JSON and exit")
    parser.add_argument("--top-k", type=int, help="how many classes (default 3, or every class when fewer)")
    parser.add_argument("--host", help="address to bind (default $GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default $GRADIO_SERVER_PORT, else 7860)")
    args = parser.parse_args(argv)
    try:
        if args.port is not None and not 0 < args.port < 65536:  # before the model loads; gradio's is a traceback
            raise UserError(f"--port {args.port}: a TCP port is a whole number in 1..65535 (default 7860)")
        if args.predict:
            print(json.dumps(predict(args.predict, args.top_k), indent=2))
            return 0
        clf, meta = load_bundle()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    accuracy = meta.get("test_accuracy")
    about = (
        f"Model `{meta['model_name']}`, {len(meta['classes'])} classes"
        + (f", test accuracy {accuracy:.2%}" if accuracy is not None else "")
        + ". Exported by cifarkit."
    )
    demo = build_demo(clf, meta.get("title", "What does the model see?"), about)
    try:
        launch(demo, args.host, args.port)
    except OSError as e:  # as `cifarkit app` says it; gradio's defaults come from its environment variables
        where = (
            f"{args.host or os.environ.get('GRADIO_SERVER_NAME', '127.0.0.1')}:"
            f"{args.port or os.environ.get('GRADIO_SERVER_PORT', 7860)}"
        )
        print(
            f"error: cannot serve the page on {where}: the port is in use or the address is not this machine's "
            f"({str(e).split('.')[0]}); choose another --port or --host",
            file=sys.stderr,
        )
        return 2
    return 0
