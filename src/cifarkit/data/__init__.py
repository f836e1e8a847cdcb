"""Datasets: the Dataset type, CIFAR-10/100, image folders, loading by name (limits, validation split,
exclude lists), batched on-device augmentation and the batch stream (pure in seed, epoch and step).
"""

from .augment import Augment, normalize
from .batches import BatchStream
from .cifar import load_cifar10, load_cifar100
from .dataset import CLASSES, MEAN, STD, Dataset
from .exclude import exclude_images
from .folder import load_folder, read_image
from .loading import load_checkpoint_data, load_dataset, load_run_data, run_view

__all__ = [
    "Augment",
    "BatchStream",
    "CLASSES",
    "Dataset",
    "MEAN",
    "STD",
    "exclude_images",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_folder",
    "load_run_data",
    "load_checkpoint_data",
    "normalize",
    "read_image",
    "run_view",
]
