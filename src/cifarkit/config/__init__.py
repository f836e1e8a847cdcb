"""Every setting declared once (type, range, help, group, flag): TrainConfig, the presets, and the
exclude lists a run may be given.
"""

from .exclude_list import read_exclude_file
from .settings import GROUPS, Setting, setting
from .train_config import MACHINE_SETTINGS, PRESETS, SETTINGS, TrainConfig, build_config, preset_config

__all__ = [
    "GROUPS",
    "MACHINE_SETTINGS",
    "PRESETS",
    "SETTINGS",
    "Setting",
    "TrainConfig",
    "build_config",
    "preset_config",
    "read_exclude_file",
    "setting",
]
