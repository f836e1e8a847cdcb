"""Sweeps: Optuna over TrainConfig's numbers on the validation split (SQLite alone, PostgreSQL for many
workers). `cifarkit sweep` is tune/sweep.py's `sweep` (not named here so that the module keeps its name).
"""

from .params import parse_param
from .storage import without_password

__all__ = ["parse_param", "without_password"]
