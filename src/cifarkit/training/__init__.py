"""Training: one run top to bottom (train), the loop (Trainer), the LR range test, observers of the
loop (TensorBoard) and stopping on Ctrl-C.
"""

from .lr_finder import find_lr
from .observer import Observer
from .run import train
from .stopping import Interrupted
from .tensorboard import TensorBoard
from .trainer import Trainer

__all__ = ["Interrupted", "Observer", "TensorBoard", "Trainer", "find_lr", "train"]
