"""A run folder's lock: an OS lock (flock) on its lock file, held while one process writes the folder, so that a
second process gets a clear error; it ends with the process, however it dies (a kill -9 leaves no stale lock).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import UserError
from .names import LOCK


def lock_folder(path: Path) -> int:
    """The descriptor of `path`'s lock file, locked, with this process's pid written in it (the folder made if
    absent); refused, naming the holder's pid, while another process holds it."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path}: a file is in the way; choose a folder name")
    for _ in range(3):  # again if the lock file was removed under us (discard_if_unused)
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except FileNotFoundError:
            if not path.is_dir():  # the folder went between the two calls
                continue
            raise UserError(f"--out {path}: cannot create its lock file {LOCK} there") from None
        except OSError as e:
            raise UserError(f"--out {path}: cannot create the run folder there ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(
                f"{path}: another cifarkit process (pid {holder}) is writing this run folder; "
                "wait for it to finish, or choose another --out"
            ) from None
        try:  # the lock counts only if its file is still the folder's (not one unlinked after we opened it)
            if os.stat(path / LOCK).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    else:
        raise UserError(f"--out {path}: another process keeps removing this folder; choose another --out")
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
