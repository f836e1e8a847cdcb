"""Getting an official dataset archive onto this machine: download (progress bar, MD5-checked, nothing left behind
when it fails) and safe extraction. What the archives hold is read by cifar.py."""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
import urllib.request
from pathlib import Path

from ..errors import UserError
from ..files.atomic import atomic_open


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_archive(root: Path, url: str, md5: str, what: str, offline_advice: str) -> Path:
    """The archive at `url` unpacked into `root` (a copy already there with the official MD5 is not fetched again).
    When the download fails, the message says that `what` is not in `root` and gives `offline_advice`; the folders
    made for the download are removed again, so a mistyped --data-dir is not left behind."""
    if (root / "train").is_dir():  # `--dataset folder` forgotten: never download 160 MB among the user's images
        raise UserError(
            f"--data-dir {root}: holds train/ (an image folder dataset), not {Path(url).name}'s "
            "CIFAR; pass --dataset folder to use its images"
        )
    made = [folder for folder in (root, *root.parents) if not folder.exists()]  # deepest first
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_empty(made)
        raise UserError(f"--data-dir {root}: cannot create it to download into ({e.strerror or e})") from None
    archive = root / Path(url).name
    if not (archive.exists() and md5_of(archive) == md5):
        try:
            _download(url, archive, md5, what, offline_advice)
        except BaseException:  # a failure or Ctrl-C: atomic_open removed the partial file, the folders go too
            _remove_empty(made)
            raise
    safe_extract(archive, root)
    return root


class _NetworkError(Exception):
    """The connection failed while the archive was being written (an OSError there would read as a failed write)."""


def _download(url: str, archive: Path, md5: str, what: str, offline_advice: str) -> None:
    from tqdm import tqdm

    def received(response) -> bytes:
        try:
            return response.read(1 << 20)
        except OSError as e:
            raise _NetworkError(e) from None

    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_open(archive) as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {archive.name}") as bar:
                for chunk in iter(lambda: received(response), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (OSError, _NetworkError) as e:  # URLError, timeouts and refused connections are all OSErrors
        raise UserError(
            f"no {what} in {archive.parent}, and downloading it from {url} failed ({e}); {offline_advice}"
        ) from None
    got = md5_of(archive)
    if got != md5:
        archive.unlink()
        raise UserError(
            f"{archive}: MD5 {got} does not match the official {md5}; the download is "
            "corrupt and was deleted; run the command again"
        )


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed download made, deepest first; any that holds a file stays."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def safe_extract(archive: Path, target: Path) -> None:
    """Unpack a tar archive, refusing any member that would land outside `target` or is a link/device."""
    target = target.resolve()
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                dest = (target / member.name).resolve()
                if dest != target and target not in dest.parents:
                    raise UserError(
                        f"{archive}: member {member.name!r} would be written outside {target}; "
                        "refusing to extract this archive"
                    )
                if not (member.isfile() or member.isdir()):
                    raise UserError(
                        f"{archive}: member {member.name!r} is a link or special file; refusing to extract this archive"
                    )
            tar.extractall(target, filter="data")
    except tarfile.TarError as e:
        raise UserError(f"{archive}: not a readable tar.gz archive ({e}); delete it and download again") from None
