"""Image folders -> Dataset: the layout torchvision's ImageFolder reads, decoded once and cached.

    DIR/train/CLASS/*.{png,jpg,jpeg,webp,bmp}    class names and order: the folder names, sorted
    DIR/test/CLASS/...  (or DIR/val/CLASS/...)   the same classes

Every image, of any size and mode, becomes RGB uint8 at `image_size` x `image_size`: EXIF orientation
applied, 16-bit scaled to 8, transparency dropped, the shorter side resized to `image_size` (Lanczos,
antialiased), then the centre cropped. Files are decoded in parallel threads (Pillow releases the GIL);
the tensors are cached in the cache folder under a key of the file list, sizes and mtimes, so a second
run reads one file. Other files among the images are skipped with a warning.
"""
from __future__ import annotations

import hashlib
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .data import Dataset, default_data_dir
from .errors import UserError
from .files import WriteError, save_torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_IMAGE_PIXELS = 50_000_000  # larger files are refused before decoding (decompression bombs)
CACHE_FORMAT = 1


def read_image(path: str | os.PathLike, size: int = 32) -> torch.Tensor:
    """One image file -> uint8 (3, size, size), as described above. Refuses non-images, corrupt files and
    images over MAX_IMAGE_PIXELS by name."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # we refuse by our own limit below
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise UserError(f"{path}: {img.width}x{img.height} pixels is too large an image "
                                    f"(limit {MAX_IMAGE_PIXELS:,}); downscale it first")
                img = ImageOps.exif_transpose(img)
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit (or 32-bit int) grey: scale to 8 bits
                    values = np.asarray(img, dtype=np.float64)
                    top = 65535.0 if values.max() > 255 else 255.0
                    img = Image.fromarray(np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8), mode="L")
                rgb = img.convert("RGB")
                scale = size / min(rgb.width, rgb.height)
                width, height = max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))
                rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
                left, top_edge = (width - size) // 2, (height - size) // 2
                rgb = rgb.crop((left, top_edge, left + size, top_edge + size))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image Pillow can read (PNG, JPEG, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: too large an image (limit {MAX_IMAGE_PIXELS:,} pixels); downscale it first") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt files raise these from the decoders
        raise UserError(f"{path}: a corrupt or truncated image ({e})") from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


def _listdir(folder: Path) -> list[Path]:
    """The entries of `folder`, sorted; a link that leads nowhere (or round in a loop) is an error, by name."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:  # no permission, a loop above, ...
        raise UserError(f"{folder}: cannot be listed ({e.strerror or e})") from None
    for entry in entries:
        if entry.is_symlink() and not entry.exists():
            raise UserError(f"{entry}: a broken symlink or a symlink loop; fix or remove it")
    return entries


def list_split(folder: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The classes (sorted folder names) of one split and its (image file, class index) pairs, sorted."""
    classes = tuple(p.name for p in _listdir(folder) if p.is_dir() and not p.name.startswith("."))
    files, skipped, empty = [], [], []
    for index, name in enumerate(classes):
        entries = [p for p in _listdir(folder / name) if not p.name.startswith(".")]
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        kept = set(images)
        skipped += [p for p in entries if p not in kept]
        if not images:
            empty.append(name)
        files += [(p, index) for p in images]
    if not classes:
        raise UserError(f"{folder}: no class folders (expected {folder}/CLASS/IMAGE.png)")
    if empty:
        raise UserError(f"{folder}: class folder(s) without images: {', '.join(empty)} (images end in "
                        f"{', '.join(IMAGE_SUFFIXES)})")
    if skipped:
        warnings.warn(f"{folder}: skipped {len(skipped)} file(s) that are not images, e.g. "
                      f"{', '.join(str(p) for p in skipped[:3])}", stacklevel=3)
    return classes, files


def _cache_key(image_size: int, splits: dict[str, list[tuple[Path, int]]]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT} {image_size}".encode())
    for split, files in splits.items():
        for path, label in files:
            stat = path.stat()
            digest.update(f"\n{split}\t{label}\t{path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _decode(files: list[tuple[Path, int]], image_size: int, desc: str, progress: bool) -> torch.Tensor:
    from tqdm import tqdm

    def one(path: Path) -> torch.Tensor | UserError:
        try:
            return read_image(path, image_size)
        except UserError as e:
            return e

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(tqdm(pool.map(one, [p for p, _ in files]), total=len(files), desc=desc, unit="img",
                            disable=not progress, file=sys.stderr, leave=False))
    failed = [str(e) for e in decoded if isinstance(e, UserError)]
    if failed:
        raise UserError(f"{len(failed)} image file(s) could not be read: " + "; ".join(failed[:5])
                        + ("; ..." if len(failed) > 5 else ""))
    return torch.stack(decoded)


def default_cache_dir() -> Path:
    """$CIFARKIT_CACHE, else the user's cache folder (never the data folder, which may be read-only)."""
    if os.environ.get("CIFARKIT_CACHE"):
        return Path(os.environ["CIFARKIT_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cifarkit" / "folder-cache"


def memory_budget() -> int:
    """Bytes a dataset may take in memory: half of this machine's RAM."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def load_folder(data_dir: str | os.PathLike | None, image_size: int = 32, progress: bool = True,
                cache_dir: str | os.PathLike | None = None) -> Dataset:
    """The image folders under `data_dir` (train/ and test/ or val/) as a Dataset (see the module's docstring)."""
    root = default_data_dir(data_dir)
    if not (root / "train").is_dir():
        raise UserError(f"{root}: no train/ folder; --dataset folder reads DIR/train/CLASS/*.png and "
                        "DIR/test/CLASS/*.png (or DIR/val/CLASS/...)")
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if test_dir is None:
        raise UserError(f"{root}: no test/ (or val/) folder beside train/")
    classes, train_files = list_split(root / "train")
    test_classes, test_files = list_split(test_dir)
    if test_classes != classes:
        raise UserError(f"{root}: train/ and {test_dir.name}/ hold different classes: only in train/: "
                        f"{', '.join(sorted(set(classes) - set(test_classes))) or '-'}; only in {test_dir.name}/: "
                        f"{', '.join(sorted(set(test_classes) - set(classes))) or '-'}")
    if len(classes) < 2:
        raise UserError(f"{root / 'train'}: one class only ({classes[0]}); a classifier needs at least two")
    needed = (len(train_files) + len(test_files)) * 3 * image_size * image_size
    if needed > memory_budget():
        raise UserError(f"{root}: {len(train_files) + len(test_files):,} images at {image_size}x{image_size} take "
                        f"{needed / 2**30:.1f} GiB, over the {memory_budget() / 2**30:.1f} GiB budget (half the "
                        "RAM); use a smaller --image-size or a subset of the images")
    splits = {"train": train_files, "test": test_files}
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_file = cache / f"{_cache_key(image_size, splits)}.pt"
    tensors = _read_cache(cache_file, {name: len(files) for name, files in splits.items()}, image_size)
    if tensors is None:
        tensors = {name: _decode(files, image_size, f"decoding {name}/", progress) for name, files in splits.items()}
        try:
            save_torch(cache_file, {"format": CACHE_FORMAT, **tensors})
        except WriteError as e:  # a read-only cache folder costs the next run a decode, nothing more
            warnings.warn(f"{cache_file}: could not write the decode cache ({e.reason})", stacklevel=2)
    labels = {name: torch.tensor([label for _, label in files], dtype=torch.int64) for name, files in splits.items()}
    return Dataset(tensors["train"], labels["train"], tensors["test"], labels["test"], classes=classes, name="folder",
                   root=root, layout="folder", checks={"cache": str(cache_file)})


def _read_cache(path: Path, counts: dict[str, int], image_size: int) -> dict[str, torch.Tensor] | None:
    """The cached tensors if the file is whole and matches; else None (it is rebuilt, never trusted)."""
    if not path.exists():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached.get("format") == CACHE_FORMAT and all(
                cached[name].dtype == torch.uint8 and tuple(cached[name].shape) == (n, 3, image_size, image_size)
                for name, n in counts.items()):
            return {name: cached[name] for name in counts}
    except Exception:  # truncated, another format, not a dict: decode again
        pass
    warnings.warn(f"{path}: the decode cache is damaged or stale; decoding the images again", stacklevel=3)
    return None
