"""The One Cycle schedule, stepped every batch.

Training uses PyTorch's own OneCycleLR (so lr *and* momentum/beta1 follow it
exactly as in the S10 notebook); `planned_schedule` replays it on a dummy
parameter, which gives the whole planned curve as plain numbers for plots
and tests before any training happens.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import OneCycleLR

from ..config.presets import lowest_pct_start
from ..config.train_config import TrainConfig
from ..errors import Unschedulable


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Batches per epoch; the last, smaller batch is kept (50,000 / 512 -> 98 steps, as the S10 notebook)."""
    return math.ceil(num_images / batch_size)


def check_schedule(config: TrainConfig, steps_per_epoch: int) -> None:
    """Refuse what OneCycleLR cannot schedule. Its rise ends at step pct_start * total_steps - 1 and interpolates
    over it: when that is step 0, the rise has no length and it divides by zero on the first step."""
    total_steps = config.epochs * steps_per_epoch
    if float(config.pct_start * total_steps) - 1 == 0:
        lowest = lowest_pct_start(total_steps, config.three_phase)
        raise Unschedulable(
            f"--pct-start {config.pct_start:g} of {total_steps} steps ({config.epochs} epoch(s) x "
            f"{steps_per_epoch} steps) puts the lr peak on the first step, which OneCycleLR cannot "
            "schedule: "
            + (
                f"use --pct-start {lowest:g} (the smallest share that peaks after it), or change --epochs"
                if lowest
                else "change --pct-start, --epochs"
            )
            + " or --batch-size (or the number of training images: --limit-train, --val-split)"
        )


def one_cycle(optimizer: torch.optim.Optimizer, config: TrainConfig, max_lr: float, steps_per_epoch: int) -> OneCycleLR:
    """One Cycle peaking at `max_lr` (times a parameter group's "lr_scale", where it has one)."""
    check_schedule(config, steps_per_epoch)

    def momentum(cycled: float) -> list[float]:  # per group: the Muon group's (cifarkit.optim.muon) stays its own
        return [config.muon_momentum if g.get("use_muon") else cycled for g in optimizer.param_groups]

    return OneCycleLR(
        optimizer,
        max_lr=[max_lr * group.get("lr_scale", 1.0) for group in optimizer.param_groups],
        total_steps=config.epochs * steps_per_epoch,
        pct_start=config.pct_start,
        anneal_strategy=config.anneal_strategy,
        cycle_momentum=config.cycle_momentum,
        base_momentum=momentum(config.base_momentum),
        max_momentum=momentum(config.max_momentum),
        div_factor=config.div_factor,
        final_div_factor=config.final_div_factor,
        three_phase=config.three_phase,
    )


def planned_schedule(config: TrainConfig, max_lr: float, steps_per_epoch: int) -> list[float]:
    """The lr of every optimiser step of the run, in order (length epochs * steps_per_epoch)."""
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=max_lr, momentum=0.9)
    scheduler = one_cycle(dummy, config, max_lr, steps_per_epoch)
    lrs = []
    for _ in range(config.epochs * steps_per_epoch):
        lrs.append(dummy.param_groups[0]["lr"])
        dummy.step()
        scheduler.step()
    return lrs
