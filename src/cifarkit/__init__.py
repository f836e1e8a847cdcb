"""cifarkit: train image classifiers on CIFAR-10 with PyTorch, fast and reproducibly.

    from cifarkit import TrainConfig, train
    results = train(TrainConfig(epochs=2, limit_train=10_000), run_dir="runs/quick")

Importing the package is light and has no side effects: torch, matplotlib and torch-lr-finder load
when `train` (or a module that needs them) is first used.
"""

import importlib
from typing import Any

from .config import PRESETS, TrainConfig, preset_config
from .errors import UserError
from .version import __version__

__all__ = ["PRESETS", "TrainConfig", "UserError", "audit", "preset_config", "train", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "train":  # cifarkit.training.run imports torch and the training stack
        from .training.run import train

        return train
    if name == "audit":  # the data audit (a callable package: cifarkit.audit(run_dir, ...)); torch loads on use
        # import_module, not `from . import audit`: that would ask this function for the name again
        return importlib.import_module(".audit", __name__)
    raise AttributeError(f"module 'cifarkit' has no attribute {name!r}")
