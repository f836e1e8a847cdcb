"""The official CIFAR-10 and CIFAR-100 archives -> Dataset: readers for both CIFAR-10 layouts (`cifar-10-batches-py`
pickles, `cifar-10-batches-bin` records) and CIFAR-100's python layout (fine or coarse labels). Where the data folder
holds neither layout, an official archive copied there is unpacked, else the archive is downloaded (download.py).

Every file is checked for structure (a broken file is an error whatever its MD5) and, where the official
MD5 is known, for its MD5 (a re-encoded copy with other MD5s is used, and the user is told): cifar_files.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .cifar_files import (
    BIN_MD5,
    CIFAR100_FETCH,
    CIFAR100_FILE_MD5,
    PY_MD5,
    check_md5,
    pickle_key,
    read_bin_batch,
    read_cifar100_split,
    read_classes,
    read_pickle,
    read_py_batch,
    refuse_repeated_names,
)
from .dataset import Dataset, default_data_dir, link_problem
from .download import fetch_archive, safe_extract

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
BIN_ARCHIVE = "cifar-10-binary.tar.gz"  # the same images as binary records; never downloaded, unpacked if given
PY_DIR, BIN_DIR = "cifar-10-batches-py", "cifar-10-batches-bin"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_DIR = "cifar-100-python"
OFFLINE_DOCS = "docs/getting-started.md#offline"  # the docs' section on getting the data without a network
# What a user may copy onto a machine without a network, by the name of the archive that would be downloaded
WHERE_FROM = {
    "cifar-10-python.tar.gz": (
        "CIFAR-10",
        f"the official archive cifar-10-python.tar.gz or {BIN_ARCHIVE}, or the "
        f"folder it unpacks to ({PY_DIR} or {BIN_DIR})",
    ),
    "cifar-100-python.tar.gz": (
        "CIFAR-100",
        "the official archive cifar-100-python.tar.gz, or the folder it unpacks to (cifar-100-python)",
    ),
}


def find_layout(root: Path) -> tuple[str, Path] | None:
    """("py" | "bin", folder) for the first official layout found at or under `root`."""
    for layout, name, probe in (("py", PY_DIR, "test_batch"), ("bin", BIN_DIR, "test_batch.bin")):
        for folder in (root / name, root):
            if (folder / probe).exists() or (folder.name == name and folder.is_dir()):
                return layout, folder
    return None


def load_cifar10(data_dir: str | os.PathLike | None = None, download: bool = True, verify_md5: bool = True) -> Dataset:
    """The dataset from `data_dir` (see default_data_dir), downloading it first if absent."""
    root = default_data_dir(data_dir)
    found = find_layout(root) if root.exists() else None
    if found is None:
        _refuse_unusable(root, (PY_DIR, BIN_DIR))
        given = next((root / name for name in (Path(ARCHIVE_URL).name, BIN_ARCHIVE) if (root / name).is_file()), None)
        if given is not None:  # a copy of an official archive: unpacked here, its files checked one by one below
            safe_extract(given, root)
        elif not download:
            raise UserError(
                f"{root}: no CIFAR-10 here (expected {PY_DIR}/ or {BIN_DIR}/); download it with "
                f"`cifarkit data --data-dir DIR`, or {offline_advice(Path(ARCHIVE_URL).name)}"
            )
        else:
            download_and_extract(root)
        found = find_layout(root)
        if found is None:
            raise UserError(f"{given or root}: holds neither {PY_DIR}/ nor {BIN_DIR}/; is it the official archive?")
    layout, folder = found
    reader, suffix, known = (read_py_batch, "", PY_MD5) if layout == "py" else (read_bin_batch, ".bin", BIN_MD5)
    checks: dict[str, str] = {}
    splits = []
    for names in (TRAIN_FILES, TEST_FILES):
        images, labels = [], []
        for name in names:
            path = folder / (name + suffix)
            x, y = reader(path)  # structural checks first: a broken file is an error whatever its MD5
            images.append(x)
            labels.append(y)
            checks[path.name] = check_md5(path, known, verify_md5)
        splits.append((torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))))
    (train_x, train_y), (test_x, test_y) = splits
    return Dataset(
        train_x,
        train_y,
        test_x,
        test_y,
        classes=read_classes(layout, folder),
        root=folder,
        layout=layout,
        checks=checks,
    )


def load_cifar100(
    data_dir: str | os.PathLike | None = None, labels: str = "fine", download: bool = True, verify_md5: bool = True
) -> Dataset:
    """CIFAR-100 from `data_dir` (its `cifar-100-python` folder, or that folder itself), downloading the official
    archive first if absent; `labels` fine (100 classes) or coarse (20 superclasses), names from its meta file."""
    if labels not in ("fine", "coarse"):
        raise UserError(f"--labels {labels!r}: choose fine or coarse")
    root = default_data_dir(data_dir)
    folder = root if (root / "meta").exists() and root.name == CIFAR100_DIR else root / CIFAR100_DIR
    _refuse_unusable(folder.parent, (CIFAR100_DIR,))
    if not folder.exists():
        given = root / Path(CIFAR100_URL).name
        if given.is_file():  # a copy of the official archive: unpacked here, its files checked one by one below
            safe_extract(given, root)
        elif not download:
            raise UserError(
                f"{root}: no CIFAR-100 here (expected {CIFAR100_DIR}/); download it with `cifarkit data "
                f"--dataset cifar100 --data-dir DIR`, or {offline_advice(given.name)}"
            )
        else:
            download_and_extract(root, CIFAR100_URL, CIFAR100_MD5)
        if not folder.is_dir():
            raise UserError(f"{given}: holds no {CIFAR100_DIR}/; is it the official archive?")
    checks: dict[str, str] = {}
    splits = []
    for name in ("train", "test"):
        x, y = read_cifar100_split(folder / name, labels)
        checks[name] = check_md5(folder / name, CIFAR100_FILE_MD5, verify_md5)
        splits.append((torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)))
    meta = read_pickle(folder / "meta", "CIFAR-100 meta file", CIFAR100_FETCH)
    names = pickle_key(meta, f"{labels}_label_names") if isinstance(meta, dict) else None
    expected = 100 if labels == "fine" else 20
    if not isinstance(names, list) or len(names) != expected or not all(isinstance(n, str) for n in names):
        raise UserError(f"{folder / 'meta'}: expected {expected} {labels} class names")
    refuse_repeated_names(folder / "meta", names, "restore the official file")
    checks["meta"] = check_md5(folder / "meta", CIFAR100_FILE_MD5, verify_md5)
    (train_x, train_y), (test_x, test_y) = splits
    return Dataset(
        train_x, train_y, test_x, test_y, classes=tuple(names), name="cifar100", root=folder, layout="py", checks=checks
    )


def offline_advice(archive_name: str) -> str:
    """How to give the data without a network: what to copy, how to point at it, where the docs say more."""
    _, files = WHERE_FROM.get(archive_name, (archive_name, f"the archive {archive_name}"))
    return (
        f"without a network, copy {files}, into a folder on this machine and point --data-dir DIR (or the "
        f"CIFARKIT_DATA environment variable) at that folder; see the docs' offline section ({OFFLINE_DOCS})"
    )


def _refuse_unusable(root: Path, names: tuple[str, ...]) -> None:
    """A dataset folder's name taken by a symlink leading nowhere or by a file is named, not taken for absent (and
    downloaded beside)."""
    for name in names:
        problem = link_problem(root / name)
        if problem:
            raise UserError(
                f"{root / name}: {problem}; point the link at the folder that holds the files, or remove it"
            )
        if (root / name).exists() and not (root / name).is_dir():
            raise UserError(
                f"{root / name}: a file, not the folder of that name the archive unpacks to; move it "
                "away, or point --data-dir at the folder that holds the data"
            )


def download_and_extract(root: Path, url: str = ARCHIVE_URL, md5: str = ARCHIVE_MD5) -> Path:
    """Download the official archive `url` (CIFAR-10's python archive by default), check its MD5 and unpack it safely
    into `root`; a failed download names what to copy in instead and leaves no folder it made behind."""
    what, _ = WHERE_FROM.get(Path(url).name, (Path(url).name, ""))
    return fetch_archive(root, url, md5, what, offline_advice(Path(url).name))
