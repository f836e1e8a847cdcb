"""What the training loop tells its observers (Trainer(observers=...), train(observers=...)): a base class with a
no-op default for every hook, so an observer writes only the hooks it needs (TensorBoard logging, a sweep's
pruning). Steps are counted from 1 over the whole run, so a resumed run continues the same axis."""

from __future__ import annotations

from typing import Any


class Observer:
    """Subclass it and override what you need; the Trainer calls every hook on every observer, in order."""

    def after_sync(self, trainer: Any, step_loss: float, lrs: list[float]) -> None:
        """At the loop's sync points (every step on a CPU, every few on a GPU): this rank's mean loss of the step
        and the lr of each parameter group it used."""

    def after_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        """After an epoch's metrics.csv row (`row`) and its checkpoint are written."""

    def at_end(self, trainer: Any, results: dict[str, Any]) -> None:
        """After the last epoch, with the run's results."""
