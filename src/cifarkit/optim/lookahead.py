"""Lookahead over the weights and BatchNorm statistics, on the schedule airbench made work for short runs.

Lookahead (Zhang et al., 2019) keeps a slow copy of the model: every `every` optimiser steps the slow
copy moves towards the model, `slow <- decay_t * slow + (1 - decay_t) * model`, and the model restarts
from it. Here `decay_t = decay * (t / total) ** 3`: ~0 for most of the run (early training untouched),
rising to `decay` at the end, where it averages away the noise of the last high-lr steps. After the
last step the model takes the slow weights, so the trained model *is* the average (unlike an EMA,
which is a second model).
"""

from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    def __init__(self, model: nn.Module, decay: float, every: int, total_steps: int):
        if not 0 < decay < 1 or every < 1 or total_steps < 1:
            raise ValueError(
                f"Lookahead: need 0 < decay < 1, every >= 1, total_steps >= 1 (got {decay}, {every}, {total_steps})"
            )
        self.model, self.decay, self.every, self.total_steps = model, decay, every, total_steps
        # floating-point entries of the state dict: parameters and BatchNorm running statistics
        self.slow = {name: t.detach().clone() for name, t in model.state_dict().items() if t.is_floating_point()}

    def decay_at(self, step: int) -> float:
        return self.decay * (step / self.total_steps) ** 3

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Call after optimiser step number `step` (1-based) of the run."""
        if step % self.every == 0:
            self._pull(self.decay_at(step))
        if step == self.total_steps:
            self._pull(1.0)  # the model ends as the slow weights

    def _pull(self, decay: float) -> None:
        current = self.model.state_dict()  # tensors sharing storage with the model's
        for name, slow in self.slow.items():
            slow.lerp_(current[name], 1.0 - decay)
            current[name].copy_(slow)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.slow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.slow) - set(state))
        if missing:
            raise KeyError(f"Lookahead state lacks {', '.join(missing)}")
        for name, slow in self.slow.items():
            slow.copy_(state[name])
