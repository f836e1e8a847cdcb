"""What a run trains: the initialised model, the wrapper the training step calls, and its optimiser with parameter
groups (schedule.py: the lr)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..config.train_config import TrainConfig
from ..data.augment import normalize
from ..data.dataset import MEAN, STD, Dataset
from ..errors import UserError
from ..models.nets import build_model
from ..optim.lookahead import Lookahead
from ..optim.muon import Muon


def parameter_groups(model: nn.Module, config: TrainConfig, lr: float) -> list[dict[str, Any]]:
    """The trainable parameters as optimiser groups: one group, or with `norm_lr_scale` != 1 the weights
    and, apart, the BatchNorm/bias parameters at lr * scale and weight decay / scale. With Muon the conv
    filters (4-D weights) form a group of their own at lr muon_lr, without weight decay (cifarkit.optim.muon).

    A group's "lr_scale" is its lr over `lr`: the schedule peaks each group at max lr * lr_scale."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    muon = config.optimizer == "muon"
    filters = [p for p in trainable if p.ndim == 4] if muon else []
    # last, so that the first group is always the one at lr `lr` (what metrics.csv and the range test show)
    filter_group = (
        [
            {
                "params": filters,
                "lr": config.muon_lr,
                "lr_scale": config.muon_lr / lr,
                "weight_decay": 0.0,
                "momentum": config.muon_momentum,
                "nesterov": True,
                "use_muon": True,
            }
        ]
        if filters
        else []
    )
    rest = [p for p in trainable if not (muon and p.ndim == 4)]
    if config.norm_lr_scale == 1:
        return [{"params": rest, "lr": lr, "weight_decay": config.weight_decay}] + filter_group
    norm = [p for p in rest if p.ndim <= 1]  # BatchNorm weights/biases and conv/linear biases
    weights = [p for p in rest if p.ndim > 1]
    scale = config.norm_lr_scale
    return [
        {"params": weights, "lr": lr, "weight_decay": config.weight_decay},
        {"params": norm, "lr": lr * scale, "weight_decay": config.weight_decay / scale, "lr_scale": scale},
        *filter_group,
    ]


def build_optimizer(
    model: nn.Module, config: TrainConfig, lr: float, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.optim.Optimizer:
    """The run's optimiser at peak lr `lr`; `dtype` is the run's autocast dtype (Muon orthogonalises in bf16
    where the run computes in bf16, or on CUDA, and in float32 elsewhere)."""
    groups = parameter_groups(model, config, lr)
    if config.optimizer == "muon":
        ns_dtype = torch.bfloat16 if dtype == torch.bfloat16 or device.type == "cuda" else torch.float32
        return Muon(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov, ns_dtype=ns_dtype)
    # fused kernels: one launch for all parameters (CUDA and, in recent torch, CPU)
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, **fused)
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov, **fused)


def prepare_model(
    config: TrainConfig,
    device: torch.device,
    num_classes: int = 10,
    train_images: torch.Tensor | None = None,
    mean: tuple[float, ...] = MEAN,
    std: tuple[float, ...] = STD,
) -> nn.Module:
    """The initialised model on `device`, once its training sizes are checked (check_training_sizes); a model with a
    data-dependent initialisation (`init_from_data`, e.g. the fast net's whitening stem) gets it from the first
    5,000 of `train_images` (uint8, the whole training set)."""
    torch.manual_seed(config.seed)  # the weight initialisation
    model = build_model(config.model, num_classes=num_classes).to(device)
    check_training_sizes(model, config, None if train_images is None else len(train_images))
    if hasattr(model, "init_from_data"):
        if train_images is None:
            raise ValueError(f"model {config.model!r} initialises from training images: pass train_images")
        model.init_from_data(normalize(train_images[:5000].to(device), mean, std))
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def run_model(
    config: TrainConfig, device: torch.device, distributed: bool, data: Dataset, mean: Any, std: Any
) -> nn.Module:
    """The run's initialised model (prepare_model); under torchrun with --sync-bn, its BatchNorm layers
    synchronised over the ranks."""
    model = prepare_model(config, device, len(data.classes), data.train_images, mean, std)
    if distributed and config.sync_bn:
        if device.type != "cuda":
            raise UserError("--sync-bn: PyTorch's SyncBatchNorm runs on CUDA only; drop the flag on CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def configured_max_lr(config: TrainConfig) -> float:
    """The config's max lr as a number; 'find' is the range test's to settle before a Trainer is built."""
    if isinstance(config.max_lr, str):
        raise ValueError("max_lr='find': run the range test (cifarkit.training.run.train does) and pass max_lr")
    return float(config.max_lr)


def weight_averages(
    model: nn.Module, config: TrainConfig, total_steps: int
) -> tuple[AveragedModel | None, Lookahead | None]:
    """The EMA of the weights (BatchNorm buffers included: it is what is evaluated and saved when ema_decay > 0)
    and Lookahead's slow weights, each None when its setting is off."""
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if config.ema_decay
        else None
    )
    lookahead = (
        Lookahead(model, config.lookahead_decay, config.lookahead_every, total_steps)
        if config.lookahead_decay
        else None
    )
    return ema, lookahead


def check_training_sizes(model: nn.Module, config: TrainConfig, train_count: int | None = None) -> None:
    """Refuse an image size (the run's, or --small-crop's) at which the model pools a map away to nothing, or to
    a single position before a BatchNorm when a training batch can hold one image (`train_count` images at
    --batch-size): BatchNorm then has one value per channel and cannot train."""
    lone_image = config.batch_size == 1 or (train_count is not None and train_count % config.batch_size == 1)
    for flag, size in ((("--small-crop", config.small_crop),) if config.small_crop else ()) + (
        ("--image-size", config.image_size),
    ):
        positions, where = _narrowest_normalised_map(model, size)
        if positions == 0 or (positions == 1 and lone_image):
            least = next(s for s in range(size + 1, 4 * size + 32) if _narrowest_normalised_map(model, s)[0] > 1)
            batch = (
                ""
                if positions == 0
                else (
                    f", and a batch of one image ({train_count} training images at --batch-size {config.batch_size}) "
                    "gives BatchNorm one value per channel"
                )
            )
            raise UserError(
                f"{flag} {size}: model {config.model} narrows a {size}x{size} image to {where}{batch}; "
                f"use {flag} {least} or more" + (", or a --batch-size that leaves no image alone" if positions else "")
            )


def _narrowest_normalised_map(model: nn.Module, size: int) -> tuple[int, str]:
    """(positions, description) of the smallest map a BatchNorm sees at `size`; 0 when a pooling has nothing left."""
    seen: list[tuple[str, int, int]] = []
    hooks = [
        module.register_forward_pre_hook(lambda _m, inputs, name=name: seen.append((name, *inputs[0].shape[2:])))
        for name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d)
    ]
    training = model.training
    try:
        model.eval()  # running statistics: nothing learns from the blank image
        parameter = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype))
    except RuntimeError:  # a pooling with nothing left to pool
        return 0, "nothing (a map of size 0)"
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    name, height, width = min(seen, key=lambda s: s[1] * s[2], default=("", size, size))
    return height * width, f"a {height}x{width} map at {name}"


def training_module(model: nn.Module, device: torch.device, distributed: bool, compile: bool) -> nn.Module:
    """What the training step calls: the model, or DDP around it (DDP notes the parameters that train when it is
    built: wrap again after freezing one), compiled with `compile` (evaluation, EMA and checkpoints use the plain
    module, so checkpoints hold its own keys)."""
    if distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if compile else model


def freeze_stem(model: nn.Module) -> bool:
    """Stop training the whitening stem's bias (--stem-bias-epochs); True if it was training. Nothing before the
    first 3x3 conv trains then, so the backward pass skips that conv's input gradient."""
    was_training = model.stem.bias.requires_grad
    model.stem.bias.requires_grad_(False)
    model.stem.bias.grad = None  # the optimiser skips a parameter without a gradient
    return was_training
