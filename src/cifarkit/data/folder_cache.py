"""The decode cache of image folders: a folder's images decoded at one size, kept as one file in cifarkit's own
cache folder under a key of the file list, sizes and mtimes, so that a second run reads one file; one file per
folder and image size, the stale one removed when the folder changes. A cache file that does not match is decoded
again, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import warnings
from pathlib import Path

import torch

from ..files.atomic import WriteError, save_torch

# The version of read_image's decoding the cached pixels come from, raised whenever its output changes: a cache of
# other pixels is decoded again, never used
CACHE_FORMAT = 2
CACHE_SUBFOLDER = "cifarkit-folders"  # cifarkit's own folder inside a cache folder the user names
CACHE_NAME = re.compile(r"[0-9a-f]{12}-[0-9]+px-[0-9a-f]{32}\.pt")  # FOLDER-SIZE-KEY.pt, as cache_path names them


def default_cache_dir() -> Path:
    """Where the decode cache files are: cifarkit-folders/ in $CIFARKIT_CACHE (a folder the user names may be
    shared: cifarkit writes and removes files only in its own sub-folder there), else cifarkit/folder-cache/ in the
    user's cache folder (never the data folder, which may be read-only)."""
    if os.environ.get("CIFARKIT_CACHE"):
        return Path(os.environ["CIFARKIT_CACHE"]).expanduser() / CACHE_SUBFOLDER
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cifarkit" / "folder-cache"


def cache_path(
    root: Path, image_size: int, splits: dict[str, list[tuple[Path, int]]], cache_dir: str | os.PathLike | None
) -> tuple[Path, str]:
    """The cache file of the folder `root` at `image_size` holding `splits`, and the prefix its files at that size
    share. `cache_dir`, as $CIFARKIT_CACHE, names a cache folder (default: default_cache_dir())."""
    cache = Path(cache_dir) / CACHE_SUBFOLDER if cache_dir else default_cache_dir()
    # one cache file per folder and image size: FOLDER-SIZE-KEY.pt, the key changing with any file
    prefix = f"{hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:12]}-{image_size}px-"
    return cache / f"{prefix}{_cache_key(root, image_size, splits)}.pt", prefix


def _cache_key(root: Path, image_size: int, splits: dict[str, list[tuple[Path, int]]]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT} {image_size}".encode())
    for split, files in splits.items():
        for path, label in files:
            stat = path.stat()
            # The path below the root (the same folder reached as imgs, /abs/imgs or a link keeps one key), as the
            # bytes the OS holds: a file name need not be valid UTF-8
            digest.update(
                f"\n{split}\t{label}\t".encode()
                + os.fsencode(path.relative_to(root))
                + f"\t{stat.st_size}\t{stat.st_mtime_ns}".encode()
            )
    return digest.hexdigest()[:32]


def read_cache(path: Path, counts: dict[str, int], image_size: int) -> dict[str, torch.Tensor] | None:
    """The cached tensors if the file is whole and matches; else None (it is rebuilt, never trusted)."""
    if not path.exists():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached.get("format") == CACHE_FORMAT and all(
            cached[name].dtype == torch.uint8 and tuple(cached[name].shape) == (n, 3, image_size, image_size)
            for name, n in counts.items()
        ):
            return {name: cached[name] for name in counts}
    except Exception:  # truncated, another format, not a dict: decode again
        pass
    warnings.warn(f"{path}: the decode cache is damaged or stale; decoding the images again", stacklevel=3)
    return None


def write_cache(cache_file: Path, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Keep the decoded `tensors` in `cache_file`, and remove the folder's earlier decodes at this size."""
    try:
        save_torch(cache_file, {"format": CACHE_FORMAT, **tensors})
    except WriteError as e:  # a read-only cache folder costs the next run a decode, nothing more
        warnings.warn(f"{cache_file}: could not write the decode cache ({e.reason})", stacklevel=3)
    else:  # the folder's earlier decodes at this size are stale now (each is the size of the dataset): only
        # files of cifarkit's own folder and naming are removed
        for stale in cache_file.parent.glob(f"{prefix}*.pt"):
            if stale != cache_file and CACHE_NAME.fullmatch(stale.name) and stale.is_file():
                with contextlib.suppress(OSError):  # another user's file, or one open elsewhere: left there
                    stale.unlink()
