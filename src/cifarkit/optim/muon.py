"""Muon for the convolution filters and Nesterov SGD for every other parameter, as one optimiser.

Muon (Keller Jordan, 2024; the optimiser of airbench94_muon and the modded-nanoGPT speedruns) replaces a
filter's momentum update by the nearest semi-orthogonal matrix: the update, reshaped to
(out channels) x (in channels * kernel area), keeps its singular vectors while its singular values are all
pushed towards 1, so every direction of the update moves the weights by a similar amount instead of a few
dominant directions taking the whole step. The orthogonalisation is a quintic Newton-Schulz iteration
whose coefficients maximise the slope at zero: a few steps of matrix products (fast in bf16), not an SVD;
it leaves the singular values roughly in [0.5, 1.5], which trains as well as exact orthogonalisation.
Before each update a filter tensor is rescaled to the norm sqrt(out channels): the BatchNorm after every
convolution makes the loss blind to the filters' scale, so a fixed norm keeps the effective step size
that of the schedule (and makes weight decay on the filters meaningless: they get none).

Parameter groups with `use_muon` True take Muon steps (lr, momentum, Nesterov); the others take
torch.optim.SGD's Nesterov/heavy-ball step with L2 weight decay, the same arithmetic (dampening 0), so a
single optimiser, schedule and checkpoint serve a hybrid run. The state is one momentum buffer per
parameter, as SGD's: `state_dict()` round-trips, and a resumed run continues bitwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch

# Coefficients (a, b, c) of X <- a X + b (X X^T) X + c (X X^T)^2 X, from airbench94_muon.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalize(
    updates: torch.Tensor, steps: int = 3, dtype: torch.dtype = torch.bfloat16, eps: float = 1e-7
) -> torch.Tensor:
    """Push the singular values of a matrix, or of each matrix in a stack (B x m x n), towards 1.

    Returns a tensor of `updates`' shape and dtype with the same singular vectors; computed in `dtype`.
    """
    a, b, c = NEWTON_SCHULZ
    x = updates.to(dtype)
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)  # Frobenius norm: the top singular value <= 1
    wide = x.size(-2) <= x.size(-1)
    if not wide:  # iterate on the smaller Gram matrix
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.mT).to(updates.dtype)


class Muon(torch.optim.Optimizer):
    """Muon on the groups marked `use_muon` (their parameters: conv filters, any shape >= 2-D, flattened
    to out x rest), Nesterov or heavy-ball SGD with L2 weight decay on the rest.

    `ns_dtype`: the orthogonalisation's dtype, bf16 where the device computes it natively (airbench's
    choice), float32 elsewhere.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 3,
        ns_dtype: torch.dtype = torch.bfloat16,
    ):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or ns_steps < 1:
            raise ValueError(
                f"Muon: need lr >= 0, 0 <= momentum < 1, weight_decay >= 0, ns_steps >= 1 "
                f"(got {lr}, {momentum}, {weight_decay}, {ns_steps})"
            )
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, use_muon=False)
        super().__init__(params, defaults)
        self.ns_steps, self.ns_dtype = ns_steps, ns_dtype
        for group in self.param_groups:
            if group["use_muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon: a use_muon group holds only matrices or filters (>= 2 dimensions)")

    def _momentum_updates(
        self, group: dict[str, Any], grads: list[torch.Tensor], params: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """SGD's momentum (dampening 0): buf <- momentum * buf + g; the update is buf, or g + momentum * buf."""
        momentum = group["momentum"]
        if momentum == 0:
            return grads
        bufs = []
        for p, g in zip(params, grads):
            state = self.state[p]
            if "momentum_buffer" not in state:  # the first step: buf = g, as torch.optim.SGD
                state["momentum_buffer"] = g.detach().clone()
            else:
                state["momentum_buffer"].mul_(momentum).add_(g)
            bufs.append(state["momentum_buffer"])
        return torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs

    @torch.no_grad()
    def step(self, closure=None):  # torch.optim's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["use_muon"]:
                self._muon_step(group, params, grads)
            else:
                if group["weight_decay"]:
                    grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
                torch._foreach_add_(params, self._momentum_updates(group, grads, params), alpha=-group["lr"])
        return loss

    def _muon_step(self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        updates = self._momentum_updates(group, grads, params)
        # filters of one shape are orthogonalised together, as one batch of matrices
        by_shape: dict[torch.Size, list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            by_shape[p.shape].append(i)
        for shape, indices in by_shape.items():
            stacked = torch.stack([updates[i].reshape(shape[0], -1) for i in indices])
            directions = orthogonalize(stacked, self.ns_steps, self.ns_dtype)
            for i, direction in zip(indices, directions):
                p = params[i]
                p.mul_(shape[0] ** 0.5 / p.norm().clamp_min(1e-12))  # the filters' fixed norm, sqrt(out channels)
                p.add_(direction.view(shape), alpha=-group["lr"])
