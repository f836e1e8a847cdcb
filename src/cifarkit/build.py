"""What a run trains: the initialised model and its optimiser with parameter groups (schedule.py: the lr)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .augment import normalize
from .config import TrainConfig
from .data import MEAN, STD
from .models import build_model


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
                  train_images: torch.Tensor | None = None, mean: tuple[float, ...] = MEAN,
                  std: tuple[float, ...] = STD) -> nn.Module:
    """The initialised model on `device`; a model with a data-dependent initialisation (`init_from_data`,
    e.g. the fast net's whitening stem) gets it from the first 5,000 of `train_images` (uint8)."""
    torch.manual_seed(config.seed)  # the weight initialisation
    model = build_model(config.model, num_classes=num_classes).to(device)
    if hasattr(model, "init_from_data"):
        if train_images is None:
            raise ValueError(f"model {config.model!r} initialises from training images: pass train_images")
        model.init_from_data(normalize(train_images[:5000].to(device), mean, std))
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
