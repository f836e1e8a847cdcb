"""What an image folder split holds: its class folders (sorted, named in NFC) and their image files at any depth,
as torchvision's ImageFolder reads them; other files and symlinked folders that would be read twice are skipped
with a warning, and two class folders that are one folder are refused.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import UserError
from .dataset import to_nfc

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


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
