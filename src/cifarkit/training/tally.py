"""What an epoch adds up: this process's loss and correct sums kept on the device and read by the host only at
sync points into the run state; the lines that show them (the progress bar's, the one after each epoch), and the
error that ends a run whose loss is no longer finite.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import Diverged
from ..rundir.checkpoint import RunState


@dataclasses.dataclass
class EpochTally:
    """This process's sums over its part of an epoch (this rank's images, on the device, until a sync point
    reads them), and the run state's numbers when that part began: a sync point adds the two."""

    rank_sums: torch.Tensor
    loss_sum: float
    correct: int
    train_seconds: float
    seen: int
    started: float

    @classmethod
    def start(cls, state: RunState, device: torch.device) -> EpochTally:
        """Sums from zero, beside the run state's at the start of this process's part of the epoch."""
        # float64: sums of float32 losses stay exact, so a resumed run adds up to the same numbers (MPS lacks it)
        rank_sums = torch.zeros(2, device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)
        return cls(rank_sums, state.loss_sum, state.correct, state.train_seconds, state.seen, time.perf_counter())

    def add(self, loss: torch.Tensor, correct: torch.Tensor) -> None:
        """A step's summed loss and correct count, added on the device (no sync)."""
        self.rank_sums += torch.stack([loss.to(self.rank_sums.dtype), correct.to(self.rank_sums.dtype)])

    def read_into(self, state: RunState, totals: torch.Tensor) -> None:
        """The sums of all ranks (`totals`) and the seconds so far into the run state."""
        state.loss_sum, state.correct = self.loss_sum + totals[0].item(), self.correct + int(totals[1].item())
        state.train_seconds = self.train_seconds + time.perf_counter() - self.started

    def postfix(self, state: RunState, lr: float) -> dict[str, str]:
        """The progress bar's numbers: the epoch's mean loss and accuracy, the lr, this process's speed."""
        return {
            "loss": f"{state.loss_sum / state.seen:.3f}",
            "acc": f"{state.correct / state.seen:.3f}",
            "lr": f"{lr:.2e}",
            "img_s": f"{(state.seen - self.seen) / max(state.train_seconds - self.train_seconds, 1e-9):.0f}",
        }


def diverged(loss: float, state: RunState, lr: float, checkpoint: Path) -> Diverged:
    """The error that ends a run whose loss is no longer finite, naming the checkpoint to go back to."""
    saved = f"The last good checkpoint is {checkpoint}" if checkpoint.exists() else "No checkpoint was written yet"
    return Diverged(
        f"the loss became {loss} at epoch {state.epoch + 1}, step {state.step_in_epoch} "
        f"(lr {lr:.3g}); training stopped. {saved}; try a lower --max-lr"
    )


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """The line printed after each epoch: its lr, train, validation and test numbers and speed."""
    val_acc, test_acc = row.get("val_acc", math.nan), row["test_acc"]
    tested = (f"val loss {row['val_loss']:.4f} acc {val_acc:.2%}  " if math.isfinite(val_acc) else "") + (
        f"test loss {row['test_loss']:.4f} acc {test_acc:.2%}" if math.isfinite(test_acc) else "test -"
    )
    return (
        f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.2e}  "
        f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  {tested}  "
        f"{row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s"
    )
