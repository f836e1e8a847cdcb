"""Training and evaluation: the loop, mixed precision, metrics, checkpoints and exact resume.

Design choices, each for speed or reproducibility:
- the whole dataset sits on the device as uint8; batches are index_select + batched augmentation;
- randomness is derived per (seed, epoch) for the data order and per (seed, epoch, step) for the
  augmentation, so resuming at any step reproduces the uninterrupted run without replaying RNGs;
- losses and accuracies accumulate on the device; the host syncs only every few steps (progress bar).
"""
from __future__ import annotations

import contextlib
import csv
import ctypes
import dataclasses
import hashlib
import io
import math
import os
import platform
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import __version__, distributed
from .augment import Augment, alternating_flips, normalize, tta_views
from .config import TrainConfig
from .data import CIFAR10, MEAN, STD, load_cifar10
from .errors import UserError
from .files import save_torch, write_json, write_text
from .lookahead import Lookahead
from .models import build_model, count_parameters
from .schedule import one_cycle, steps_per_epoch

CHECKPOINT_FORMAT = 1
METRIC_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "seconds")
# Steps between host syncs for the progress bar and the NaN check: a sync stalls a GPU's queue,
# but costs nothing on a CPU, where every step is shown.
SYNC_EVERY = {"cpu": 1, "cuda": 10, "mps": 10}


# ---------------------------------------------------------------------------------------------- setup

def resolve_device(name: str) -> torch.device:
    """The torch.device for a --device value; under torchrun, "auto"/"cuda" mean this rank's own GPU."""
    if name in ("auto", "cuda") and torch.cuda.is_available() and distributed.current().enabled:
        return torch.device("cuda", distributed.current().local_rank)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is visible to PyTorch (torch {torch.__version__}, "
                            f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
        return device
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: Apple's MPS backend is not available here; use --device cpu or auto")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16, AMX or ARM BF16).

    Without it bf16 is emulated and far slower than fp32 (measured 20x slower on an AVX2-only EPYC).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private probe; absent -> read the CPU flags ourselves
        with contextlib.suppress(OSError):
            flags = Path("/proc/cpuinfo").read_text()
            return any(f in flags for f in ("avx512_bf16", "amx_bf16", " bf16"))
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype (float32 = no autocast).

    auto: on CPU, bf16 where the CPU computes it natively, else fp32; on CUDA, bf16 where supported,
    else fp16 (with loss scaling).
    """
    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        if device.type == "cpu":
            raise UserError("--precision fp16: not supported for training on the CPU; use bf16 or fp32")
        return torch.float16
    if precision == "bf16":
        if device.type == "cpu" and not cpu_has_fast_bf16():
            warnings.warn("--precision bf16: this CPU has no native bf16 (AVX512-BF16/AMX), so it is emulated and "
                          "typically much slower than fp32; --precision auto picks fp32 here", stacklevel=2)
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse rather than hand it back to the kernel.

    A CPU training step allocates and frees the same large activation buffers every time. By default
    glibc serves those with fresh mmap()s and unmaps them on free, so the kernel zero-fills every
    page again on first touch, each step: 10-35% of the fast net's step on a 2-core EPYC. Raising the
    mmap and trim thresholds keeps the pages mapped (the process holds on to its peak memory instead).
    Returns whether it applied: glibc only, and not with CIFARKIT_MALLOC=default in the environment.
    """
    if os.environ.get("CIFARKIT_MALLOC", "tuned") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt() parameters, from glibc's malloc.h
        return bool(libc.mallopt(m_trim_threshold, 2**31 - 1) and libc.mallopt(m_mmap_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False


def setup_runtime(config: TrainConfig) -> tuple[torch.device, torch.dtype]:
    """Apply the thread count (and, on CPU, the allocator setting); resolve the device and autocast dtype."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    if device.type == "cpu":
        keep_freed_memory()
    return device, resolve_precision(config.precision, device)


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def derived_seed(*keys: int | str) -> int:
    """A 63-bit seed from a tuple of keys: independent streams for (seed, epoch[, step])."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(device: torch.device, *keys: int | str) -> torch.Generator:
    # CPU generator for MPS: MPS generators are not supported by every op we use.
    g = torch.Generator(device=device if device.type == "cuda" else "cpu")
    g.manual_seed(derived_seed(*keys))
    return g


def epoch_order(num_images: int, device: torch.device, *keys: int | str) -> torch.Tensor:
    """The shuffled image order of one epoch, a pure function of its keys (seed, purpose, epoch)."""
    g = generator(device, *keys)
    return torch.randperm(num_images, generator=g, device=g.device).to(device)


def even_epoch_flips(num_images: int, device: torch.device, seed: int) -> torch.Tensor:
    """The random half of the training images that alternating flips mirror in even epochs."""
    g = generator(device, seed, "flip")
    return (torch.rand(num_images, generator=g, device=g.device) < 0.5).to(device)


def training_batch(data: CIFAR10, order: torch.Tensor, step: int, batch_size: int, augment: Augment,
                   g: torch.Generator, channels_last: bool, flips: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `step` of an epoch: its images augmented with `g`'s draws, and their labels.

    `flips`, when given, says which of all the training images this epoch mirrors (alternating flips).
    """
    idx = order[step * batch_size:(step + 1) * batch_size]
    x = augment(data.train_images[idx], g, None if flips is None else flips[idx])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, data.train_labels[idx]


def parameter_groups(model: nn.Module, config: TrainConfig, lr: float) -> list[dict[str, Any]]:
    """The trainable parameters as optimiser groups: one group, or with `norm_lr_scale` != 1 the weights
    and, apart, the BatchNorm/bias parameters at lr * scale and weight decay / scale."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.norm_lr_scale == 1:
        return [{"params": trainable, "lr": lr, "weight_decay": config.weight_decay}]
    norm = [p for p in trainable if p.ndim <= 1]  # BatchNorm weights/biases and conv/linear biases
    weights = [p for p in trainable if p.ndim > 1]
    scale = config.norm_lr_scale
    return [{"params": weights, "lr": lr, "weight_decay": config.weight_decay},
            {"params": norm, "lr": lr * scale, "weight_decay": config.weight_decay / scale, "lr_scale": scale}]


def build_optimizer(model: nn.Module, config: TrainConfig, lr: float, device: torch.device) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config, lr)
    # fused kernels: one launch for all parameters (CUDA and, in recent torch, CPU)
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, **fused)
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov, **fused)


def prepare_model(config: TrainConfig, device: torch.device, num_classes: int = 10,
                  train_images: torch.Tensor | None = None) -> nn.Module:
    """The initialised model on `device`; a model with a data-dependent initialisation (`init_from_data`,
    e.g. the fast net's whitening stem) gets it from the first 5,000 of `train_images` (uint8)."""
    torch.manual_seed(config.seed)  # the weight initialisation
    model = build_model(config.model, num_classes=num_classes).to(device)
    if hasattr(model, "init_from_data"):
        if train_images is None:
            raise ValueError(f"model {config.model!r} initialises from training images: pass train_images")
        model.init_from_data(normalize(train_images[:5000].to(device)))
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "cifarkit": __version__,
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ---------------------------------------------------------------------------------------------- evaluation

@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024, dtype: torch.dtype = torch.float32,
                   channels_last: bool = True, tta: str = "none") -> torch.Tensor:
    """float32 logits (N, classes) for uint8 images: normalised, never randomly augmented; with `tta`, the
    mean logits over deterministic test-time views (see augment.tta_views)."""
    model.eval()
    device = images.device
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            out.append(torch.stack([model(v).float() for v in tta_views(x, tta)]).mean(0))
    return torch.cat(out) if out else torch.empty(0, 10, device=device)


# ---------------------------------------------------------------------------------------------- training

@dataclass
class RunState:
    """Everything that advances during training, i.e. what a checkpoint must hold besides the weights."""

    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # optimiser steps already taken in that epoch
    loss_sum: float = 0.0  # of the epoch so far, summed over images
    correct: int = 0
    seen: int = 0
    train_seconds: float = 0.0  # of the epoch so far
    wall_seconds: float = 0.0  # of the whole run so far, over all sessions
    history: list[dict[str, float]] = field(default_factory=list)  # metrics.csv rows


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint has been written."""


@contextlib.contextmanager
def stop_requests() -> Iterator[dict[str, int]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps (so it can checkpoint first)."""
    flag = {"signal": 0}

    def handler(signum, _frame):
        flag["signal"] = signum

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals stay with the caller
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """Owns the model, optimiser, schedule and data of one run, and its run folder."""

    def __init__(self, config: TrainConfig, run_dir: str | os.PathLike, data: CIFAR10 | None = None,
                 max_lr: float | None = None, max_lr_source: str = "config", progress: bool = True,
                 checkpoint_every: int = 0):
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.device, self.dtype = setup_runtime(config)
        self.dist = distributed.current()
        self.progress = progress and self.dist.is_main
        self.checkpoint_every = checkpoint_every
        if data is None:
            data = load_cifar10(config.data_dir)
        self.data = data.limit(config.limit_train, config.limit_test).to(self.device)
        self.model = prepare_model(config, self.device, len(self.data.classes), self.data.train_images)
        self.train_model: nn.Module = self.model  # what the training step calls: the model, or DDP around it
        if self.dist.enabled:
            if config.sync_bn:
                if self.device.type != "cuda":
                    raise UserError("--sync-bn: PyTorch's SyncBatchNorm runs on CUDA only; drop the flag on CPU")
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if max_lr is None:
            if isinstance(config.max_lr, str):
                raise ValueError("max_lr='find': run the range test (cifarkit.run.train does) and pass max_lr")
            max_lr = float(config.max_lr)
        self.max_lr, self.max_lr_source = max_lr, max_lr_source
        self.steps_per_epoch = steps_per_epoch(len(self.data.train_labels), config.batch_size)
        self.optimizer = build_optimizer(self.model, config, max_lr, self.device)
        self.scheduler = one_cycle(self.optimizer, config, max_lr, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.augment = Augment.from_config(config)
        self.even_flips = even_epoch_flips(len(self.data.train_labels), self.device, config.seed) \
            if config.alternate_flip and config.flip else None
        # the weight average (BatchNorm buffers included) that is evaluated and saved when ema_decay > 0
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) \
            if config.ema_decay else None
        self.lookahead = Lookahead(self.model, config.lookahead_decay, config.lookahead_every,
                                   config.epochs * self.steps_per_epoch) if config.lookahead_decay else None
        self.state = RunState()
        self.test_logits: torch.Tensor | None = None  # of the latest test evaluation, single process only

    @property
    def eval_model(self) -> nn.Module:
        """The model that is evaluated, reported and saved for inference: the EMA when on."""
        return self.ema.module if self.ema is not None else self.model

    # -- checkpoints -------------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def save_checkpoint(self) -> Path:
        if not self.dist.is_main:
            return self.checkpoint_path
        try:
            save_torch(self.checkpoint_path, self.checkpoint())
        except OSError as e:  # a full disk, a read-only folder...: the previous checkpoint is untouched
            raise UserError(f"{self.checkpoint_path}: could not write the checkpoint ({e.strerror or e}); the previous "
                            f"one is intact. Fix the cause, then continue with: cifarkit train --resume {self.run_dir}"
                            ) from None
        return self.checkpoint_path

    def checkpoint(self) -> dict[str, Any]:
        """Everything to continue the run exactly, as plain tensors and containers (weights_only-loadable)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "cifarkit": __version__,
            "model_name": self.config.model,
            "config": self.config.to_dict(),
            "classes": list(self.data.classes),
            "mean": list(MEAN),
            "std": list(STD),
            "max_lr": self.max_lr,
            "max_lr_source": self.max_lr_source,
            "model": self.eval_model.state_dict(),  # the weights evaluate / predict / export use
            **({"training_weights": self.model.state_dict(), "ema_n_averaged": self.ema.n_averaged}
               if self.ema is not None else {}),
            **({"lookahead": self.lookahead.state_dict()} if self.lookahead is not None else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": dataclasses.asdict(self.state),
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint (see load_checkpoint) of this run's model."""
        if ckpt["model_name"] != self.config.model:
            raise UserError(f"{self.checkpoint_path}: a checkpoint of model {ckpt['model_name']!r}, "
                            f"this run trains {self.config.model!r}")
        if self.ema is not None:
            if "training_weights" not in ckpt:
                raise UserError(f"{self.checkpoint_path}: saved without a weight average, but this run has ema_decay "
                                f"{self.config.ema_decay}")
            self.model.load_state_dict(ckpt["training_weights"])
            self.ema.module.load_state_dict(ckpt["model"])
            self.ema.n_averaged.copy_(ckpt["ema_n_averaged"])
        else:
            self.model.load_state_dict(ckpt["model"])
        if self.lookahead is not None:
            if "lookahead" not in ckpt:
                raise UserError(f"{self.checkpoint_path}: saved without Lookahead's slow weights, but this run has "
                                f"lookahead_decay {self.config.lookahead_decay}")
            self.lookahead.load_state_dict(ckpt["lookahead"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.max_lr, self.max_lr_source = ckpt["max_lr"], ckpt["max_lr_source"]
        self.state = RunState(**ckpt["state"])

    # -- the loop ----------------------------------------------------------------------------------

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, global_size: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on (this rank's slice of) a batch of augmented images.

        `global_size` is the size of the whole batch over all ranks; returns (summed loss, correct count)
        of this rank's images, on the device.
        """
        cfg = self.config
        with autocast(self.device, self.dtype):
            logits = self.train_model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
        # DDP averages gradients over ranks; weighting each rank's mean by its share of the global batch
        # makes that average the gradient of the global batch's mean loss (the factor is 1.0 on one process).
        share = len(labels) * self.dist.world_size / (global_size or len(labels))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * share if share != 1.0 else loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.lookahead is not None:
            self.lookahead.after_step(self.scheduler.last_epoch)  # the scheduler counts the run's steps
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.detach() * len(labels), (logits.argmax(1) == labels).sum()

    def epoch_order(self, epoch: int) -> torch.Tensor:
        return epoch_order(len(self.data.train_labels), self.device, self.config.seed, "order", epoch)

    def global_batch(self, order: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of `epoch`, augmented: the same on every rank, which then trains on its slice."""
        cfg = self.config
        flips = None if self.even_flips is None else alternating_flips(self.even_flips, epoch)
        return training_batch(self.data, order, step, cfg.batch_size, self.augment,
                              generator(self.device, cfg.seed, "augment", epoch, step), cfg.channels_last, flips)

    def train_epoch(self, stop: dict[str, int]) -> float:
        """Run the rest of the current epoch; returns the lr of its last step."""
        from tqdm import tqdm

        cfg, s = self.config, self.state
        self.model.train()  # evaluation switched BatchNorm to its running statistics
        order = self.epoch_order(s.epoch)
        # this session's sums of this rank's images; added to the run state (all ranks) at sync points
        # float64: sums of float32 losses stay exact, so a resumed run adds up to the same numbers (MPS lacks it)
        local = torch.zeros(2, device=self.device, dtype=torch.float32 if self.device.type == "mps" else torch.float64)
        base_loss, base_correct = s.loss_sum, s.correct
        bar = tqdm(total=self.steps_per_epoch, initial=s.step_in_epoch, desc=f"epoch {s.epoch + 1}/{cfg.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True, file=sys.stderr)
        started = time.perf_counter()
        base_seconds, base_seen = s.train_seconds, s.seen
        sync_every = SYNC_EVERY.get(self.device.type, 10)
        try:
            while s.step_in_epoch < self.steps_per_epoch:
                step = s.step_in_epoch
                x, y = self.global_batch(order, s.epoch, step)
                global_size = len(y)
                x, y = self.dist.shard(x), self.dist.shard(y)
                lr = self.optimizer.param_groups[0]["lr"]
                batch_loss, batch_correct = self.train_step(x, y, global_size)
                s.step_in_epoch += 1
                s.seen += global_size
                local += torch.stack([batch_loss.to(local.dtype), batch_correct.to(local.dtype)])
                bar.update(1)
                at_end = s.step_in_epoch == self.steps_per_epoch
                if at_end or s.step_in_epoch % sync_every == 0 or \
                        (self.checkpoint_every and s.step_in_epoch % self.checkpoint_every == 0):
                    # sync point: the host reads the device's numbers (and the ranks each other's) only here
                    totals = self.dist.sum(local.clone())
                    if not math.isfinite(totals[0].item()):  # a NaN/inf loss since the last sync (on CPU: this step)
                        raise UserError(f"the loss became {totals[0].item()} at epoch {s.epoch + 1}, step {step + 1} "
                                        f"(lr {lr:.3g}); training stopped. The last good checkpoint is "
                                        f"{self.checkpoint_path}; try a lower --max-lr")
                    s.loss_sum, s.correct = base_loss + totals[0].item(), base_correct + int(totals[1].item())
                    s.train_seconds = base_seconds + time.perf_counter() - started
                    bar.set_postfix(loss=f"{s.loss_sum / s.seen:.3f}", acc=f"{s.correct / s.seen:.3f}", lr=f"{lr:.2e}",
                                    img_s=f"{(s.seen - base_seen) / max(s.train_seconds - base_seconds, 1e-9):.0f}")
                    stopping = self.dist.any(bool(stop["signal"]), self.device)
                    if stopping and not at_end:  # at the end, fit() first finishes the epoch
                        self.save_checkpoint()
                        raise Interrupted(signal.Signals(stop["signal"] or signal.SIGTERM).name)
                    if self.checkpoint_every and s.step_in_epoch % self.checkpoint_every == 0 and not at_end:
                        self.save_checkpoint()
        finally:
            bar.close()
        return lr

    def fit(self) -> dict[str, Any]:
        """Train for the configured epochs (from the current state), writing the run folder as it goes."""
        cfg, s = self.config, self.state
        session_start = time.perf_counter()
        wall_before = s.wall_seconds
        with stop_requests() as stop:
            while s.epoch < cfg.epochs:
                last_lr = self.train_epoch(stop)
                last = s.epoch + 1 == cfg.epochs
                if last or (cfg.eval_every and (s.epoch + 1) % cfg.eval_every == 0):
                    test_loss, test_acc = self.evaluate_test()
                else:  # not evaluated this epoch: an empty cell in metrics.csv, a gap in the curves
                    test_loss = test_acc = math.nan
                row = {"epoch": s.epoch + 1, "lr": last_lr,
                       "train_loss": s.loss_sum / s.seen, "train_acc": s.correct / s.seen,
                       "test_loss": test_loss, "test_acc": test_acc,
                       "images_per_s": s.seen / s.train_seconds, "seconds": s.train_seconds}
                s.history.append(row)
                s.epoch += 1
                s.step_in_epoch, s.loss_sum, s.correct, s.seen, s.train_seconds = 0, 0.0, 0, 0, 0.0
                s.wall_seconds = wall_before + time.perf_counter() - session_start
                self.write_metrics()
                self.save_checkpoint()
                if self.progress:
                    tested = f"test loss {test_loss:.4f} acc {test_acc:.2%}" if math.isfinite(test_acc) else "test -"
                    print(f"epoch {row['epoch']:>3}/{cfg.epochs}  lr {row['lr']:.2e}  "
                          f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  {tested}  "
                          f"{row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s", file=sys.stderr)
                if self.dist.any(bool(stop["signal"]), self.device):
                    raise Interrupted(signal.Signals(stop["signal"] or signal.SIGTERM).name)
        if self.dist.is_main:
            self.write_plots()
        return self.write_results()

    def evaluate_test(self) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) on the test set; under torchrun each rank scores a slice."""
        images, labels = self.dist.shard(self.data.test_images), self.dist.shard(self.data.test_labels)
        cfg = self.config
        logits = predict_logits(self.eval_model, images, cfg.eval_batch_size, self.dtype, cfg.channels_last, cfg.tta)
        # the plots at the end use these rather than predicting again (TTA makes that costly)
        self.test_logits = logits if self.dist.world_size == 1 else None
        sums = self.dist.sum(torch.stack([F.cross_entropy(logits, labels, reduction="sum"),
                                          (logits.argmax(1) == labels).sum().float()]))
        n = len(self.data.test_labels)
        return sums[0].item() / n, sums[1].item() / n

    # -- the run folder ----------------------------------------------------------------------------

    def write_metrics(self) -> None:
        if not self.dist.is_main:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.state.history)
        write_text(self.run_dir / "metrics.csv", buf.getvalue())

    def write_plots(self) -> None:
        """The plots that need the data and the trained model, and the model summary (model.txt)."""
        from . import report
        from .models import summary

        cfg, data, plots = self.config, self.data, self.run_dir / "plots"
        report.plot_samples(data.train_images, data.train_labels, data.classes, plots / "samples.png")
        report.plot_augmented(data.train_images, data.train_labels, data.classes, self.augment,
                              plots / "augmented.png", seed=cfg.seed)
        logits = self.test_logits if self.test_logits is not None else predict_logits(
            self.eval_model, data.test_images, cfg.eval_batch_size, self.dtype, cfg.channels_last, cfg.tta)
        probs = logits.softmax(1)
        report.plot_misclassified(data.test_images, data.test_labels, probs, data.classes, plots / "misclassified.png")
        counts = report.confusion_matrix(data.test_labels, probs.argmax(1), len(data.classes))
        report.plot_confusion(counts, data.classes, plots / "confusion.png")
        report.plot_per_class(report.per_class_accuracy(counts), data.classes, plots / "per_class.png")
        write_text(self.run_dir / "model.txt", summary(build_model(cfg.model, len(data.classes))))

    def write_config(self) -> None:
        write_json(self.run_dir / "config.json", self.config.to_dict())

    def write_results(self) -> dict[str, Any]:
        s, cfg = self.state, self.config
        last = s.history[-1]
        train_images = sum(r["images_per_s"] * r["seconds"] for r in s.history)
        train_seconds = sum(r["seconds"] for r in s.history)
        results = {
            "preset": cfg.preset, "model": cfg.model, "params": count_parameters(self.model),
            "epochs": cfg.epochs, "batch_size": cfg.batch_size, "steps": self.scheduler.last_epoch,
            "test_accuracy": last["test_acc"], "test_loss": last["test_loss"],
            "train_accuracy": last["train_acc"], "train_loss": last["train_loss"],
            "train_images_per_second": train_images / train_seconds, "train_seconds": train_seconds,
            "wall_time_s": s.wall_seconds, "max_lr": self.max_lr, "max_lr_source": self.max_lr_source,
            "dtype": str(self.dtype).replace("torch.", ""), "channels_last": cfg.channels_last,
            "ema_decay": cfg.ema_decay, "tta": cfg.tta,
            "seed": cfg.seed, "processes": self.dist.world_size, "n_train": len(self.data.train_labels), "n_test": len(self.data.test_labels),
            "data": str(self.data.root), "data_layout": self.data.layout, **machine_info(self.device),
        }
        if self.dist.is_main:
            write_json(self.run_dir / "results.json", results)
        return results


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A cifarkit checkpoint, loaded with weights_only=True: a file that carries code is refused."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except Exception as e:  # pickle's UnpicklingError and friends: the reason is in the message
        raise UserError(f"{path}: refused or unreadable as a checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}). Only cifarkit checkpoints of plain tensors "
                        "load; a file that carries code is never executed") from None
    if not isinstance(ckpt, dict) or "format" not in ckpt or "model" not in ckpt:
        raise UserError(f"{path}: not a cifarkit checkpoint (no format version or model weights)")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: checkpoint format {ckpt['format']}, this cifarkit reads format {CHECKPOINT_FORMAT}; "
                        f"use the cifarkit version that wrote it ({ckpt.get('cifarkit', 'unknown')})")
    return ckpt
