"""The files of the official CIFAR archives, each read and checked for structure (a broken file is an error
whatever its MD5): CIFAR-10's python pickles and binary records, CIFAR-100's pickles, the meta files' class names;
and each file's MD5 against the official one where it is known.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..files.reader import MiB, read_bytes
from .dataset import CLASSES, to_nfc
from .download import md5_of

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
CIFAR100_FILE_MD5 = {  # of the files in the official archive
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}
IMAGE_BYTES = 3 * 32 * 32
BATCH_LIMIT = 256 * MiB  # a CIFAR-10 batch is 31 MB, CIFAR-100's train file 155 MB: a larger file is not one
META_LIMIT = 1 * MiB  # the class names: a few hundred bytes


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


def pickle_key(d: dict, name: str):
    """Python-2 pickles have bytes keys when read with encoding='bytes'; we read latin1 -> str."""
    return d.get(name, d.get(name.encode()))


def read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One `cifar-10-batches-py` file -> (uint8 (N,3,32,32), int64 (N,))."""
    d = read_pickle(path, "CIFAR-10 batch", "cifarkit data --data-dir DIR")
    if not isinstance(d, dict) or pickle_key(d, "data") is None or pickle_key(d, "labels") is None:
        raise UserError(
            f"{path}: a pickle, but not a CIFAR-10 batch (no 'data' and 'labels'); "
            "point --data-dir at the official cifar-10-batches-py folder"
        )
    images = _images(path, pickle_key(d, "data"))
    labels = _as_labels(path, pickle_key(d, "labels"))
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
            names = tuple(pickle_key(meta, "label_names"))
        else:
            names = tuple(line.strip() for line in raw.decode().splitlines() if line.strip())
    except Exception:  # the meta file is optional: the class names are fixed by the dataset anyway
        return CLASSES
    if len(names) != 10:
        return CLASSES
    refuse_repeated_names(meta_file, names, "delete it to use CIFAR-10's own names, or restore the official file")
    return names


def refuse_repeated_names(meta_file: Path, names, remedy: str) -> None:
    """A meta file naming one class twice (compared as class names are: NFC) is refused, naming the repeats."""
    seen: dict[str, int] = {}
    for name in to_nfc(str(n) for n in names):
        seen[name] = seen.get(name, 0) + 1
    repeated = [f"{name!r} ({count} times)" for name, count in seen.items() if count > 1]
    if repeated:
        raise UserError(
            f"{meta_file}: the class names repeat: {', '.join(repeated)}; every class needs a name of its own; {remedy}"
        )


def check_md5(path: Path, known: dict[str, str], verify_md5: bool) -> str:
    """What the MD5 check of one file found (its structure was checked already)."""
    if not verify_md5:
        return "not checked"
    if path.name not in known:
        return "no official MD5 known; structure valid"
    if md5_of(path) == known[path.name]:
        return "MD5 ok"
    return "MD5 differs from the official file (re-encoded copy?); structure valid, used"


def read_pickle(path: Path, what: str, fetch: str) -> Any:
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
    d = read_pickle(path, "CIFAR-100 split", CIFAR100_FETCH)
    if not isinstance(d, dict):
        raise UserError(f"{path}: a pickle, but not a CIFAR-100 split")
    images, y = _images(path, pickle_key(d, "data")), pickle_key(d, f"{labels}_labels")
    if y is None:
        raise UserError(f"{path}: no '{labels}_labels'; is this CIFAR-100's python layout?")
    y = _as_labels(path, y)
    _check_labels(path, y, len(images), 100 if labels == "fine" else 20)
    return images, y
