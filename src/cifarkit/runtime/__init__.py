"""Where and how a run computes: the device and precision, threads, the CPU allocator, machine
information, torchrun, progress bars and the program name a suggested command uses.
"""

from .device import autocast, describe_machine, machine_info, resolve_device, resolve_precision, setup_runtime
from .distributed import Distributed, init_from_env
from .invoked import program
from .progress import progress_bar

__all__ = [
    "Distributed",
    "autocast",
    "describe_machine",
    "init_from_env",
    "machine_info",
    "program",
    "progress_bar",
    "resolve_device",
    "resolve_precision",
    "setup_runtime",
]
