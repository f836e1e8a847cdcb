"""Sweeps: Optuna over TrainConfig's numbers on the validation split (SQLite alone, PostgreSQL for many
workers).
"""

from .sweep import parse_param, sweep

__all__ = ["parse_param", "sweep"]
