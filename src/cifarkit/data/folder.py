"""Image folders -> Dataset: the layout torchvision's ImageFolder reads, decoded once and cached.

    DIR/train/CLASS/**/*.{png,jpg,jpeg,webp,bmp}    classes: the folder names, sorted (named in NFC); images
                                                    at any depth below a class folder
    DIR/test/CLASS/...  (or DIR/val/CLASS/...)      the same classes (val/ is read only where test/ is absent)

Every image, of any size and mode, becomes RGB uint8 at `image_size` x `image_size`: EXIF orientation
applied, 16-bit scaled to 8 (over 65535), transparency dropped, the shorter side resized to `image_size`
(Lanczos, antialiased), then the centre cropped, both in one resize of the centre square (so a thin image is
never upscaled whole). Files are decoded in parallel threads (Pillow releases the GIL); the tensors are cached
in cifarkit's own cache folder (see default_cache_dir) under a key of the file list, sizes and mtimes, so a second
run reads one file; one file per folder and image size, the stale one removed when the folder changes. Other files
among the images are skipped with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..files.atomic import WriteError, save_torch
from ..runtime.device import available_cpus
from .dataset import Dataset, default_data_dir, to_nfc

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_IMAGE_PIXELS = 50_000_000  # larger files are refused before decoding (decompression bombs)
# The version of read_image's decoding the cached pixels come from, raised whenever its output changes: a cache of
# other pixels is decoded again, never used
CACHE_FORMAT = 2
CACHE_SUBFOLDER = "cifarkit-folders"  # cifarkit's own folder inside a cache folder the user names
CACHE_NAME = re.compile(r"[0-9a-f]{12}-[0-9]+px-[0-9a-f]{32}\.pt")  # FOLDER-SIZE-KEY.pt, as load_folder names them


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


def _class_files(class_dir: Path, other_classes: set[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """The image files at any depth below one class folder (as ImageFolder reads it), in sorted order; the other
    files there; and the symlinked folders not entered: those leading to a folder already read (a loop would be
    walked forever), to a folder above this class (its images belong to other classes) or to another class
    folder (`other_classes`, resolved). Hidden files and folders are left out."""
    images, others, revisits = [], [], []
    home = class_dir.resolve()
    entered = {home}

    def walk(folder: Path) -> None:
        for entry in _listdir(folder):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                target = entry.resolve()
                if target in entered or target in other_classes or home.is_relative_to(target):
                    revisits.append(entry)
                else:
                    entered.add(target)
                    walk(entry)
            elif entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                images.append(entry)
            else:
                others.append(entry)

    walk(class_dir)
    return images, others, revisits


def list_split(folder: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The classes of one split (its folder names, sorted as they are written, named in Unicode's composed form:
    dataset.to_nfc) and its (image file, class index) pairs, sorted."""
    folders = {}  # class name (NFC) -> its folder, in the folders' order
    for entry in _listdir(folder):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        try:
            entry.name.encode("utf-8")
        except UnicodeEncodeError:  # the name could not be written in reports, plots or checkpoints
            raise UserError(f"{folder}: the class folder name {entry.name!r} is not valid UTF-8; rename it") from None
        (name,) = to_nfc([entry.name])
        if name in folders:
            raise UserError(
                f"{folder}: the class folders {folders[name].name!r} and {entry.name!r} are one name "
                "written in two Unicode forms (composed and decomposed accents); merge them into one"
            )
        folders[name] = entry
    classes = tuple(folders)
    files, skipped, revisits, empty = [], [], [], []
    class_dirs = {name: folders[name].resolve() for name in classes}
    _refuse_shared_class_folders(folder, folders, class_dirs)
    for index, name in enumerate(classes):
        images, others, links = _class_files(folders[name], set(class_dirs.values()) - {class_dirs[name]})
        skipped += others
        revisits += links
        if not images:
            empty.append(name)
        files += [(p, index) for p in images]
    if not classes:
        raise UserError(f"{folder}: no class folders (expected {folder}/CLASS/IMAGE.png)")
    if empty:
        raise UserError(
            f"{folder}: class folder(s) without images: {', '.join(empty)} (images end in {', '.join(IMAGE_SUFFIXES)})"
        )
    if skipped:
        warnings.warn(
            f"{folder}: skipped {len(skipped)} file(s) that are not of the image types read here "
            f"({', '.join(IMAGE_SUFFIXES)}), e.g. "
            f"{', '.join(str(p) for p in skipped[:3])}",
            stacklevel=3,
        )
    if revisits:
        warnings.warn(
            f"{folder}: skipped {len(revisits)} symlinked folder(s) that lead to a folder already read, "
            "above their class or into another class (a loop, a second link, other classes' images), "
            f"e.g. {', '.join(str(p) for p in revisits[:3])}",
            stacklevel=3,
        )
    return classes, files


def _refuse_shared_class_folders(folder: Path, folders: dict[str, Path], class_dirs: dict[str, Path]) -> None:
    """Two class folders that are one folder (a symlink to another class, or two links to one place) would train two
    classes on the same images: refused, naming them and where they lead."""
    by_target: dict[Path, list[str]] = {}
    for name, target in class_dirs.items():
        by_target.setdefault(target, []).append(name)
    shared = [(target, names) for target, names in by_target.items() if len(names) > 1]
    if shared:
        target, names = shared[0]
        links = [repr(folders[name].name) for name in names if folders[name].is_symlink()]
        how = (
            f"{' and '.join(links)} {'is a symlink' if len(links) == 1 else 'are symlinks'} to it"
            if links
            else ("mounted twice")
        )
        raise UserError(
            f"{folder}: the class folders {' and '.join(repr(folders[n].name) for n in names)} are one "
            f"folder, {target} ({how}): two classes would train on the same images; remove the link, "
            "or give each class its own images"
        )


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


def default_cache_dir() -> Path:
    """Where the decode cache files are: cifarkit-folders/ in $CIFARKIT_CACHE (a folder the user names may be
    shared: cifarkit writes and removes files only in its own sub-folder there), else cifarkit/folder-cache/ in the
    user's cache folder (never the data folder, which may be read-only)."""
    if os.environ.get("CIFARKIT_CACHE"):
        return Path(os.environ["CIFARKIT_CACHE"]).expanduser() / CACHE_SUBFOLDER
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cifarkit" / "folder-cache"


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
    cifarkit-folders/ sub-folder holds the cache (default: default_cache_dir())."""
    root = default_data_dir(data_dir)
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
            stacklevel=2,
        )
    classes, train_files = list_split(root / "train")
    test_classes, test_files = list_split(test_dir)
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
    cache = Path(cache_dir) / CACHE_SUBFOLDER if cache_dir else default_cache_dir()
    # one cache file per folder and image size: FOLDER-SIZE-KEY.pt, the key changing with any file
    prefix = f"{hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:12]}-{image_size}px-"
    cache_file = cache / f"{prefix}{_cache_key(root, image_size, splits)}.pt"
    tensors = (
        _read_cache(cache_file, {name: len(files) for name, files in splits.items()}, image_size)
        if fits_whole
        else None
    )  # test_only on a machine where train/ does not fit
    if tensors is None and test_only:  # no cache written: it would lack the training images
        splits["train"] = []
        tensors = {
            "train": torch.empty((0, 3, image_size, image_size), dtype=torch.uint8),
            "test": _decode(test_files, image_size, f"decoding {test_dir.name}/", progress),
        }
    elif tensors is None:
        tensors = {name: _decode(files, image_size, f"decoding {name}/", progress) for name, files in splits.items()}
        try:
            save_torch(cache_file, {"format": CACHE_FORMAT, **tensors})
        except WriteError as e:  # a read-only cache folder costs the next run a decode, nothing more
            warnings.warn(f"{cache_file}: could not write the decode cache ({e.reason})", stacklevel=2)
        else:  # the folder's earlier decodes at this size are stale now (each is the size of the dataset): only
            # files of cifarkit's own folder and naming are removed
            for stale in cache.glob(f"{prefix}*.pt"):
                if stale != cache_file and CACHE_NAME.fullmatch(stale.name) and stale.is_file():
                    with contextlib.suppress(OSError):  # another user's file, or one open elsewhere: left there
                        stale.unlink()
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


def _read_cache(path: Path, counts: dict[str, int], image_size: int) -> dict[str, torch.Tensor] | None:
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
