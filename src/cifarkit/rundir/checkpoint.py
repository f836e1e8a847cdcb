"""The checkpoint: its format, the run state it carries besides the weights, and loading it safely.

A checkpoint is a dict of plain tensors and containers, so it loads with `torch.load(weights_only=True)`:
a file that carries code is refused, never run. What it holds (Trainer.checkpoint): format, cifarkit
version, model name, config, classes, mean/std, max lr and its source, the model weights to use (the EMA
when on), the raw training weights and EMA count (with EMA), Lookahead's slow weights, optimiser,
scheduler, grad scaler and the RunState below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config.checks import is_whole
from ..config.train_config import TrainConfig
from ..errors import UserError
from ..files.reader import open_regular
from ..models.nets import MODELS, build_model
from .run_dir import CHECKPOINT, RunDir

CHECKPOINT_FORMAT = 1
CHECKPOINT_LIMIT = 8 << 30  # bytes: the largest network's weights, EMA and optimiser state fit many times over
# The normalisation a dataset can have: per-channel mean and std of pixels scaled to [0, 1] (a std of 1e-6 still
# keeps standardised pixels below 1e6, which a network's float32 sums carry without overflowing to NaN)
MEAN_RANGE, STD_RANGE = (0.0, 1.0), (1e-6, 0.5 + 1e-6)


@dataclass
class RunState:
    """Everything that advances during training, i.e. what a checkpoint must hold besides the weights."""

    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # optimiser steps already taken in that epoch
    loss_sum: float = 0.0  # of the epoch so far, summed over images
    correct: int = 0
    seen: int = 0
    train_seconds: float = 0.0  # of the epoch so far
    wall_seconds: float = 0.0  # of the whole run so far, over every process that trained it
    history: list[dict[str, float]] = field(default_factory=list)  # metrics.csv rows


def checkpoint_digest(run: RunDir) -> str | None:
    """The first 16 hex digits of the SHA-256 of the run's checkpoint, or None without one: what an audit records of
    the model it used, so that a later look can tell when the run has trained on since (--resume, --overwrite)."""
    import hashlib

    path = run.regular_file(CHECKPOINT)
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def checkpoint_changed(run: RunDir, recorded: str | None) -> bool:
    """Whether the run's checkpoint is no longer the one whose `checkpoint_digest` was recorded (nothing recorded:
    no change known)."""
    return recorded is not None and recorded != checkpoint_digest(run)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A cifarkit checkpoint, loaded with weights_only=True: a file that carries code is refused."""
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).checkpoint
    # a regular file (a FIFO or a device would hang torch.load or never end), then what torch.load can read
    with open_regular(path, "checkpoint", CHECKPOINT_LIMIT) as f:
        kind = _other_kind_of_file(f)
        if kind:
            raise UserError(f"{path}: not a checkpoint ({kind}); give a run folder or its checkpoints/last.pt")
        ckpt = _load(f, path)
    if not isinstance(ckpt, dict) or "format" not in ckpt or "model" not in ckpt:
        raise UserError(f"{path}: not a cifarkit checkpoint (no format version or model weights)")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path}: checkpoint format {ckpt['format']!r}, this cifarkit reads format "
            f"{CHECKPOINT_FORMAT}; use the cifarkit version that wrote it ({ckpt.get('cifarkit', 'unknown')})"
        )
    for key in ("model", "training_weights"):  # weights only ever load by copy (see _drop_assign_flags)
        _drop_assign_flags(ckpt.get(key))
    problem = _structure_problem(ckpt)
    if problem:
        raise UserError(f"{path}: not a cifarkit checkpoint: {problem}")
    _check_config(ckpt, path)
    return ckpt


def _check_config(ckpt: dict[str, Any], path: Path) -> None:
    """The checkpoint's settings, checked exactly as a config file's are (types, then ranges and choices), and its
    image size against them: every command that loads it may then use them (precision, TTA, batch sizes)."""
    source = f"{path}: its config"
    try:
        config = TrainConfig.from_dict(ckpt["config"], source=source).validate()
    except UserError as e:  # validate() names the flag only
        raise UserError(str(e) if str(e).startswith(source) else f"{source}: {e}") from None
    size = ckpt.get("image_size", 32)
    if size != config.image_size:
        raise UserError(
            f"{path}: its image size {size} is not its config's --image-size {config.image_size}; "
            "a checkpoint cifarkit wrote has the same in both"
        )


def _load(f: Any, path: Path) -> Any:
    """torch.load with weights_only=True: a file that carries code is refused, never run."""
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle's UnpicklingError and friends (torch's own text advises the unsafe load: not shown)
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if "weights_only" in str(e):  # torch's advice to load it unsafely (or to allow-list) left out; its reason kept
            lines = [
                line.removeprefix("WeightsUnpickler error:").split(". Please use")[0].strip()
                for line in lines
                if "GLOBAL" in line
            ]
        reason = f": {lines[0]}" if lines else ""
        raise UserError(
            f"{path}: refused or unreadable as a checkpoint ({type(e).__name__}{reason}). Only cifarkit "
            "checkpoints of plain tensors load; a file that carries code is never executed"
        ) from None


# The first bytes of files that get passed where a checkpoint belongs (arguments swapped, a run's other files)
_OTHER_FILES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a WebP image"),
    (b"BM", "a BMP image"),
    (b"{", "JSON or text"),
    (b"[", "JSON or text"),
)


def _other_kind_of_file(f: Any) -> str:
    """What an open file is when it cannot be one of torch.save's formats (a zip, or a pickle before torch 1.6); ""
    if it may be one, or cannot be read (torch.load then says why). The file is left at its start."""
    try:
        head = f.read(10)
        f.seek(0)
    except OSError:
        return ""
    # safetensors first: 8 bytes of header length (whose first byte may be 0x80, a pickle's), then its JSON
    if head[8:10] == b'{"':
        return "a safetensors file: weights without the run's settings, as an app bundle's model.safetensors"
    if head.startswith((b"PK\x03\x04", b"\x80")) or not head:
        return ""
    return next((kind for magic, kind in _OTHER_FILES if head.startswith(magic)), "not a file torch.save writes")


def _drop_assign_flags(weights: Any) -> None:
    """torch's load_state_dict keeps per-module flags in the state dict's own `_metadata`, and one of them
    (`assign_to_params_buffers`, left there by any load_state_dict(assign=True), saved and loaded with the dict)
    makes a later plain load replace the model's parameters by the file's tensors instead of copying into them:
    the optimiser then steps parameters the model no longer has, and training silently stops. Removed here."""
    metadata = getattr(weights, "_metadata", None)
    if isinstance(metadata, dict):
        for entry in metadata.values():
            if isinstance(entry, dict):
                entry.pop("assign_to_params_buffers", None)


def _structure_problem(ckpt: dict[str, Any]) -> str:
    """What is wrong with a loaded checkpoint's structure ("" when nothing): checked once, here, so no command
    meets a KeyError or a half-loaded model later."""

    def floats(value: Any, n: int) -> bool:
        return (
            isinstance(value, (list, tuple))
            and len(value) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )

    if not isinstance(ckpt.get("model_name"), str) or ckpt["model_name"] not in MODELS:
        return f"model_name {ckpt.get('model_name')!r} is not one of {', '.join(MODELS)}"
    if not isinstance(ckpt.get("config"), dict):
        return "its config is not a set of settings"
    classes = ckpt.get("classes")
    if not isinstance(classes, (list, tuple)) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        return "its class names are missing or fewer than two"
    if not (floats(ckpt.get("mean"), 3) and floats(ckpt.get("std"), 3)):
        return "its normalisation (mean, std: three numbers each) is missing or invalid"
    for name, (low, high) in (("mean", MEAN_RANGE), ("std", STD_RANGE)):  # NaN fails both comparisons
        if not all(low <= v <= high for v in ckpt[name]):
            return (
                f"its normalisation {name} {list(ckpt[name])} is not that of pixels in [0, 1] (each in "
                f"[{low:g}, {high:.3g}]), so its predictions would be NaN or meaningless"
            )
    size = ckpt.get("image_size", 32)  # a checkpoint without one holds a CIFAR model: 32 pixels
    if not is_whole(size, 1):
        return f"its image size {size!r} is not a whole number of pixels"
    weights = ckpt.get("model")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        return "its model weights are not a dict of tensors"
    broken = next((name for name, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if broken is not None:  # every prediction would be NaN
        return f"its weights hold NaN or infinite values ({broken}), so every prediction would be NaN; train again"
    try:
        build_model(ckpt["model_name"], num_classes=len(classes)).load_state_dict(weights)
    except RuntimeError as e:  # missing/unexpected keys, size mismatches: the weights of another network
        first_reason = (str(e).splitlines()[1:] or [str(e)])[0].strip()  # below torch's "Error(s) in loading" line
        return f"its weights do not fit model {ckpt['model_name']!r} with {len(classes)} classes ({first_reason[:300]})"
    return ""
