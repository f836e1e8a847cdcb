"""Image folders -> Dataset: the layout torchvision's ImageFolder reads, decoded once and cached.

    DIR/train/CLASS/**/*.{png,jpg,jpeg,webp,bmp}    classes: the folder names, sorted (named in NFC); images
                                                    at any depth below a class folder
    DIR/test/CLASS/...  (or DIR/val/CLASS/...)      the same classes (val/ is read only where test/ is absent)

Every image, of any size and mode, becomes RGB uint8 at `image_size` x `image_size`: EXIF orientation
applied, 16-bit scaled to 8 (over 65535), transparency dropped, the shorter side resized to `image_size`
(Lanczos, antialiased), then the centre cropped, both in one resize of the centre square (so a thin image is
never upscaled whole). Files are decoded in parallel threads (Pillow releases the GIL); the tensors are cached
in cifarkit's own cache folder (folder_cache.py) under a key of the file list, sizes and mtimes, so a second
run reads one file; one file per folder and image size, the stale one removed when the folder changes. Other files
among the images are skipped with a warning.
"""

from __future__ import annotations

import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..runtime.device import available_cpus
from .dataset import Dataset, default_data_dir
from .folder_cache import cache_path, read_cache, write_cache
from .folder_files import list_split

MAX_IMAGE_PIXELS = 50_000_000  # larger files are refused before decoding (decompression bombs)


def read_image(path: str | os.PathLike, size: int = 32) -> torch.Tensor:
    """One image file -> uint8 (3, size, size), as described above. Refuses non-images, folders, unreadable and
    corrupt files and images over MAX_IMAGE_PIXELS by name."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # we refuse by our own limit below
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise UserError(
                        f"{path}: {img.width}x{img.height} pixels is too large an image "
                        f"(limit {MAX_IMAGE_PIXELS:,}); downscale it first"
                    )
                img = ImageOps.exif_transpose(img)
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                    # One fixed scale for every image, so a brighter file never reads darker than a dimmer one.
                    # "I" is 16-bit too: Pillow opens 16-bit PGM (and older Pillows 16-bit PNG) as "I".
                    values = np.asarray(img, dtype=np.float64)
                    img = Image.fromarray(np.clip(values / 65535 * 255 + 0.5, 0, 255).astype(np.uint8), mode="L")
                rgb = img.convert("RGB")
                # One resize of the part the centre crop keeps: memory follows the output, not the upscaled whole
                box = _centre_crop_box(rgb.width, rgb.height, size)
                rgb = rgb.resize((size, size), Image.Resampling.LANCZOS, box=box)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not an image file; pass the image files in it instead") from None
    except PermissionError:
        raise UserError(f"{path}: cannot be read (permission denied); check its permissions") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image Pillow can read (PNG, JPEG, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: too large an image (limit {MAX_IMAGE_PIXELS:,} pixels); downscale it first") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt files raise these from the decoders
        raise UserError(f"{path}: a corrupt or truncated image ({e})") from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


def _centre_crop_box(width: int, height: int, size: int) -> tuple[float, float, float, float]:
    """The source pixels (left, top, right, bottom) that resizing the shorter side to `size` and then cropping the
    centre square would keep. Fractional, so one resize of this box gives that two-step result (to rounding)."""
    scale = size / min(width, height)
    spans = []
    for length in (width, height):
        resized = max(size, round(length * scale))
        start = (resized - size) // 2  # the two-step way's crop offset, in resized pixels
        spans.append((start * length / resized, (start + size) * length / resized))
    (left, right), (top, bottom) = spans
    return left, top, right, bottom


def _decode(files: list[tuple[Path, int]], image_size: int, desc: str, progress: bool) -> torch.Tensor:
    from tqdm import tqdm

    def one(path: Path) -> torch.Tensor | UserError:
        try:
            return read_image(path, image_size)
        except UserError as e:
            return e

    with ThreadPoolExecutor(max_workers=available_cpus()) as pool:  # a container's share, not the host's CPUs
        decoded = list(
            tqdm(
                pool.map(one, [p for p, _ in files]),
                total=len(files),
                desc=desc,
                unit="img",
                disable=not progress,
                file=sys.stderr,
                leave=False,
            )
        )
    failed = [str(e) for e in decoded if isinstance(e, UserError)]
    if failed:
        raise UserError(
            f"{len(failed)} image file(s) could not be read: "
            + "; ".join(failed[:5])
            + ("; ..." if len(failed) > 5 else "")
        )
    return torch.stack(decoded)


def memory_budget() -> int:
    """Bytes a dataset may take in memory: half of this machine's RAM."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def load_folder(
    data_dir: str | os.PathLike | None,
    image_size: int = 32,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    test_only: bool = False,
) -> Dataset:
    """The image folders under `data_dir` (train/ and test/ or val/) as a Dataset (see the module's docstring).
    `test_only` (evaluate, GradCAM, the app): train/ is listed for its classes, but where no cache holds its
    images they are not decoded: the Dataset has none. `cache_dir`, as $CIFARKIT_CACHE, names a cache folder whose
    cifarkit-folders/ sub-folder holds the cache (default: folder_cache.default_cache_dir())."""
    root = default_data_dir(data_dir)
    test_dir = _test_folder(root)
    classes, train_files = list_split(root / "train")
    test_classes, test_files = list_split(test_dir)  # (their warnings name load_folder's caller, as its own do)
    test_files = _with_train_indices(root, test_dir, classes, test_classes, test_files)
    budget, image_bytes = memory_budget(), 3 * image_size * image_size
    fits_whole = (len(train_files) + len(test_files)) * image_bytes <= budget
    count = len(test_files) if test_only else len(train_files) + len(test_files)
    if count * image_bytes > budget:
        raise UserError(
            f"{root}: {count:,} images at {image_size}x{image_size} take "
            f"{count * image_bytes / 2**30:.1f} GiB, over the {budget / 2**30:.1f} GiB budget (half the "
            "RAM); use a smaller --image-size or a subset of the images"
        )
    splits = {"train": train_files, "test": test_files}
    cache_file, prefix = cache_path(root, image_size, splits, cache_dir)
    tensors = (
        read_cache(cache_file, {name: len(files) for name, files in splits.items()}, image_size) if fits_whole else None
    )  # test_only on a machine where train/ does not fit
    if tensors is None and test_only:  # no cache written: it would lack the training images
        splits["train"] = []
        tensors = {
            "train": torch.empty((0, 3, image_size, image_size), dtype=torch.uint8),
            "test": _decode(test_files, image_size, f"decoding {test_dir.name}/", progress),
        }
    elif tensors is None:
        tensors = {name: _decode(files, image_size, f"decoding {name}/", progress) for name, files in splits.items()}
        write_cache(cache_file, tensors, prefix)
    labels = {name: torch.tensor([label for _, label in files], dtype=torch.int64) for name, files in splits.items()}
    return Dataset(
        tensors["train"],
        labels["train"],
        tensors["test"],
        labels["test"],
        classes=classes,
        name="folder",
        root=root,
        layout="folder",
        checks={"cache": str(cache_file)},
    )


def _test_folder(root: Path) -> Path:
    """The folder of the test split beside root/train: test/, else val/ (a val/ beside test/ is not read)."""
    if not (root / "train").is_dir():
        raise UserError(
            f"{root}: no train/ folder; --dataset folder reads DIR/train/CLASS/*.png and "
            "DIR/test/CLASS/*.png (or DIR/val/CLASS/...)"
        )
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if test_dir is None:
        raise UserError(f"{root}: no test/ (or val/) folder beside train/")
    if test_dir.name == "test" and (root / "val").is_dir():
        warnings.warn(
            f"{root}: val/ is not read when test/ is there (test/ is the test set); --val-split N holds "
            "N images out of train/ as a validation split",
            stacklevel=3,
        )
    return test_dir


def _with_train_indices(
    root: Path,
    test_dir: Path,
    classes: tuple[str, ...],
    test_classes: tuple[str, ...],
    test_files: list[tuple[Path, int]],
) -> list[tuple[Path, int]]:
    """The test folder's (image file, class index) pairs with train/'s indices; refused unless it holds train/'s
    classes, at least two of them."""
    if set(test_classes) != set(classes):
        raise UserError(
            f"{root}: train/ and {test_dir.name}/ hold different classes: only in train/: "
            f"{', '.join(sorted(set(classes) - set(test_classes))) or '-'}; only in {test_dir.name}/: "
            f"{', '.join(sorted(set(test_classes) - set(classes))) or '-'}"
        )
    if test_classes != classes:  # the same names sorted otherwise (decomposed on one side): train/'s order rules
        test_files = [(path, classes.index(test_classes[label])) for path, label in test_files]
    if len(classes) < 2:
        raise UserError(f"{root / 'train'}: one class only ({classes[0]}); a classifier needs at least two")
    return test_files
