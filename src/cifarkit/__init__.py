"""cifarkit: train image classifiers on CIFAR-10 with PyTorch, fast and reproducibly.

    from cifarkit import TrainConfig, train
    results = train(TrainConfig(epochs=2, limit_train=10_000), run_dir="runs/quick")
"""
__version__ = "0.1.0"

from .config import PRESETS, TrainConfig, preset_config  # noqa: E402
from .errors import UserError  # noqa: E402
from .run import train  # noqa: E402

__all__ = ["PRESETS", "TrainConfig", "UserError", "preset_config", "train", "__version__"]
