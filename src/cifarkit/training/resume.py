"""Exact resume: everything that shapes a run's result, from a Trainer into a checkpoint (plain tensors and
containers, weights_only-loadable) and back.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..rundir.checkpoint import CHECKPOINT_FORMAT, RunState
from ..version import __version__

if TYPE_CHECKING:
    from .trainer import Trainer


def checkpoint_of(trainer: Trainer) -> dict[str, Any]:
    """Everything to continue the run exactly, as plain tensors and containers (weights_only-loadable)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "cifarkit": __version__,
        "model_name": trainer.config.model,
        "config": trainer.config.to_dict(),
        "classes": list(trainer.data.classes),
        "mean": list(trainer.mean),
        "std": list(trainer.std),
        "image_size": trainer.data.image_size,
        "dataset": trainer.config.dataset,
        "max_lr": trainer.max_lr,
        "max_lr_source": trainer.max_lr_source,
        "model": trainer.eval_model.state_dict(),  # the weights evaluate / predict / export use
        **(
            {"training_weights": trainer.model.state_dict(), "ema_n_averaged": trainer.ema.n_averaged}
            if trainer.ema is not None
            else {}
        ),
        **({"lookahead": trainer.lookahead.state_dict()} if trainer.lookahead is not None else {}),
        **({"pruning": trainer.pruning.state_dict()} if trainer.pruning is not None else {}),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "state": dataclasses.asdict(trainer.state),
    }


def restore(trainer: Trainer, ckpt: dict[str, Any]) -> None:
    """Continue `trainer` from a checkpoint (see load_checkpoint) of its run's model."""
    if ckpt["model_name"] != trainer.config.model:
        raise UserError(
            f"{trainer.run.checkpoint}: a checkpoint of model {ckpt['model_name']!r}, "
            f"this run trains {trainer.config.model!r}"
        )
    cfg = trainer.config
    for part, key, saved_without in (  # what this run keeps beside its weights, under its key in the checkpoint
        (trainer.ema, "training_weights", f"a weight average, but this run has ema_decay {cfg.ema_decay}"),
        (
            trainer.lookahead,
            "lookahead",
            f"Lookahead's slow weights, but this run has lookahead_decay {cfg.lookahead_decay}",
        ),
        (trainer.pruning, "pruning", "the losses --prune-easy needs"),
    ):
        if part is not None and key not in ckpt:
            raise UserError(f"{trainer.run.checkpoint}: saved without {saved_without}")
    if trainer.ema is not None:
        trainer.model.load_state_dict(ckpt["training_weights"])
        trainer.ema.module.load_state_dict(ckpt["model"])
        trainer.ema.n_averaged.copy_(ckpt["ema_n_averaged"])
    else:
        trainer.model.load_state_dict(ckpt["model"])
    if trainer.lookahead is not None:
        trainer.lookahead.load_state_dict(ckpt["lookahead"])
    if trainer.pruning is not None:
        trainer.pruning.load_state_dict(ckpt["pruning"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.scheduler.load_state_dict(ckpt["scheduler"])
    trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.max_lr, trainer.max_lr_source = ckpt["max_lr"], ckpt["max_lr_source"]
    trainer.state = RunState(**ckpt["state"])
