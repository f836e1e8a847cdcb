"""Every hyper-parameter in one place: the TrainConfig dataclass, and a named preset (presets.py) made a config.

Each setting is declared once, as a TrainConfig field made by `setting(...)`: its default (the S10
recipe), its help text, its group and its command-line flag. The `cifarkit` command is generated from
these declarations (cli.add_train_flags), and validate() names the same flags in its messages.

A config is plain data: it round-trips through JSON (`RUN_DIR/config.json`), so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .exclude_list import parse_exclude_flag
from .presets import PRESETS, follow_length
from .settings import Setting, number_or_find, setting
from .validation import DEVICES, value_rules

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adam", "sgd", "muon")
ANNEAL = ("linear", "cos")
TTA_MODES = ("none", "flip", "flip-translate")  # test-time augmentation, see augment.tta_views
DATASETS = ("cifar10", "cifar100", "folder")

# The S10 recipe's LR range test picked 4.51e-2 (steepest descent on its curve).
S10_MAX_LR = 4.51e-2


@dataclass
class TrainConfig:
    """One training run. Each field declares its help, group and flag once (`setting`); cli generates the flags."""

    preset: str = setting(
        "s10", "the recipe this config started from (set by --preset)", "recipe", flag="--preset", cli=False
    )
    model: str = setting("s10", "network to train (`cifarkit summary --model NAME` shows its layers)", "model")
    epochs: int = setting(24, "training epochs", "model")
    batch_size: int = setting(512, "training images per step", "model")
    # Optimiser (Adam's L2 weight decay as torch.optim.Adam applies it, like the S10 recipe).
    optimizer: str = setting(
        "adam",
        "the optimiser (Adam's weight decay is L2, as torch.optim.Adam applies it; muon: "
        "Muon on the conv filters, Nesterov SGD on the rest)",
        "optimiser",
        choices=OPTIMIZERS,
    )
    max_lr: float | str = setting(
        S10_MAX_LR,
        "One Cycle peak lr: a number, or `find` to run the LR range test first",
        "schedule",
        train_only=True,
        parse=number_or_find,
    )
    weight_decay: float = setting(1e-4, "weight decay (per mean loss)", "optimiser")
    momentum: float = setting(0.9, "SGD momentum (with --optimizer sgd, or muon for what is not a filter)", "optimiser")
    nesterov: bool = setting(
        False,
        "Nesterov momentum for the SGD steps (--optimizer sgd, and what is not a filter "
        "with muon: its filter steps are always Nesterov)",
        "optimiser",
    )
    # Muon (cifarkit.optim.muon) steps the conv filters: orthogonalised updates at a fixed weight norm, its own lr
    # scale.
    muon_lr: float = setting(0.24, "--optimizer muon: the filters' peak lr (scheduled as --max-lr)", "optimiser")
    muon_momentum: float = setting(0.6, "--optimizer muon: the filters' Nesterov momentum", "optimiser")
    # lr multiplier of the BatchNorm and bias parameters (their weight decay is divided by it, so that
    # their decay per step stays that of the weights); 1 keeps one parameter group, as the S10 recipe.
    norm_lr_scale: float = setting(
        1.0,
        "lr multiplier of BatchNorm/bias parameters, their weight decay divided by it; 1 = one parameter group",
        "optimiser",
        metavar="K",
    )
    label_smoothing: float = setting(0.0, "cross-entropy label smoothing", "model")
    # InfoBatch (cifarkit.data.batches): epochs but the first and last leave out easy images, the batches shrink.
    prune_easy: float = setting(
        0.0,
        "each epoch but the first and last, leave out each image whose last loss was "
        "below the mean with this probability (the easy ones kept weigh 1/(1-P)); 0 = off",
        "model",
        metavar="P",
    )
    stem_bias_epochs: int = setting(
        0,
        "train the whitening stem's bias for the first N epochs only, then freeze it "
        "(the backward skips the first conv's input gradient); 0 = every epoch",
        "optimiser",
        metavar="N",
    )
    # Exponential moving average of the weights (and BatchNorm buffers), updated every step; when on,
    # the averaged model is the one evaluated, reported and exported. 0 disables.
    ema_decay: float = setting(
        0.0, "keep an exponential moving average of the weights, evaluated and saved; 0 = off", "optimiser", metavar="D"
    )
    # Lookahead (cifarkit.optim.lookahead): every `lookahead_every` steps the model restarts from a slow average
    # whose decay ramps as lookahead_decay * (step / total)^3; the model ends as that average. 0 disables.
    lookahead_decay: float = setting(
        0.0,
        "Lookahead: the model restarts from a slow average every "
        "--lookahead-every steps, decay ramping to this value; 0 = off",
        "optimiser",
        metavar="D",
    )
    lookahead_every: int = setting(5, "steps between Lookahead updates", "optimiser", metavar="N")
    # Test-time augmentation of every test evaluation and the final result: none | flip | flip-translate.
    tta: str = setting(
        "none", "test-time augmentation of the test evaluations and the final result", "evaluation", choices=TTA_MODES
    )
    tta_below: float = setting(
        1.0,
        "--tta's extra views only for images whose plain top-class probability is below P (1: every image)",
        "evaluation",
        metavar="P",
    )
    # One Cycle, with the meaning of torch.optim.lr_scheduler.OneCycleLR's arguments.
    pct_start: float = setting(5 / 24, "fraction of the steps spent rising to the peak lr", "schedule", train_only=True)
    div_factor: float = setting(100.0, "start lr = max lr / this", "schedule", train_only=True)
    final_div_factor: float = setting(100.0, "end lr = start lr / this", "schedule", train_only=True)
    three_phase: bool = setting(
        False, "OneCycleLR's three-phase schedule (down to the start lr, then to the end)", "schedule", train_only=True
    )
    anneal_strategy: str = setting(
        "linear", "shape of the lr's rise and fall", "schedule", train_only=True, choices=ANNEAL
    )
    # OneCycleLR's default, so Adam's beta1 cycles 0.95 -> 0.85 -> 0.95
    cycle_momentum: bool = setting(
        True,
        "cycle the momentum (Adam's beta1) inversely to the lr, between --max-momentum and --base-momentum",
        "schedule",
        train_only=True,
    )
    base_momentum: float = setting(0.85, "momentum at the peak lr (with --cycle-momentum)", "schedule", train_only=True)
    max_momentum: float = setting(
        0.95, "momentum at the start and end (with --cycle-momentum)", "schedule", train_only=True
    )
    # LR range test (cifarkit lr-find, or max_lr="find"): exponential sweep, as the S10 recipe ran it.
    lr_find_start: float = setting(0.03, "first lr of the range test", "lr range test", flag="--start-lr")
    lr_find_end: float = setting(10.0, "last lr of the range test", "lr range test", flag="--end-lr")
    lr_find_iters: int = setting(
        200, "steps of the range test; it stops early on divergence", "lr range test", flag="--num-iter"
    )
    # Augmentation of training batches (test images are never augmented).
    pad_crop: int = setting(
        4, "reflect-pad this many pixels, then crop 32x32 at random; 0 = off", "augmentation", metavar="PX"
    )
    flip: bool = setting(True, "horizontal flips of training images", "augmentation")
    # with flip: mirror each image every other epoch (a fixed random half in even epochs, the rest in odd
    # ones) instead of a coin toss per image and epoch
    alternate_flip: bool = setting(
        False, "mirror each training image every other epoch instead of at random", "augmentation"
    )
    cutout_size: int = setting(
        8, "side of one square hole filled with the mean colour; 0 = off", "augmentation", metavar="PX"
    )
    cutout_prob: float = setting(0.5, "probability of the cutout hole per image", "augmentation", metavar="P")
    # progressive resizing: early epochs train on smaller windows (the nets pool globally), the rest at full size
    small_crop: int = setting(
        0,
        "train the first --small-crop-epochs epochs on a random PX x PX window of each "
        "augmented image (cheaper steps); 0 = off",
        "augmentation",
        metavar="PX",
    )
    small_crop_epochs: int = setting(0, "how many epochs --small-crop lasts", "augmentation", metavar="N")
    brightness: float = setting(
        0.0, "add a shift uniform in +-B to each normalised image; 0 = off", "augmentation", metavar="B"
    )
    contrast: float = setting(
        0.0, "scale each (shifted) normalised image by a factor uniform in 1 +- C; 0 = off", "augmentation", metavar="C"
    )
    # Where and how it runs.
    seed: int = setting(0, "random seed of the weights, batch order and augmentation", "model")
    device: str = setting("auto", f"{', '.join(DEVICES)} or cuda:N (auto: a GPU if there is one)", "runtime")
    precision: str = setting(
        "auto",
        "autocast dtype (auto: bf16 on CPUs with native bf16, else fp32; bf16, else fp16 with loss scaling, on CUDA)",
        "runtime",
        choices=PRECISIONS,
    )
    channels_last: bool = setting(
        True, "channels_last tensors, faster on CPU and tensor cores (--no-channels-last: NCHW)", "runtime"
    )
    sync_bn: bool = setting(
        False,
        "under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm, CUDA only)",
        "runtime",
        train_only=True,
    )
    threads: int | None = setting(
        None,
        "CPU threads for torch (default: torch's choice, the physical cores)",
        "runtime",
        machine=True,
        metavar="N",
    )
    compile: bool = setting(
        False,
        "torch.compile the model for the training steps (inductor; pays on a GPU, not "
        "on the CPUs of the docs' experiments log)",
        "runtime",
        machine=True,
        train_only=True,
    )
    eval_batch_size: int = setting(1024, "images per evaluation batch", "evaluation", metavar="N")
    # Test-set evaluation every N epochs (the last epoch always); 0: only after the last epoch.
    eval_every: int = setting(1, "test every N epochs, the last always; 0 = only at the end", "evaluation", metavar="N")
    # Data.
    dataset: str = setting(
        "cifar10",
        "cifar10, cifar100 (official archives) or folder (DIR/train/CLASS/*.png, "
        "DIR/test/CLASS/... or DIR/val/CLASS/...)",
        "data",
        choices=DATASETS,
    )
    labels: str = setting(
        "fine", "CIFAR-100's labels: fine (100 classes) or coarse (20 superclasses)", "data", choices=("fine", "coarse")
    )
    image_size: int = setting(
        32,
        "folder datasets: images resized to this side (shorter side, then a centre crop), once, and cached",
        "data",
        metavar="PX",
    )
    val_split: int = setting(
        0,
        "hold out N training images (stratified, fixed by --seed) as a validation set, "
        "evaluated every --eval-every epochs; the test set is then evaluated only at the "
        "end",
        "data",
        metavar="N",
    )
    data_dir: str | None = setting(
        None, "dataset folder (default: $CIFARKIT_DATA, else ~/.cache/cifarkit)", "data", machine=True, metavar="DIR"
    )
    limit_train: int | None = setting(None, "train on the first N images only", "data", metavar="N")
    limit_test: int | None = setting(None, "test on the first N images only", "data", metavar="N")
    exclude: list[str] | None = setting(
        None,
        "leave out the training images FILE lists, one a line (an index, or train/CLASS/F.png)",
        "data",
        metavar="FILE",
        parse=parse_exclude_flag,
    )

    def __post_init__(self) -> None:
        for s in SETTINGS.values():  # a pathlib.Path from the Python API (data_dir=Path(...)), kept as its string
            if s.type is str and isinstance(getattr(self, s.name), os.PathLike):
                setattr(self, s.name, os.fspath(getattr(self, s.name)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected an object of settings (name: value), got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        for name, value in data.items():  # types here, naming the file; ranges in validate(), naming the flag
            expected = _type_problem(SETTINGS[name], value)
            if expected:
                try:
                    shown = json.dumps(value)
                except TypeError:  # a value from the Python API that JSON cannot hold: a numpy number, ...
                    shown = f"{value!r} ({type(value).__name__})"
                raise UserError(f"{source}: setting {name!r} must be {expected}, not {shown}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        from ..files.reader import (
            read_json,
        )  # checked: a regular file (not a FIFO or a folder), of bounded size and depth

        path = Path(path)
        return cls.from_dict(read_json(path, "config file"), source=str(path))

    def validate(self) -> TrainConfig:
        """Refuse impossible values before any work starts, naming the flag; returns self for chaining."""

        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise UserError(f"{SETTINGS[name].flag} {getattr(self, name)!r}: {what}")

        for s in SETTINGS.values():
            value = getattr(self, s.name)
            need(not _type_problem(s, value), s.name, f"must be {_type_problem(s, value)}")  # as from_dict checks
            if s.choices is not None:
                need(value in s.choices, s.name, f"choose one of {', '.join(s.choices)}")
        for ok, name, what in value_rules(self, lambda name: SETTINGS[name].flag):
            need(ok, name, what)
        return self


def _type_problem(s: Setting, value: Any) -> str:
    """What a setting's value should have been ("" when its type is right), from the declaration."""
    if value is None:
        return "" if TrainConfig.__dataclass_fields__[s.name].default is None else _TYPE_NAMES[s.type]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: number,
        str: isinstance(value, (str, os.PathLike)),
        object: number or isinstance(value, str),
        list: isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[s.type]
    return "" if ok else _TYPE_NAMES[s.type]


_TYPE_NAMES = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    object: "a number or a string",
    list: "a list of strings",
}


def _settings() -> dict[str, Setting]:
    """Every field's declaration, completed with its name, flag and type (from the annotation)."""
    hints = typing.get_type_hints(TrainConfig)
    settings = {}
    for f in dataclasses.fields(TrainConfig):
        if "setting" not in f.metadata:
            raise TypeError(f"TrainConfig.{f.name}: declare it with setting(default, help, group, ...)")
        info: Setting = f.metadata["setting"]
        kinds = typing.get_args(hints[f.name]) or (hints[f.name],)  # X | None -> (X, NoneType)
        scalars = [k for k in kinds if k is not type(None)]
        if len(scalars) != 1 and info.parse is None:
            raise TypeError(f"TrainConfig.{f.name}: a field of several types needs parse= for its flag")
        settings[f.name] = dataclasses.replace(
            info,
            name=f.name,
            flag=info.flag or "--" + f.name.replace("_", "-"),
            type=(typing.get_origin(scalars[0]) or scalars[0]) if len(scalars) == 1 else object,
        )  # list[str]: list
    return settings


# name -> declaration, in declaration order: what cli generates the flags from and validate() names
SETTINGS: dict[str, Setting] = _settings()
# Where a run computes, not what (declared `machine=True`: the data folder, the thread count, --compile): these
# may differ between the processes that continue one run (a resume, another machine); nothing else may.
MACHINE_SETTINGS = tuple(name for name, s in SETTINGS.items() if s.machine)


def build_config(
    preset: str | None = None, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """A preset (default s10) or a saved config.json, with `overrides` on top (None keeps the value); not validated.

    What the CLI and preset_config build; validate() it once before use.
    """
    values = {k: v for k, v in (overrides or {}).items() if v is not None}
    if config_file is not None:
        if preset is not None:
            raise UserError(f"--config {config_file} and --preset {preset}: give one of them")
        return TrainConfig.from_dict({**TrainConfig.from_json(config_file).to_dict(), **values})
    name = "s10" if preset is None else preset
    if name not in PRESETS:
        raise UserError(f"--preset {name!r}: unknown preset; choose one of {', '.join(PRESETS)}")
    recipe = TrainConfig.from_dict({"preset": name, **PRESETS[name]})
    following, notes = follow_length(name, recipe.to_dict(), values)  # a shorter run keeps the preset's shares
    for note in notes:
        print(note, file=sys.stderr)
    return TrainConfig.from_dict({"preset": name, **PRESETS[name], **following, **values})


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The named preset, with `overrides` (e.g. from CLI flags) applied on top, validated."""
    return build_config(name, overrides=overrides).validate()
