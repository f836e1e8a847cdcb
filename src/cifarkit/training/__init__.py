"""Training: one run top to bottom (train), the loop (Trainer), the LR range test, observers of the
loop (TensorBoard) and stopping on Ctrl-C.
"""
from .run import train
from .trainer import Trainer
from .lr_finder import find_lr
from .observer import Observer
from .tensorboard import TensorBoard
from .stopping import Interrupted

__all__ = ["Interrupted", "Observer", "TensorBoard", "Trainer", "find_lr", "train"]
