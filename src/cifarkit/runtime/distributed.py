"""Data-parallel training under torchrun: PyTorch's own torch.distributed, NCCL on CUDA, gloo on CPU.

Every rank holds the whole dataset and builds the same global batch (same order, same augmentation
draws), then trains on its own slice of it; DDP averages the gradients. The global batch size and the
lr schedule are those of the config, so a run on N processes follows the single-process run.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import UserError
from .invoked import program

# Seconds a collective may wait for a peer before the job fails (a dead or stuck rank).
DEFAULT_TIMEOUT_S = 300
# The longest: torch sets each deadline at now + timeout on a clock counting 64-bit nanoseconds since 1970, which
# overflows beyond 2**63 ns - now (about 7.4e9 s in 2026): a rank then waits for ever or fails at once, and
# beyond 9.2e12 s gloo refuses the value, beyond 8.6e13 s Python's timedelta does (measured with torch 2.13).
# A round bound well inside: about 31 years.
MAX_TIMEOUT_S = 10**9


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


def check_timeout(timeout_s: Any) -> float:
    """--dist-timeout: a number of seconds in (0, MAX_TIMEOUT_S] (NaN and infinity refused)."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= MAX_TIMEOUT_S:
        shown = f"{timeout_s:g}" if isinstance(timeout_s, (int, float)) else repr(timeout_s)
        raise UserError(
            f"--dist-timeout {shown}: must be a number of seconds above 0 and at most "
            f"{MAX_TIMEOUT_S:.0e} (about 31 years; torch's deadlines overflow a little beyond 7e9 s)"
        )
    return float(timeout_s)


def _whole(name: str, low: int, high: float = math.inf) -> int:
    text = os.environ[name]
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        bound = f"in [{low}, {high:.0f}]" if high < math.inf else f">= {low}"
        raise UserError(
            f"the environment's {name}={text!r} is not a whole number {bound}: torchrun sets it for each "
            f"process; unset {'it' if name == 'WORLD_SIZE' else 'it and WORLD_SIZE'} to train in one "
            "process"
        )
    return value


def job_from_env() -> Distributed:
    """The job torchrun describes in the environment (WORLD_SIZE > 1: RANK, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT), its variables checked; a single-process run when WORLD_SIZE is unset or 1. Joins nothing."""
    if "WORLD_SIZE" not in os.environ or _whole("WORLD_SIZE", 1) == 1:
        return Distributed()
    world = _whole("WORLD_SIZE", 1)
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:  # e.g. a WORLD_SIZE left over in the shell from an earlier job
        raise UserError(
            f"the environment sets WORLD_SIZE={world} but not {' or '.join(missing)}: only part of a "
            "torchrun job. Start the job with torchrun (e.g. torchrun --nproc_per_node 2 -m cifarkit "
            "train ...), or unset WORLD_SIZE to train in one process"
        )
    _whole("MASTER_PORT", 1, 65535)
    rank = _whole("RANK", 0, world - 1)
    return Distributed(rank, world, _whole("LOCAL_RANK", 0, world - 1) if "LOCAL_RANK" in os.environ else rank)


def init_from_env(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S, config: Any = None) -> Distributed:
    """Join the job torchrun describes in the environment (WORLD_SIZE > 1); a no-op otherwise.

    Everything is checked before the job is joined, so that a mistake ends every rank in one line and before any
    work: the timeout, torchrun's variables, what `config` (a TrainConfig) asks that several processes cannot do,
    MASTER_ADDR's name, LOCAL_RANK against the GPUs. Joining that fails (no rank 0 at MASTER_ADDR:MASTER_PORT
    within the timeout) is one line too."""
    check_timeout(timeout_s)
    joined = dist.is_available() and dist.is_initialized()  # by the caller, in its own way
    job = current() if joined else job_from_env()
    if job.enabled and config is not None and config.max_lr == "find":
        raise UserError(
            f"--max-lr find under torchrun: run `{program()} lr-find` in one process first, then pass "
            "its suggestion as --max-lr"
        )
    if job.enabled and config is not None and config.prune_easy:
        raise UserError(
            "--prune-easy under torchrun: not supported (a process sees only its share's losses); "
            "drop it, or train in one process"
        )
    if joined or not job.enabled:
        return current()
    address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    try:
        socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise UserError(
            f"the environment's MASTER_ADDR={address!r}: cannot find that host "
            f"({getattr(e, 'strerror', None) or e}); set it to the address of rank 0's machine"
        ) from None
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if job.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {job.local_rank}: this machine has {torch.cuda.device_count()} GPU(s); "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(job.local_rank)
    try:
        with _c_level_stderr_held():  # each failed try logs C++ stack frames: on failure this line says it all
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    except RuntimeError as e:  # torch's DistNetworkError, DistStoreError: a timeout, a refused or odd connection
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"rank {job.rank} of {job.world_size} could not join the job at MASTER_ADDR={address} "
            f"MASTER_PORT={port} within --dist-timeout {timeout_s:g} s ({type(e).__name__}: "
            f"{reason[:300]}); check that all {job.world_size} processes were started and that "
            "MASTER_ADDR and MASTER_PORT name rank 0's machine and a port open on it"
        ) from None
    return current()


@contextlib.contextmanager
def _c_level_stderr_held() -> Iterator[None]:
    """What torch's C++ side (and anything else) writes to file descriptor 2 while the block runs, held back; said
    after it only if the block succeeds."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hold
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            raise
        else:
            sys.stderr.flush()
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
        finally:
            os.close(saved)


def shutdown() -> None:
    """Destroy the process group, after whatever still holds it (a DDP model in a reference cycle).

    A gloo group whose last reference goes only at interpreter exit can abort the process there
    ("terminate called without an active exception"), after a run that had finished well.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
