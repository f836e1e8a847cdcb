"""The named recipes: each lists only what differs from TrainConfig's defaults (which are the S10 recipe).

Plain data (setting name -> value), checked like any config when a run starts (config.preset_config).
"""

import math
from fractions import Fraction
from typing import Any

# Each preset lists only what differs from the TrainConfig defaults (which are the S10 recipe).
PRESETS: dict[str, dict[str, Any]] = {
    # The ERA S10 assignment exactly: Adam + L2 1e-4, batch 512, One Cycle over 24 epochs peaking
    # at epoch 5, div 100 / final div 100, two linear phases, pad-crop / flip / cutout 8x8.
    "s10": {},
    # The same S10 ResNet (with Page's parameter-free x0.125 on the logits, models.S10ResNet) and 24
    # epochs, the recipe of Page's "How to train your ResNet" series: Nesterov SGD at lr 0.4 / wd 5e-4
    # (mean loss), warm-up to epoch 5 then linear decay to ~0, label smoothing, an EMA of the weights,
    # and flip test-time augmentation.
    "s10-best": {
        "model": "s10-scaled",
        "optimizer": "sgd",
        "nesterov": True,
        "momentum": 0.9,
        "cycle_momentum": False,
        "max_lr": 0.4,
        "weight_decay": 5e-4,
        "div_factor": 20.0,
        "final_div_factor": 500.0,
        "label_smoothing": 0.2,
        "ema_decay": 0.995,
        "tta": "flip",
    },
    # The quickest path to 94% before Muon (2026-11-24, 4974e10): the small whitened net (models.FastNet, ideas of
    # airbench), batch 1024, Nesterov SGD with a 64x lr for BatchNorm biases, a triangle schedule 0.2 -> 1 ->
    # 0.07 of the peak, label smoothing 0.2, 2 px translations and alternating flips, no cutout, Lookahead
    # (airbench's 0.95**5 every 5 steps); tested once, at the end, with 6 views. Kept so that benchmarks time
    # it beside its successor (time_to_accuracy.py --baseline fast-v1).
    "fast-v1": {
        "model": "fast",
        "epochs": 12,
        "batch_size": 1024,
        "optimizer": "sgd",
        "nesterov": True,
        "momentum": 0.85,
        "cycle_momentum": False,
        "max_lr": 1.5,
        "weight_decay": 1.33e-3,
        "norm_lr_scale": 64.0,
        "pct_start": 0.23,
        "div_factor": 5.0,
        "final_div_factor": 1 / (0.07 * 5.0),
        "label_smoothing": 0.2,
        "pad_crop": 2,
        "cutout_size": 0,
        "alternate_flip": True,
        "lookahead_decay": 0.95**5,
        "tta": "flip-translate",
        "eval_every": 0,
    },
}
# The quickest path to 94% on a CPU: the same net with Muon on its conv filters (cifarkit.optim.muon; airbench94_muon's
# lr 0.24 and momentum 0.6, Nesterov SGD momentum 0.85 for the head and biases at airbench's lrs translated to
# a mean loss and our logit scale), 9 epochs of batch 1000 (twice airbench's steps per epoch at the same images
# a second: a CPU gains nothing from batch 2000), the lr rising from half the peak over 5% of the steps then
# linearly down to 1% of it, no Lookahead, the extra test-time views only for the images the plain view is
# unsure of (below 60%), the whitening stem's bias trained in the first epoch only (then the backward skips the
# first conv's input gradient, ~6% of a step). 94.02 +- 0.13 % over 5 seeds in 0.70x fast-v1's time (2026-11-26,
# 2998f34; with the stem's bias trained throughout, 2026-11-25, c0e8895: 94.07 +- 0.18 % in 0.76x; docs/experiments.md).
PRESETS["fast"] = {
    **PRESETS["fast-v1"],
    "epochs": 9,
    "batch_size": 1000,
    "optimizer": "muon",
    "muon_lr": 0.24,
    "muon_momentum": 0.6,
    "max_lr": 1.66,
    "weight_decay": 2.4e-3,
    "pct_start": 0.05,
    "div_factor": 2.0,
    "final_div_factor": 50.0,
    "lookahead_decay": 0.0,
    "tta_below": 0.6,
    "stem_bias_epochs": 1,
}
# fast-v1 at a quarter of the compute, for CPUs without native bf16: a net half as wide and 8 epochs, ~12 minutes
# on 2 AVX2 cores in fp32 for 91.2%. Kept as the baseline of fast-cpu (time_to_accuracy.py --baseline fast-cpu-v1).
PRESETS["fast-cpu-v1"] = {**PRESETS["fast-v1"], "model": "fast-small", "epochs": 8}
# For CPUs without native bf16: fast's Muon recipe on the net half as wide, the stem's bias frozen after 3 epochs
# (c4efa2d), 11 epochs of which the first 6 train on random 24x24 windows (progressive resizing: such an epoch
# costs ~0.53 of a full one in fp32), Muon lr 0.20. Chosen on the validation split, paired by seed (2026-11-26, 0467255:
# +0.43 +- 0.09 points over c4efa2d's 8 full-size epochs at lr 0.24, 21 seeds). On the test set, 2 AVX2 cores:
# 92.06 +- 0.15 % (3 seeds) in about fast-cpu-v1's time (0.87-0.99x); docs/experiments.md.
PRESETS["fast-cpu"] = {
    **PRESETS["fast"],
    "model": "fast-small",
    "epochs": 11,
    "small_crop": 24,
    "small_crop_epochs": 6,
    "muon_lr": 0.20,
    "stem_bias_epochs": 3,
}

# What a preset ties to its run's length, beyond the length itself (--epochs, and --limit-train's steps per epoch):
# these settings count epochs of the preset's run, so a run of other length keeps the preset's share of it.
# (The One Cycle warm-up is already a share, --pct-start; Lookahead's ramp spans the run by itself; a period such as
# --eval-every or --lookahead-every says how often, not how much of the run, and stays.)
EPOCH_COUNTS = ("small_crop_epochs", "stem_bias_epochs")
# Training images of the official archives, before --limit-train and --val-split: a run's steps are known before
# its data is read (a folder's are not)
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000}


def lowest_pct_start(total_steps: int, three_phase: bool = False) -> float | None:
    """The smallest --pct-start (rounded up to 3 significant digits, so that it can be typed back) whose lr peak
    comes after the first step: OneCycleLR's rise ends at step pct_start * total_steps - 1, which must be >= 1.
    None when no share of `total_steps` does (the peak must fall strictly inside: < 1, <= 0.5 with three phases)."""
    exact = Fraction(2, total_steps)
    scale = 10 ** (2 - math.floor(math.log10(exact)))  # 3 significant digits: pct = units / scale
    units = math.ceil(exact * scale)
    while float(units / scale * total_steps) - 1 < 1:  # OneCycleLR's own arithmetic, in floats
        units += 1
    pct = units / scale
    return pct if pct < 1 and (not three_phase or pct <= 0.5) else None


def follow_length(preset: str, recipe: dict[str, Any], given: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """When the user changes the run's length (`given` --epochs or --limit-train differs from the preset's
    `recipe`, its full settings), the settings the preset ties to that length, made to follow it; a setting in
    `given` is never changed. Returns (the changed settings, one note per change for the user).

    An epoch count (EPOCH_COUNTS) keeps its share of the run, rounded, at least 1 epoch where the preset's is
    (0 means "off" or "every epoch"); --small-crop-epochs stays below --epochs (the last epochs train at full
    size: with one epoch, no small windows). The warm-up's share --pct-start is kept unless the run's steps
    (known for CIFAR) make it peak before the second step: then the smallest share that peaks after the first.
    """
    length = {
        name: given[name]
        for name in ("epochs", "limit_train")
        if given.get(name) is not None and given[name] != recipe[name]
    }
    if not length or not all(_whole(v, 1) for v in length.values()):
        return {}, []  # the same length, or a slip that validate() names
    said = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in length.items())
    epochs, changed, notes = given.get("epochs", recipe["epochs"]), {}, []
    for name in EPOCH_COUNTS if "epochs" in length else ():
        if name in given or not recipe[name]:
            continue
        value = max(1, math.floor(recipe[name] * epochs / recipe["epochs"] + 0.5))
        if name == "small_crop_epochs":
            if given.get("small_crop") == 0:
                continue  # the user turned the windows off: theirs to turn off both (validate() says so)
            value = min(value, epochs - 1)
            if value == 0 and "small_crop" in given:
                continue  # the user's --small-crop wants windows that one epoch cannot have: validate() says so
        if value == 0:  # the windows go with their epochs: both off
            changed.update(small_crop=0, small_crop_epochs=0)
            notes.append(
                f"{preset}: --small-crop {recipe['small_crop']} -> 0 and {_flag(name)} {recipe[name]} -> 0 "
                f"for {said} (the preset trains its last epochs at full size: one epoch has no room for "
                "smaller windows)"
            )
        elif value != recipe[name]:
            changed[name] = value
            notes.append(
                f"{preset}: {_flag(name)} {recipe[name]} -> {value} for {said} (the preset's share of the run)"
            )
    run = {**recipe, **given}
    images = TRAIN_IMAGES.get(run["dataset"])
    if (
        "pct_start" not in given
        and images is not None
        and all(_whole(run[name], least) for name, least in (("batch_size", 1), ("val_split", 0)))
    ):
        images = min(images, run["limit_train"] or images) - run["val_split"]
        steps = math.ceil(images / run["batch_size"]) * epochs if images > 0 else 0
        lowest = lowest_pct_start(steps, bool(run["three_phase"])) if steps else None
        if lowest is not None and float(recipe["pct_start"] * steps) - 1 < 1:
            changed["pct_start"] = lowest
            notes.append(
                f"{preset}: --pct-start {recipe['pct_start']:.4g} -> {lowest:g} for {said} ({steps} steps: "
                "the smallest share that puts the lr peak after the first step)"
            )
    return changed, notes


def _whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
