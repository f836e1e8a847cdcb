"""Using a trained checkpoint: evaluate on the test set (with test-time augmentation), predict image
files, export to ONNX."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config.train_config import TrainConfig
from ..data.augment import normalize
from ..data.folder import read_image
from ..data.loading import load_checkpoint_data
from ..errors import UserError
from ..models.nets import build_model
from ..rundir.checkpoint import load_checkpoint
from ..runtime.device import inference_precision, resolve_device
from ..runtime.progress import predicting, progress_bar
from ..version import __version__
from .metrics import confusion_matrix, per_class_accuracy, predict_logits


def load_model(checkpoint: str | os.PathLike, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of a checkpoint (or of RUN_DIR/checkpoints/last.pt), in eval mode on `device`."""
    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt["model_name"], num_classes=len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    model = model.to(device).to(memory_format=torch.channels_last)
    return model.eval(), ckpt


def image_size(ckpt: dict[str, Any]) -> int:
    """The side of the images a checkpoint's model was trained on (checkpoints before datasets: 32)."""
    return int(ckpt.get("image_size", 32))


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_dir: str | None = None,
    tta: str | None = None,
    limit_test: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Test loss and accuracy (overall and per class) of a checkpoint, as a JSON-ready dict; `progress`: a bar on
    stderr while the test images are predicted (minutes on a CPU with test-time views)."""
    dev = resolve_device(device)
    model, ckpt = load_model(checkpoint, dev)
    config = TrainConfig.from_dict(ckpt["config"])
    tta = tta or config.tta  # by default the test-time augmentation the run reported with
    dtype = inference_precision(config.precision, dev)
    data = load_checkpoint_data(ckpt, data_dir, limit_test).to(dev)
    with progress_bar(len(data.test_labels), predicting("testing", tta, config.tta_below), progress, unit="img") as bar:
        logits = predict_logits(
            model,
            data.test_images,
            config.eval_batch_size,
            dtype,
            config.channels_last,
            tta,
            ckpt["mean"],
            ckpt["std"],
            config.tta_below,
            bar.update,
        )
    labels, predicted = data.test_labels, logits.argmax(1)
    counts = confusion_matrix(labels, predicted, len(data.classes))
    return {
        "checkpoint": str(checkpoint),
        "tta": tta,
        "n_test": len(labels),
        "test_accuracy": float((predicted == labels).float().mean()),
        "test_loss": float(F.cross_entropy(logits, labels)),
        "per_class_accuracy": dict(zip(data.classes, map(float, per_class_accuracy(counts)))),
        "dtype": str(dtype).replace("torch.", ""),
        "device": str(dev),
        "data": str(data.root),
    }


def predict_files(
    checkpoint: str | os.PathLike, paths: list[str], top_k: int | None = None, tta: str = "none", device: str = "auto"
) -> list[dict[str, Any]]:
    """Top-k classes (default 3, or every class of a model with fewer) with probabilities for each image file
    (decoded as the run's folder images are: the shorter side resized to the run's image size, then the centre;
    see folder.read_image)."""
    dev = resolve_device(device)
    model, ckpt = load_model(checkpoint, dev)
    classes = ckpt["classes"]
    top_k = min(3, len(classes)) if top_k is None else top_k
    if not 1 <= top_k <= len(classes):
        raise UserError(f"--top-k {top_k}: must lie in 1..{len(classes)}")
    images = torch.stack([read_image(p, image_size(ckpt)) for p in paths]).to(dev)
    config = TrainConfig.from_dict(ckpt["config"])
    probs = predict_logits(
        model,
        images,
        dtype=inference_precision(config.precision, dev),
        tta=tta,
        mean=ckpt["mean"],
        std=ckpt["std"],
        tta_below=config.tta_below,
    ).softmax(1)
    top = probs.topk(top_k, dim=1)
    return [
        {"image": str(p), "top": [{"class": classes[int(i)], "probability": float(v)} for v, i in zip(values, indices)]}
        for p, values, indices in zip(paths, top.values, top.indices)
    ]


class _WithNormalisation(nn.Module):
    """Raw pixels in [0, 255] as float -> the model's normalised input -> logits."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(x, self.mean, self.std))


def export_onnx(checkpoint: str | os.PathLike, path: str | os.PathLike, raw_input: bool = False) -> dict[str, Any]:
    """Write an ONNX model (fp32, dynamic batch) and check it against PyTorch with onnxruntime."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise UserError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'cifarkit[onnx]'") from None
    from ..files.atomic import write_bytes

    model, ckpt = load_model(checkpoint, torch.device("cpu"))
    if raw_input:
        model = _WithNormalisation(model, ckpt["mean"], ckpt["std"]).eval()
    generator = torch.Generator().manual_seed(0)
    size = image_size(ckpt)
    pixels = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8, generator=generator)
    example = pixels.float() if raw_input else normalize(pixels, ckpt["mean"], ckpt["std"])
    with warnings.catch_warnings(), _quiet_logger("torch.onnx"), _quiet_logger("torch.export"):
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the user's business
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    shape = f"N x 3 x {size} x {size}"
    stats = ", ".join(f"{name} ({', '.join(f'{v:.4f}' for v in ckpt[name])})" for name in ("mean", "std"))
    described = (
        f"raw pixels 0..255 (float32, {shape}, RGB)"
        if raw_input
        else f"normalised images (float32, {shape}, RGB, (x/255 - mean) / std with this run's {stats})"
    )
    # what a receiver of the file alone needs to feed it and read it (onnx.load(f).metadata_props)
    proto = program.model_proto  # built afresh at each access
    onnx.helper.set_model_props(
        proto,
        {
            "input": described,
            "classes": json.dumps(list(ckpt["classes"])),
            "image_size": str(size),
            "mean": json.dumps(list(ckpt["mean"])),
            "std": json.dumps(list(ckpt["std"])),
            "normalised_inside": str(raw_input).lower(),
            "cifarkit": __version__,
        },
    )
    buf = proto.SerializeToString()
    path = Path(path)
    write_bytes(path, buf)
    session = onnxruntime.InferenceSession(buf, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = model(example).numpy()
    got = session.run(None, {"images": example.numpy()})[0]
    return {
        "onnx": str(path),
        "input": described,
        "mean": ckpt["mean"],
        "std": ckpt["std"],
        "classes": ckpt["classes"],
        "max_abs_diff": float(np.abs(got - expected).max()),
    }


@contextlib.contextmanager
def _quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
