"""The final numbers of a run (results.json): those of its last epoch, never a best one, with the settings and
the machine that produced them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..models.nets import count_parameters
from ..runtime.device import machine_info

if TYPE_CHECKING:
    from .trainer import Trainer


def results_of(trainer: Trainer) -> dict[str, Any]:
    """The run's results as results.json holds them; its speed is over the epochs' train steps alone."""
    s, cfg = trainer.state, trainer.config
    last = s.history[-1]
    train_images = sum(r["images_per_s"] * r["seconds"] for r in s.history)
    train_seconds = sum(r["seconds"] for r in s.history)
    return {
        "preset": cfg.preset,
        "model": cfg.model,
        "params": count_parameters(trainer.model),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "steps": trainer.scheduler.last_epoch,
        "dataset": cfg.dataset,
        "classes": len(trainer.data.classes),
        "image_size": trainer.data.image_size,
        "test_accuracy": last["test_acc"],
        "test_loss": last["test_loss"],
        **(
            {"val_accuracy": last["val_acc"], "val_loss": last["val_loss"], "n_val": len(trainer.data.val_labels)}
            if trainer.data.val_labels is not None
            else {}
        ),
        "train_accuracy": last["train_acc"],
        "train_loss": last["train_loss"],
        "train_images_per_second": train_images / train_seconds,
        "train_seconds": train_seconds,
        "train_images_seen": round(train_images),  # fewer than epochs x n_train with --prune-easy
        "wall_time_s": s.wall_seconds,
        "max_lr": trainer.max_lr,
        "max_lr_source": trainer.max_lr_source,
        "dtype": str(trainer.dtype).replace("torch.", ""),
        "channels_last": cfg.channels_last,
        "ema_decay": cfg.ema_decay,
        "tta": cfg.tta,
        "seed": cfg.seed,
        "processes": trainer.dist.world_size,
        "n_train": len(trainer.data.train_labels),
        "n_test": len(trainer.data.test_labels),
        "data": str(trainer.data.root),
        "data_layout": trainer.data.layout,
        **machine_info(trainer.device),
    }
