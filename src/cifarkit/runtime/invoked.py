"""How the user started cifarkit, so that a command it suggests (to resume a run, to find an lr) runs as printed."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def program() -> str:
    """The program to type: `cifarkit` when that is what the shell finds on PATH; the path as typed
    (`.venv/bin/cifarkit`) when started by a path that PATH does not lead to; `python -m cifarkit` when started as
    a module (the interpreter's own path when `python` on PATH is another one); `cifarkit` from the Python API."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "__main__.py" and _same_file(Path(argv0).parent, Path(__file__).parents[1]):
        python = shutil.which("python")
        interpreter = "python" if python and _same_file(python, sys.executable) else shlex.quote(sys.executable)
        return f"{interpreter} -m cifarkit"
    if Path(argv0).name != "cifarkit" or os.sep not in argv0:
        return "cifarkit"
    on_path = shutil.which("cifarkit")
    return "cifarkit" if on_path and _same_file(on_path, argv0) else shlex.quote(argv0)
