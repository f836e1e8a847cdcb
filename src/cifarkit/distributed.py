"""Data-parallel training under torchrun: PyTorch's own torch.distributed, NCCL on CUDA, gloo on CPU.

Every rank holds the whole dataset and builds the same global batch (same order, same augmentation
draws), then trains on its own slice of it; DDP averages the gradients. The global batch size and the
lr schedule are those of the config, so a run on N processes follows the single-process run.
"""
from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist

# Seconds a collective may wait for a peer before the job fails (a dead or stuck rank).
DEFAULT_TIMEOUT_S = 300


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job; the defaults describe a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (slices differ by at most one image)."""
        return tensor.tensor_split(self.world_size)[self.rank] if self.enabled else tensor

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (in place; the tensor itself when single-process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is true on any (e.g. a stop request that reached one rank first)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, value):
        """Rank 0's value of a small picklable object, on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. a download), the others after it is done."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


def current() -> Distributed:
    if not (dist.is_available() and dist.is_initialized()):
        return Distributed()
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def init_from_env(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Distributed:
    """Join the job torchrun describes in the environment (WORLD_SIZE > 1); a no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return current()
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return current()


def shutdown() -> None:
    """Destroy the process group, after whatever still holds it (a DDP model in a reference cycle).

    A gloo group whose last reference goes only at interpreter exit can abort the process there
    ("terminate called without an active exception"), after a run that had finished well.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
