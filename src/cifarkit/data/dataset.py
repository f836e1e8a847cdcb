"""The dataset type every part of cifarkit trains on, and CIFAR-10's constants.

A `Dataset` holds a whole image-classification dataset as uint8 tensors (train, test and, when asked for,
a validation split held out of train), its class names and where it came from. The readers that make
one are cifar.py (the official CIFAR-10/100 archives) and folder.py (image folders); loading.py picks
one by name.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# CIFAR-10's per-channel mean and std of its training images (Dataset.channel_stats gives these to 4 places)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Dataset:
    """A whole image-classification dataset as tensors: images uint8 (N, 3, H, W), labels int64 (N,).

    `val_*` hold the validation split once `split_validation` has taken it out of the training images.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...] = CLASSES
    name: str = "cifar10"
    root: Path | None = None
    layout: str = ""
    checks: dict[str, str] = field(default_factory=dict)  # file name -> what its check found
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    # the positions in the whole training set that --exclude left out, once applied (run_view runs more than once
    # on a run's data; the exclusion must happen once); None: not applied
    excluded: tuple[int, ...] | None = None

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    def to(self, device: torch.device | str) -> Dataset:
        """A copy on `device` (this object is left as it is; on its own device the tensors are shared)."""
        return dataclasses.replace(
            self, **{name: getattr(self, name).to(device) for name in _TENSORS if getattr(self, name) is not None}
        )

    def limit(self, train: int | None = None, test: int | None = None) -> Dataset:
        """A copy with only the first `train` / `test` images (views: no pixels are copied)."""
        return dataclasses.replace(
            self,
            train_images=self.train_images[:train],
            train_labels=self.train_labels[:train],
            test_images=self.test_images[:test],
            test_labels=self.test_labels[:test],
        )

    def split_validation(self, count: int, seed: int) -> Dataset:
        """A copy with `count` training images held out as the validation split: stratified by class (each
        class gives its share, rounded so the total is exact), chosen by `seed`, in a fixed order."""
        if count <= 0:
            return self
        n = len(self.train_labels)
        if count >= n:
            raise UserError(f"--val-split {count}: the training set has only {n} images; hold out fewer")
        labels = self.train_labels.cpu()
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=generator)
        by_class = [order[labels[order] == c] for c in range(len(self.classes))]
        shares = [count * len(members) / n for members in by_class]
        quota = [int(share) for share in shares]
        for c in sorted(range(len(shares)), key=lambda c: quota[c] - shares[c])[: count - sum(quota)]:
            quota[c] += 1  # largest remainders first, so the quotas add up to `count`
        held = torch.cat([members[:q] for members, q in zip(by_class, quota)]).sort().values
        keep = torch.ones(n, dtype=torch.bool)
        keep[held] = False
        device = self.train_images.device
        held, keep = held.to(device), keep.to(device)
        return dataclasses.replace(
            self,
            train_images=self.train_images[keep],
            train_labels=self.train_labels[keep],
            val_images=self.train_images[held],
            val_labels=self.train_labels[held],
        )

    def check(self) -> Dataset:
        """Refuse, by name, what cifarkit cannot train on: a Dataset built by hand (train(config, data=...)) with
        float or channels-last pixels, labels that are not class indices, splits that disagree. Returns self."""
        if len(self.classes) < 2:
            raise UserError(f"data.classes: {len(self.classes)} class name(s); a classifier needs at least two")
        side = None
        for split in ("train", "test", "val"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if split == "val" and images is None and labels is None:
                continue
            if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
                raise UserError(
                    f"data.{split}_images, data.{split}_labels: must be torch tensors, not "
                    f"{type(images).__name__}, {type(labels).__name__} (torch.from_numpy converts arrays)"
                )
            shape = tuple(images.shape)
            if images.dtype != torch.uint8 or len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3]:
                raise UserError(
                    f"data.{split}_images: {images.dtype} of shape {shape}; expected uint8 of shape "
                    "(N, 3, S, S), pixels 0-255 (floats in [0, 1]: (x * 255).round().to(torch.uint8); "
                    "channels last: x.permute(0, 3, 1, 2); one channel: x.expand(-1, 3, -1, -1))"
                )
            if side is not None and shape[2] != side:
                raise UserError(
                    f"data.{split}_images: {shape[2]}x{shape[2]} images, the training images are "
                    f"{side}x{side}; give every split one size"
                )
            side = shape[2]
            if labels.dtype != torch.int64 or tuple(labels.shape) != (shape[0],):
                raise UserError(
                    f"data.{split}_labels: {labels.dtype} of shape {tuple(labels.shape)}; expected "
                    f"int64 of shape ({shape[0]},), one class index per image (labels.long() converts)"
                )
            if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(self.classes):
                raise UserError(
                    f"data.{split}_labels: class indices {int(labels.min())} to {int(labels.max())}, but "
                    f"data.classes names {len(self.classes)} classes: indices must be 0 to "
                    f"{len(self.classes) - 1}"
                )
        return self

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per channel of the training images, as fractions of 255 (what `normalize` takes); exact
        integer sums, in chunks, so 50,000 images need no more memory than a chunk."""
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        for start in range(0, len(self.train_images), 4096):
            chunk = self.train_images[start : start + 4096].cpu().to(torch.int64).transpose(0, 1).reshape(3, -1)
            total += chunk.sum(1).double()
            squares += (chunk * chunk).sum(1).double()
        count = self.train_images[:, 0].numel()
        if count == 0:
            raise UserError(f"{self.root}: the training set is empty")
        mean = total / count
        std = (squares / count - mean * mean).clamp_min(0).sqrt()
        flat = [colour for colour, s in zip(("red", "green", "blue"), std.tolist()) if s == 0]
        if flat:  # normalising would divide by zero: every pixel NaN or infinite
            raise UserError(
                f"{self.root}: the {' and '.join(flat)} channel is the same in every pixel of the "
                f"{len(self.train_images)} training images, so it cannot be normalised; check the images "
                "(for a dataset without colour, save the images in greyscale: they are read as equal "
                "red, green and blue)"
            )
        return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


_TENSORS = ("train_images", "train_labels", "test_images", "test_labels", "val_images", "val_labels")


def to_nfc(names) -> tuple[str, ...]:
    """Class names as they are compared: in Unicode's composed form (NFC). macOS writes file names decomposed, so a
    folder copied from a Mac names the same class in other code points."""
    return tuple(unicodedata.normalize("NFC", name) for name in names)


def default_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $CIFARKIT_DATA, else the user's cache folder; a file or a symlink loop there is refused."""
    if data_dir:
        root = Path(data_dir).expanduser()
    elif os.environ.get("CIFARKIT_DATA"):
        root = Path(os.environ["CIFARKIT_DATA"]).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cifarkit"
    problem = link_problem(root)
    if problem:
        raise UserError(f"--data-dir {root}: {problem}; point it at a folder")
    if root.exists() and not root.is_dir():
        hint = (
            " (an archive is unpacked from the folder that holds it)" if root.name.endswith((".tar.gz", ".tgz")) else ""
        )
        raise UserError(f"--data-dir {root}: a file, not a folder; point it at the folder that holds the data{hint}")
    return root


def link_problem(path: Path) -> str | None:
    """What is wrong with `path` if it is a symlink that leads nowhere: its target missing, a loop, or a target
    that cannot be reached; None for a working link or anything that is not a link."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"a symlink loop (it leads back to itself through {os.readlink(path)})"
        if e.errno == errno.ENOENT:
            return f"a symlink to {os.path.realpath(path)}, which does not exist"
        return f"a symlink to {os.readlink(path)}, which cannot be reached ({e.strerror or e})"
    return None


def describe(ds: Dataset) -> str:
    """What `cifarkit data` prints: where, which layout, images per split and class, file checks."""
    kind = {"py": "python pickles", "bin": "binary records", "folder": "image folders"}.get(ds.layout, ds.layout)
    lines = [
        f"{ds.name} at {ds.root} ({kind}, {ds.layout} layout): {len(ds.classes)} classes, "
        f"{ds.image_size}x{ds.image_size} images"
    ]
    header = f"  {'class':<12}{'train':>8}{'test':>8}"
    lines.append(header)
    train_counts = torch.bincount(ds.train_labels.cpu(), minlength=len(ds.classes))
    test_counts = torch.bincount(ds.test_labels.cpu(), minlength=len(ds.classes))
    for i, name in enumerate(ds.classes):
        lines.append(f"  {name:<12}{int(train_counts[i]):>8}{int(test_counts[i]):>8}")
    lines.append(f"  {'total':<12}{len(ds.train_labels):>8}{len(ds.test_labels):>8}")
    lines.append("files:")
    lines += [f"  {name:<18}{status}" for name, status in ds.checks.items()]
    return "\n".join(lines)
