"""Sweeps: Optuna over TrainConfig's numbers on the validation split (SQLite alone, PostgreSQL for many
workers). `cifarkit sweep` is tune/sweep.py's `sweep` (not named here so that the module keeps its name).
"""

from .storage import without_password
from .sweep import parse_param

__all__ = ["parse_param", "without_password"]
