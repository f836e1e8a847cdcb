"""The `cifarkit` command: flags generated from the settings, one module per group of commands; a user's
mistake exits 2 with one line. Its entry point is `cifarkit.cli.main:main` (main.py; not named here, so that
`cifarkit.cli.main` stays the module).
"""

from .main import build_parser

__all__ = ["build_parser"]
