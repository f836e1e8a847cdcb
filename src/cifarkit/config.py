"""Every hyper-parameter in one place: the TrainConfig dataclass and the named presets.

A config is plain data: it round-trips through JSON (`RUN_DIR/config.json`),
so a run can be repeated exactly from its folder.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adam", "sgd")
ANNEAL = ("linear", "cos")
TTA_MODES = ("none", "flip", "flip-translate")  # test-time augmentation, see augment.tta_views

# The seed's LR range test picked 4.51e-2 (steepest descent on its curve).
SEED_MAX_LR = 4.51e-2


@dataclass
class TrainConfig:
    """One training run. Field names double as CLI flags (`--max-lr` -> max_lr)."""

    preset: str = "s10"
    model: str = "s10"
    epochs: int = 24
    batch_size: int = 512
    # Optimiser (Adam's L2 weight decay as torch.optim.Adam applies it, like the seed).
    optimizer: str = "adam"
    max_lr: float | str = SEED_MAX_LR  # a number, or "find" to run the LR range test first
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    # lr multiplier of the BatchNorm and bias parameters (their weight decay is divided by it, so that
    # their decay per step stays that of the weights); 1 keeps one parameter group, as the seed.
    norm_lr_scale: float = 1.0
    label_smoothing: float = 0.0
    # Exponential moving average of the weights (and BatchNorm buffers), updated every step; when on,
    # the averaged model is the one evaluated, reported and exported. 0 disables.
    ema_decay: float = 0.0
    # Lookahead (cifarkit.lookahead): every `lookahead_every` steps the model restarts from a slow average
    # whose decay ramps as lookahead_decay * (step / total)^3; the model ends as that average. 0 disables.
    lookahead_decay: float = 0.0
    lookahead_every: int = 5
    # Test-time augmentation of every test evaluation and the final result: none | flip | flip-translate.
    tta: str = "none"
    # One Cycle, with the meaning of torch.optim.lr_scheduler.OneCycleLR's arguments.
    pct_start: float = 5 / 24
    div_factor: float = 100.0
    final_div_factor: float = 100.0
    three_phase: bool = False
    anneal_strategy: str = "linear"
    cycle_momentum: bool = True  # OneCycleLR's default, so Adam's beta1 cycles 0.95 -> 0.85 -> 0.95
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    # LR range test (cifarkit lr-find, or max_lr="find"): exponential sweep, as the seed ran it.
    lr_find_start: float = 0.03
    lr_find_end: float = 10.0
    lr_find_iters: int = 200
    # Augmentation of training batches (test images are never augmented).
    pad_crop: int = 4  # reflect-pad this many pixels, then crop 32x32 at random; 0 disables
    flip: bool = True  # horizontal flip with p=0.5
    # with flip: mirror each image every other epoch (a fixed random half in even epochs, the rest in odd
    # ones) instead of a coin toss per image and epoch
    alternate_flip: bool = False
    cutout_size: int = 8  # one square hole filled with the mean colour; 0 disables
    cutout_prob: float = 0.5
    # Where and how it runs.
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on CPU, bf16 (or fp16 + loss scaling) on CUDA
    channels_last: bool = True
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (CUDA only)
    threads: int | None = None  # CPU threads for torch; None keeps torch's default (physical cores)
    eval_batch_size: int = 1024
    # Test-set evaluation every N epochs (the last epoch always); 0: only after the last epoch.
    eval_every: int = 1
    # Data.
    data_dir: str | None = None
    limit_train: int | None = None  # use only the first N training images
    limit_test: int | None = None  # use only the first N test images

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "TrainConfig":
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected an object of settings (name: value), got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: no such config file") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data, source=str(path))

    def validate(self) -> "TrainConfig":
        """Refuse impossible values before any work starts; returns self for chaining."""
        from .models import MODELS  # late import: models imports torch, config stays light

        def need(ok: bool, flag: str, value: Any, what: str) -> None:
            if not ok:
                raise UserError(f"--{flag.replace('_', '-')} {value!r}: {what}")

        need(self.preset in PRESETS, "preset", self.preset, f"unknown preset; choose one of {', '.join(PRESETS)}")
        need(self.model in MODELS, "model", self.model, f"unknown model; choose one of {', '.join(MODELS)}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 1, name, v, "must be a whole number >= 1")
        need(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"choose one of {', '.join(OPTIMIZERS)}")
        if isinstance(self.max_lr, str):
            need(self.max_lr == "find", "max_lr", self.max_lr, "must be a positive number or 'find'")
        else:
            need(_positive(self.max_lr), "max_lr", self.max_lr, "must be a positive number or 'find'")
        need(_finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        need(_finite(self.momentum) and 0 <= self.momentum < 1, "momentum", self.momentum, "must be in [0, 1)")
        need(_positive(self.norm_lr_scale), "norm_lr_scale", self.norm_lr_scale, "must be a positive number")
        need(isinstance(self.eval_every, int) and self.eval_every >= 0, "eval_every", self.eval_every,
             "must be a whole number of epochs >= 0 (0: only after the last epoch)")
        need(_finite(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label_smoothing",
             self.label_smoothing, "must be in [0, 1)")
        need(_finite(self.pct_start) and 0 < self.pct_start < 1, "pct_start", self.pct_start,
             "the peak must fall strictly inside the schedule: 0 < pct_start < 1 (the seed: 5/24)")
        need(_positive(self.lr_find_start), "start_lr", self.lr_find_start, "must be a positive number")
        need(_positive(self.lr_find_end) and self.lr_find_end > self.lr_find_start, "end_lr", self.lr_find_end,
             f"must be a number above --start-lr ({self.lr_find_start})")
        need(isinstance(self.lr_find_iters, int) and self.lr_find_iters >= 20, "num_iter", self.lr_find_iters,
             "must be a whole number of steps >= 20")
        need(_finite(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay", self.ema_decay,
             "must be in [0, 1) (0 disables the average; typical: 0.99-0.999)")
        need(_finite(self.lookahead_decay) and 0 <= self.lookahead_decay < 1, "lookahead_decay",
             self.lookahead_decay, "must be in [0, 1) (0 disables Lookahead; airbench: 0.95**5 = 0.774)")
        need(isinstance(self.lookahead_every, int) and self.lookahead_every >= 1, "lookahead_every",
             self.lookahead_every, "must be a whole number of steps >= 1")
        need(self.tta in TTA_MODES, "tta", self.tta, f"choose one of {', '.join(TTA_MODES)}")
        need(_positive(self.div_factor), "div_factor", self.div_factor, "must be > 0")
        need(_positive(self.final_div_factor), "final_div_factor", self.final_div_factor, "must be > 0")
        need(self.anneal_strategy in ANNEAL, "anneal_strategy", self.anneal_strategy, f"choose one of {', '.join(ANNEAL)}")
        need(isinstance(self.pad_crop, int) and 0 <= self.pad_crop <= 16, "pad_crop", self.pad_crop,
             "must be a whole number of pixels in [0, 16]")
        need(isinstance(self.cutout_size, int) and 0 <= self.cutout_size <= 32, "cutout_size", self.cutout_size,
             "must be a whole number of pixels in [0, 32]")
        need(_finite(self.cutout_prob) and 0 <= self.cutout_prob <= 1, "cutout_prob", self.cutout_prob,
             "must be a probability in [0, 1]")
        need(self.device in DEVICES or self.device.startswith("cuda:"), "device", self.device,
             f"unknown device; choose one of {', '.join(DEVICES)} (or cuda:N)")
        need(self.precision in PRECISIONS, "precision", self.precision, f"choose one of {', '.join(PRECISIONS)}")
        need(self.threads is None or (isinstance(self.threads, int) and self.threads >= 1), "threads",
             self.threads, "must be a whole number >= 1")
        for name in ("limit_train", "limit_test"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, int) and v >= 1), name, v, "must be a whole number >= 1")
        need(isinstance(self.seed, int) and 0 <= self.seed < 2**63, "seed", self.seed, "must be a whole number >= 0")
        return self


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(x: Any) -> bool:
    return _finite(x) and x > 0


# Each preset lists only what differs from the TrainConfig defaults (which are the seed's recipe).
PRESETS: dict[str, dict[str, Any]] = {
    # The ERA S10 assignment exactly: Adam + L2 1e-4, batch 512, One Cycle over 24 epochs peaking
    # at epoch 5, div 100 / final div 100, two linear phases, pad-crop / flip / cutout 8x8.
    "s10": {},
    # The same S10 ResNet (with Page's parameter-free x0.125 on the logits, models.S10ResNet) and 24
    # epochs, the recipe of Page's "How to train your ResNet" series: Nesterov SGD at lr 0.4 / wd 5e-4
    # (mean loss), warm-up to epoch 5 then linear decay to ~0, label smoothing, an EMA of the weights,
    # and flip test-time augmentation.
    "s10-best": {
        "model": "s10-scaled", "optimizer": "sgd", "nesterov": True, "momentum": 0.9, "cycle_momentum": False,
        "max_lr": 0.4, "weight_decay": 5e-4, "div_factor": 20.0, "final_div_factor": 500.0,
        "label_smoothing": 0.2, "ema_decay": 0.995, "tta": "flip",
    },
    # The quickest path to 94%: the small whitened net (models.FastNet, ideas of airbench), batch 1024,
    # Nesterov SGD with a 64x lr for BatchNorm biases, a triangle schedule 0.2 -> 1 -> 0.07 of the peak,
    # label smoothing 0.2, 2 px translations and alternating flips, no cutout, Lookahead (airbench's
    # 0.95**5 every 5 steps); tested once, at the end, with 6 views.
    "fast": {
        "model": "fast", "epochs": 12, "batch_size": 1024,
        "optimizer": "sgd", "nesterov": True, "momentum": 0.85, "cycle_momentum": False,
        "max_lr": 1.5, "weight_decay": 1.33e-3, "norm_lr_scale": 64.0,
        "pct_start": 0.23, "div_factor": 5.0, "final_div_factor": 1 / (0.07 * 5.0),
        "label_smoothing": 0.2, "pad_crop": 2, "cutout_size": 0, "alternate_flip": True,
        "lookahead_decay": 0.95**5, "tta": "flip-translate", "eval_every": 0,
    },
}
# The same recipe at a quarter of the compute, for CPUs without native bf16: a net half as wide and 8 epochs,
# ~12 minutes on 2 AVX2 cores in fp32.
PRESETS["fast-cpu"] = {**PRESETS["fast"], "model": "fast-small", "epochs": 8}


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The named preset, with `overrides` (e.g. from CLI flags) applied on top, validated."""
    if name not in PRESETS:
        raise UserError(f"--preset {name!r}: unknown preset; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig.from_dict({"preset": name, **values}).validate()
