"""The rules a TrainConfig's values obey beyond their types, in the order `TrainConfig.validate` checks them:
each an (ok, setting, what it must be) triple, so the first that fails names its flag. A rule may assume the
rules before it hold (validate stops at the first failure).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .checks import BRIGHTNESS_RANGE, BRIGHTNESS_RULE, in_range, is_finite, is_fraction, is_positive, is_whole
from .presets import PRESETS

if TYPE_CHECKING:
    from .train_config import TrainConfig

DEVICES = ("auto", "cpu", "cuda", "mps")
Rules = Iterator[tuple[bool, str, str]]


def value_rules(c: TrainConfig, flag: Callable[[str], str]) -> Rules:
    """Every rule for `c`; `flag(name)` is a setting's command-line flag (for rules that name another one)."""
    yield from _recipe(c)
    yield from _optimiser(c)
    yield from _schedule(c, flag)
    yield from _range_test_and_averages(c, flag)
    yield from _images(c)
    yield from _small_windows(c)
    yield from _machine_and_data(c)


def _recipe(c: TrainConfig) -> Rules:
    from ..models.nets import MODELS  # late import: models imports torch, config stays light

    yield c.preset in PRESETS, "preset", f"unknown preset; choose one of {', '.join(PRESETS)}"
    yield c.model in MODELS, "model", f"unknown model; choose one of {', '.join(MODELS)}"
    for name in ("epochs", "batch_size", "eval_batch_size"):
        yield is_whole(getattr(c, name), 1), name, "must be a whole number >= 1"


def _optimiser(c: TrainConfig) -> Rules:
    if isinstance(c.max_lr, str):
        yield c.max_lr == "find", "max_lr", "must be a positive number or 'find'"
        yield (
            c.optimizer != "muon",
            "max_lr",
            "the range test sweeps one lr, Muon's filters have their own: "
            "give --max-lr and --muon-lr (or search both with `cifarkit sweep`)",
        )
    else:
        yield is_positive(c.max_lr), "max_lr", "must be a positive number or 'find'"
    yield is_finite(c.weight_decay) and c.weight_decay >= 0, "weight_decay", "must be >= 0"
    yield is_positive(c.muon_lr), "muon_lr", "must be a positive number"
    for name in ("momentum", "base_momentum", "max_momentum", "muon_momentum"):
        yield is_fraction(getattr(c, name)), name, "must be in [0, 1)"
    yield is_positive(c.norm_lr_scale), "norm_lr_scale", "must be a positive number"
    yield (
        is_whole(c.eval_every, 0),
        "eval_every",
        "must be a whole number of epochs >= 0 (0: only after the last epoch)",
    )
    yield is_fraction(c.label_smoothing), "label_smoothing", "must be in [0, 1)"
    yield is_fraction(c.prune_easy), "prune_easy", "must be in [0, 1) (0: every image, every epoch)"
    yield is_finite(c.tta_below) and 0 < c.tta_below <= 1, "tta_below", "must be a probability in (0, 1]"


def _schedule(c: TrainConfig, flag: Callable[[str], str]) -> Rules:
    yield (
        is_finite(c.pct_start) and 0 < c.pct_start < 1,
        "pct_start",
        "the peak must fall strictly inside the schedule: 0 < pct_start < 1 (the S10 recipe: 5/24)",
    )
    yield (
        not c.three_phase or c.pct_start <= 0.5,
        "pct_start",
        "with --three-phase the lr rises and falls back over pct_start of the steps each: must be <= 0.5",
    )
    yield is_positive(c.div_factor), "div_factor", "must be > 0"
    yield is_positive(c.final_div_factor), "final_div_factor", "must be > 0"


def _range_test_and_averages(c: TrainConfig, flag: Callable[[str], str]) -> Rules:
    yield is_positive(c.lr_find_start), "lr_find_start", "must be a positive number"
    yield (
        is_positive(c.lr_find_end) and c.lr_find_end > c.lr_find_start,
        "lr_find_end",
        f"must be a number above {flag('lr_find_start')} ({c.lr_find_start})",
    )
    yield is_whole(c.lr_find_iters, 20), "lr_find_iters", "must be a whole number of steps >= 20"
    yield is_fraction(c.ema_decay), "ema_decay", "must be in [0, 1) (0 disables the average; typical: 0.99-0.999)"
    yield (
        is_fraction(c.lookahead_decay),
        "lookahead_decay",
        "must be in [0, 1) (0 disables Lookahead; airbench: 0.95**5 = 0.774)",
    )
    yield is_whole(c.lookahead_every, 1), "lookahead_every", "must be a whole number of steps >= 1"


def _images(c: TrainConfig) -> Rules:
    from ..models.nets import has_whitening_stem

    yield (
        is_whole(c.image_size, 16) and c.image_size <= 512,
        "image_size",
        "must be a whole number of pixels in [16, 512]",
    )
    yield (
        c.dataset == "folder" or c.image_size == 32,
        "image_size",
        f"CIFAR images are 32x32; --image-size is for --dataset folder (this run: {c.dataset})",
    )
    for name, most in (("pad_crop", min(16, c.image_size - 1)), ("cutout_size", min(32, c.image_size))):
        value = getattr(c, name)  # reflect padding needs pad < the image's side, the hole must fit in it
        yield is_whole(value, 0) and value <= most, name, f"must be a whole number of pixels in [0, {most}]"
    yield in_range(c.cutout_prob, 0, 1), "cutout_prob", "must be a probability in [0, 1]"
    yield is_whole(c.stem_bias_epochs, 0), "stem_bias_epochs", "must be a whole number of epochs >= 0 (0: all)"
    yield (
        c.stem_bias_epochs == 0 or has_whitening_stem(c.model),
        "stem_bias_epochs",
        f"model {c.model} has no whitening stem (fast, fast-small have one); the fast presets set it, so "
        "with another model add --stem-bias-epochs 0",
    )
    yield in_range(c.brightness, *BRIGHTNESS_RANGE), "brightness", BRIGHTNESS_RULE
    yield is_fraction(c.contrast), "contrast", "must be in [0, 1)"


def _set_by_preset(c: TrainConfig, name: str) -> str:
    """Where the value at fault is the preset's own (its small windows may not fit the user's --epochs or size)."""
    value = getattr(c, name)
    if not value or PRESETS.get(c.preset, {}).get(name) != value:
        return ""
    return (
        f"; the {c.preset} preset sets --{name.replace('_', '-')} {value}: give your own, or --small-crop 0 "
        "--small-crop-epochs 0 for full size throughout"
    )


def _small_windows(c: TrainConfig) -> Rules:
    yield (
        is_whole(c.small_crop, 0) and (c.small_crop == 0 or 8 <= c.small_crop < c.image_size),
        "small_crop",
        f"must be 0 (off) or a whole number of pixels in [8, {c.image_size}) (--image-size)"
        + _set_by_preset(c, "small_crop"),
    )
    at_most = (
        f" (at most {c.epochs - 1})" if is_whole(c.epochs, 2) else " (one epoch: --small-crop 0 --small-crop-epochs 0)"
    )
    yield (
        is_whole(c.small_crop_epochs, 0) and c.small_crop_epochs < c.epochs,
        "small_crop_epochs",
        f"must be a whole number of epochs below --epochs ({c.epochs}): the last ones train at full size"
        + at_most
        + _set_by_preset(c, "small_crop_epochs"),
    )
    yield (
        (c.small_crop == 0) == (c.small_crop_epochs == 0),
        "small_crop_epochs",
        "goes with --small-crop PX: both 0 (off) or both set" + _set_by_preset(c, "small_crop"),
    )


def _machine_and_data(c: TrainConfig) -> Rules:
    yield (
        isinstance(c.device, str) and (c.device in DEVICES or c.device.startswith("cuda:")),
        "device",
        f"unknown device; choose one of {', '.join(DEVICES)} (or cuda:N)",
    )
    yield c.threads is None or is_whole(c.threads, 1), "threads", "must be a whole number >= 1"
    for name in ("limit_train", "limit_test"):
        yield getattr(c, name) is None or is_whole(getattr(c, name), 1), name, "must be a whole number >= 1"
    yield is_whole(c.seed, 0) and c.seed < 2**63, "seed", "must be a whole number >= 0"
    yield (
        c.dataset == "cifar100" or c.labels == "fine",
        "labels",
        f"coarse labels exist for CIFAR-100 only (this run: --dataset {c.dataset})",
    )
    yield is_whole(c.val_split, 0), "val_split", "must be a whole number of images >= 0"
