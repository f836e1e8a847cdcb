"""The official CIFAR-10 and CIFAR-100 archives -> Dataset: readers for both CIFAR-10 layouts (`cifar-10-batches-py`
pickles, `cifar-10-batches-bin` records) and CIFAR-100's python layout (fine or coarse labels). Where the data folder
holds neither layout, an official archive copied there is unpacked, else the archive is downloaded (download.py).

Every file is checked for structure (a broken file is an error whatever its MD5) and, where the official
MD5 is known, for its MD5 (a re-encoded copy with other MD5s is used, and the user is told).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..files.reader import MiB, read_bytes
from .dataset import CLASSES, Dataset, default_data_dir, link_problem, to_nfc
from .download import fetch_archive, md5_of, safe_extract

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
BIN_ARCHIVE = "cifar-10-binary.tar.gz"  # the same images as binary records; never downloaded, unpacked if given
PY_DIR, BIN_DIR = "cifar-10-batches-py", "cifar-10-batches-bin"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
PY_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
BIN_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
IMAGE_BYTES = 3 * 32 * 32
BATCH_LIMIT = 256 * MiB  # a CIFAR-10 batch is 31 MB, CIFAR-100's train file 155 MB: a larger file is not one
META_LIMIT = 1 * MiB  # the class names: a few hundred bytes

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
CIFAR100_FILE_MD5 = {  # of the files in the official archive
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}


def find_layout(root: Path) -> tuple[str, Path] | None:
    """("py" | "bin", folder) for the first official layout found at or under `root`."""
    for layout, name, probe in (("py", PY_DIR, "test_batch"), ("bin", BIN_DIR, "test_batch.bin")):
        for folder in (root / name, root):
            if (folder / probe).exists() or (folder.name == name and folder.is_dir()):
                return layout, folder
    return None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain data only: a batch file that carries code is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes; runs no code
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR-10 batch")


def _key(d: dict, name: str):
    """Python-2 pickles have bytes keys when read with encoding='bytes'; we read latin1 -> str."""
    return d.get(name, d.get(name.encode()))


def read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One `cifar-10-batches-py` file -> (uint8 (N,3,32,32), int64 (N,))."""
    d = _read_pickle(path, "CIFAR-10 batch", "cifarkit data --data-dir DIR")
    if not isinstance(d, dict) or _key(d, "data") is None or _key(d, "labels") is None:
        raise UserError(
            f"{path}: a pickle, but not a CIFAR-10 batch (no 'data' and 'labels'); "
            "point --data-dir at the official cifar-10-batches-py folder"
        )
    images = _images(path, _key(d, "data"))
    labels = _as_labels(path, _key(d, "labels"))
    _check_labels(path, labels, len(images))
    return images, labels


def read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One `cifar-10-batches-bin` file (records of 1 label byte + 3072 pixel bytes)."""
    if not os.path.lexists(path):
        raise UserError(f"{path}: missing; re-download with `cifarkit data --data-dir DIR`")
    raw = np.frombuffer(read_bytes(path, "CIFAR-10 batch", BATCH_LIMIT), dtype=np.uint8)
    record = 1 + IMAGE_BYTES
    if raw.size == 0 or raw.size % record:
        raise UserError(
            f"{path}: {raw.size} bytes is not a whole number of {record}-byte records "
            "(truncated or corrupt); delete it and re-download"
        )
    raw = raw.reshape(-1, record)
    labels = raw[:, 0].astype(np.int64)
    _check_labels(path, labels, len(raw))
    return raw[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _as_labels(path: Path, labels: Any) -> np.ndarray:
    """A batch's labels as int64: whole numbers only (a string, a float or a 2**70 is an error, not truncated)."""
    try:
        values = np.asarray(labels)
    except (ValueError, OverflowError):
        values = np.asarray([], dtype=object)
    if values.ndim != 1 or not (
        np.issubdtype(values.dtype, np.integer)
        or values.dtype == object
        and all(isinstance(v, int) and not isinstance(v, bool) for v in values.tolist())
    ):
        raise UserError(
            f"{path}: the labels must be whole numbers (found {values.dtype} values such as "
            f"{values.tolist()[:3] if values.ndim else values!r}); the file is not an intact batch"
        )
    try:
        return values.astype(np.int64)
    except OverflowError:
        raise UserError(f"{path}: a label is too large for a class index; the file is not an intact batch") from None


def _check_labels(path: Path, labels: np.ndarray, n: int, num_classes: int = 10) -> None:
    if labels.shape != (n,):
        raise UserError(f"{path}: {labels.size} labels for {n} images")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")


def read_classes(layout: str, folder: Path) -> tuple[str, ...]:
    """The class names of the meta file (CIFAR-10's own where it is absent or unreadable); names that repeat are
    refused: two classes of one name could not be told apart in any result."""
    meta_file = folder / ("batches.meta" if layout == "py" else "batches.meta.txt")
    if not os.path.lexists(meta_file):
        return CLASSES
    raw = read_bytes(meta_file, "CIFAR-10 meta file", META_LIMIT)  # a FIFO, a device or a folder is named
    try:
        if layout == "py":
            meta = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
            names = tuple(_key(meta, "label_names"))
        else:
            names = tuple(line.strip() for line in raw.decode().splitlines() if line.strip())
    except Exception:  # the meta file is optional: the class names are fixed by the dataset anyway
        return CLASSES
    if len(names) != 10:
        return CLASSES
    _refuse_repeated_names(meta_file, names, "delete it to use CIFAR-10's own names, or restore the official file")
    return names


def _refuse_repeated_names(meta_file: Path, names, remedy: str) -> None:
    """A meta file naming one class twice (compared as class names are: NFC) is refused, naming the repeats."""
    seen: dict[str, int] = {}
    for name in to_nfc(str(n) for n in names):
        seen[name] = seen.get(name, 0) + 1
    repeated = [f"{name!r} ({count} times)" for name, count in seen.items() if count > 1]
    if repeated:
        raise UserError(
            f"{meta_file}: the class names repeat: {', '.join(repeated)}; every class needs a name of its own; {remedy}"
        )


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
            checks[path.name] = _check(path, known, verify_md5)
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


def _check(path: Path, known: dict[str, str], verify_md5: bool) -> str:
    """What the MD5 check of one file found (its structure was checked already)."""
    if not verify_md5:
        return "not checked"
    if path.name not in known:
        return "no official MD5 known; structure valid"
    if md5_of(path) == known[path.name]:
        return "MD5 ok"
    return "MD5 differs from the official file (re-encoded copy?); structure valid, used"


def _read_pickle(path: Path, what: str, fetch: str) -> Any:
    """One of the archives' python pickles (numpy arrays and plain data only); `fetch` re-downloads it."""
    if not os.path.lexists(path):
        raise UserError(f"{path}: missing; re-download with `{fetch}`")
    blob = read_bytes(path, what, BATCH_LIMIT)  # a FIFO, a device, a folder or a huge file is named, never read
    if not blob:
        raise UserError(f"{path}: empty file; delete it and re-download with `{fetch}`")
    try:
        return _ArrayUnpickler(io.BytesIO(blob), encoding="latin1").load()
    except Exception as e:  # truncated or not a pickle at all: any unpickling failure means the same to the user
        raise UserError(
            f"{path}: not a readable {what} ({type(e).__name__}: {e}); the file is truncated or "
            "corrupt: delete it and re-download"
        ) from None


def _images(path: Path, data: Any) -> np.ndarray:
    """A pickle's 'data': uint8 rows of 3072 bytes -> (N, 3, 32, 32)."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise UserError(
            f"{path}: 'data' must be a uint8 array of shape (N, 3072), "
            f"found {getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    return data.reshape(-1, 3, 32, 32)


CIFAR100_FETCH = "cifarkit data --dataset cifar100 --data-dir DIR"


def read_cifar100_split(path: Path, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-100's `train` or `test` file -> (uint8 (N,3,32,32), int64 (N,)) with its fine or coarse labels."""
    d = _read_pickle(path, "CIFAR-100 split", CIFAR100_FETCH)
    if not isinstance(d, dict):
        raise UserError(f"{path}: a pickle, but not a CIFAR-100 split")
    images, y = _images(path, _key(d, "data")), _key(d, f"{labels}_labels")
    if y is None:
        raise UserError(f"{path}: no '{labels}_labels'; is this CIFAR-100's python layout?")
    y = _as_labels(path, y)
    _check_labels(path, y, len(images), 100 if labels == "fine" else 20)
    return images, y


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
        checks[name] = _check(folder / name, CIFAR100_FILE_MD5, verify_md5)
        splits.append((torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)))
    meta = _read_pickle(folder / "meta", "CIFAR-100 meta file", CIFAR100_FETCH)
    names = _key(meta, f"{labels}_label_names") if isinstance(meta, dict) else None
    expected = 100 if labels == "fine" else 20
    if not isinstance(names, list) or len(names) != expected or not all(isinstance(n, str) for n in names):
        raise UserError(f"{folder / 'meta'}: expected {expected} {labels} class names")
    _refuse_repeated_names(folder / "meta", names, "restore the official file")
    checks["meta"] = _check(folder / "meta", CIFAR100_FILE_MD5, verify_md5)
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
