"""The `cifarkit` command: flags generated from the settings, one module per group of commands; a
user's mistake exits 2 with one line.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
