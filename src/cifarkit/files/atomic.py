"""Atomic file writes: a kill at any instant leaves the old file or the new one, never a torn one.

Every writer goes to a temporary name in the destination folder, flushes and
fsyncs it, then renames it over the destination (rename is atomic on POSIX
within one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ..errors import UserError


class WriteError(UserError):
    """A file could not be written; the previous one, if any, is intact."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: could not write it ({reason}); the previous file, if any, is intact")
        self.path, self.reason = path, reason


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary file for writing that only appears at `path` once fully written.

    Every failed write (no space, no permission, a folder or a file in the way, a name too long: any OSError,
    and torch's writer failing, see save_torch) becomes one WriteError naming the path; the temporary file is
    removed.
    """
    path = Path(path)
    tmp = None
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short temporary name: a legal 250-character output name must not overflow the 255-byte limit
        fd, tmp = tempfile.mkstemp(prefix=".ck", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise WriteError(path, e.strerror or str(e) or type(e).__name__) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        try:
            torch.save(obj, f)
        except RuntimeError as e:  # torch's zip writer reports a failed write (a full disk) as a RuntimeError
            raise OSError(0, str(e).splitlines()[0] if str(e) else "torch.save failed") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


STAGING = ".cifarkit-partial"  # where staged_folder writes, inside a folder that exists (so on its disk)


@contextlib.contextmanager
def staged_folder(folder: Path, replaced: tuple[str, ...] = (), last: str = "") -> Iterator[Path]:
    """A folder of several files written whole: the block writes into a staging folder, which is removed if the
    block fails (a full disk, Ctrl-C) and otherwise moved into `folder` by renames on one disk: a new `folder` is
    the staging folder renamed (made beside it); into an existing one (staged inside it, as STAGING) each entry is
    moved over its namesake, folders first and the file `last` at the end (the subfolders named in `replaced` are
    removed first, so none of their old files stay), and anything else there is kept."""
    folder = Path(folder).resolve()
    staging = folder / STAGING if folder.is_dir() else folder.parent / f".{folder.name}{STAGING}"
    shutil.rmtree(staging, ignore_errors=True)  # an earlier attempt's, cut off
    try:
        staging.mkdir(parents=True)
        yield staging
        if staging.parent != folder:
            staging.rename(folder)
            return
        for name in replaced:
            if (folder / name).is_dir():
                shutil.rmtree(folder / name)
        for entry in sorted(staging.iterdir(), key=lambda p: (not p.is_dir(), p.name == last, p.name)):
            os.replace(entry, folder / entry.name)
        staging.rmdir()
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(folder, e.strerror or str(e)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
