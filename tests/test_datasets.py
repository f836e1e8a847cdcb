"""CIFAR-100 and image folders, the validation split, per-channel statistics, models at other sizes."""

import csv
import json
import os
import pickle
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_cifar
from PIL import Image

from cifarkit import TrainConfig, train
from cifarkit.cli.main import main
from cifarkit.data import cifar, folder
from cifarkit.data.dataset import MEAN, STD
from cifarkit.data.download import md5_of
from cifarkit.data.loading import load_dataset
from cifarkit.errors import UserError

FINE = [f"fine{i:02d}" for i in range(100)]
COARSE = [f"coarse{i:02d}" for i in range(20)]


def write_cifar100(root, n_train=200, n_test=100):
    """The official python layout: cifar-100-python/{train,test,meta} pickles with fine and coarse labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        x, coarse = synthetic_cifar(n // 10, seed)  # 10 learnable colour classes...
        coarse = coarse * 2  # ... as coarse labels 0, 2, ..., 18, and fine = 5 * coarse + image index % 5
        fine = coarse * 5 + np.arange(len(coarse)) % 5
        (folder / name).write_bytes(
            pickle.dumps(
                {
                    "data": x.reshape(len(x), -1),
                    "fine_labels": fine.tolist(),
                    "coarse_labels": coarse.tolist(),
                    "filenames": [],
                },
                protocol=2,
            )
        )
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": FINE, "coarse_label_names": COARSE}))
    return folder


def test_cifar100_reads_fine_and_coarse_labels_with_their_names(tmp_path):
    write_cifar100(tmp_path)
    fine = load_dataset("cifar100", tmp_path, labels="fine", download=False)
    coarse = load_dataset("cifar100", tmp_path / "cifar-100-python", labels="coarse", download=False)
    assert (fine.name, len(fine.classes), len(coarse.classes)) == ("cifar100", 100, 20)
    assert fine.classes[7] == "fine07" and coarse.classes[3] == "coarse03"
    assert torch.equal(fine.train_labels // 5, coarse.train_labels) and fine.train_images.shape == (200, 3, 32, 32)
    assert fine.checks["train"].startswith("MD5 differs")  # a synthetic copy: structure valid, used


def test_cifar100_downloads_checks_and_extracts_the_official_archive(tmp_path, monkeypatch):
    source = tmp_path / "src"
    write_cifar100(source)
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-100-python", arcname="cifar-100-python")
    monkeypatch.setattr(cifar, "CIFAR100_URL", archive.as_uri())
    monkeypatch.setattr(cifar, "CIFAR100_MD5", md5_of(archive))
    data = load_dataset("cifar100", tmp_path / "cache", labels="coarse")
    assert len(data.train_labels) == 200 and (tmp_path / "cache" / "cifar-100-python" / "meta").exists()
    monkeypatch.setattr(cifar, "CIFAR100_MD5", "0" * 32)
    with pytest.raises(UserError, match="does not match the official"):
        load_dataset("cifar100", tmp_path / "other")


def test_cifar100_damage_and_absence_are_named(tmp_path):
    with pytest.raises(UserError, match="no CIFAR-100 here"):
        load_dataset("cifar100", tmp_path / "none", download=False)
    folder = write_cifar100(tmp_path)
    (folder / "train").write_bytes((folder / "train").read_bytes()[:500])
    with pytest.raises(UserError, match="train: not a readable CIFAR-100 split"):
        load_dataset("cifar100", tmp_path, download=False)


def test_cifar100_with_a_class_named_twice_or_a_link_leading_nowhere_is_refused_by_name(tmp_path, monkeypatch):
    folder = write_cifar100(tmp_path / "data")
    (folder / "meta").write_bytes(
        pickle.dumps({"fine_label_names": FINE[:99] + ["fine00"], "coarse_label_names": COARSE})
    )
    with pytest.raises(UserError, match=r"meta: the class names repeat: 'fine00' \(2 times\)"):
        load_dataset("cifar100", tmp_path / "data", download=False)
    assert len(load_dataset("cifar100", tmp_path / "data", labels="coarse", download=False).classes) == 20
    monkeypatch.setattr(cifar, "fetch_archive", lambda *a, **k: pytest.fail("went to download"))
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "cifar-100-python").symlink_to(tmp_path / "moved")
    with pytest.raises(UserError, match=r"linked/cifar-100-python: a symlink to .*moved, which does not exist"):
        load_dataset("cifar100", tmp_path / "linked")
    (tmp_path / "linked" / "cifar-100-python").unlink()
    (tmp_path / "linked" / "cifar-100-python").write_bytes(b"not a folder")
    with pytest.raises(UserError, match=r"linked/cifar-100-python: a file, not the folder of that name"):
        load_dataset("cifar100", tmp_path / "linked")


def save_image(path, kind, size):
    """An image of one colour (its class) under noise, in the given mode."""
    rng = np.random.default_rng(abs(hash((str(path), kind))) % 2**32)
    w, h = size
    colour = {"red": (220, 30, 30), "blue": (30, 30, 220)}[path.parent.name]
    rgb = np.clip(rng.normal(0, 20, (h, w, 3)) + colour, 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "L":
        img = img.convert("L")
    elif kind == "P":
        img = img.convert("P")
    elif kind == "RGBA":
        img = img.convert("RGBA")
    elif kind == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)  # 16-bit grey
    img.save(path)


def write_folders(root, per_class=12, test_name="test"):
    kinds = [
        ("png", "RGB", (40, 30)),
        ("jpg", "RGB", (64, 64)),
        ("png", "L", (32, 32)),
        ("png", "P", (20, 50)),
        ("png", "RGBA", (33, 33)),
        ("png", "I;16", (48, 40)),
        ("webp", "RGB", (70, 35)),
        ("bmp", "RGB", (32, 32)),
    ]
    for split, n in (("train", per_class), (test_name, per_class // 2)):
        for cls in ("red", "blue"):
            for i in range(n):
                suffix, kind, size = kinds[i % len(kinds)]
                save_image(root / split / cls / f"img{i:03d}.{suffix}", kind, size)
    return root


def test_folders_of_mixed_sizes_and_modes_become_one_tensor_with_sorted_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    write_folders(tmp_path / "imgs")
    data = load_dataset("folder", tmp_path / "imgs", image_size=24, progress=False)
    assert data.classes == ("blue", "red") and data.train_images.shape == (24, 3, 24, 24)
    assert data.test_images.shape == (12, 3, 24, 24) and data.train_images.dtype == torch.uint8
    red = data.train_images[data.train_labels == 1].float().mean((0, 2, 3))
    assert red[0] > 150 and red[2] < 100  # colours survive every mode (the grey ones average in)
    grey16 = folder.read_image(tmp_path / "imgs" / "train" / "red" / "img005.png", 24)  # the 16-bit one
    assert 30 < grey16.float().mean() < 200  # scaled to 8 bits, not clipped to white


def test_folders_decode_on_the_cpus_the_process_may_use_not_the_hosts(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    write_folders(tmp_path / "imgs")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # as `taskset -c 3` or a container
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    pools = []
    real_pool = folder.ThreadPoolExecutor
    monkeypatch.setattr(
        folder, "ThreadPoolExecutor", lambda max_workers: pools.append(max_workers) or real_pool(max_workers)
    )
    load_dataset("folder", tmp_path / "imgs", image_size=24, progress=False)
    assert pools and set(pools) == {1}


def test_the_decode_cache_is_hit_and_a_damaged_or_stale_one_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=4)
    first = load_dataset("folder", root, progress=False)
    monkeypatch.setattr(folder, "_decode", lambda *a, **k: pytest.fail("decoded again despite the cache"))
    second = load_dataset("folder", root, progress=False)
    assert torch.equal(first.train_images, second.train_images)
    cache_file = next((tmp_path / "cache" / "cifarkit-folders").glob("*.pt"))
    cache_file.write_bytes(cache_file.read_bytes()[:100])  # truncated
    monkeypatch.undo()
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="damaged or stale"):
        third = load_dataset("folder", root, progress=False)
    assert torch.equal(first.train_images, third.train_images)
    time.sleep(0.01)
    save_image(root / "train" / "red" / "img000.png", "RGB", (99, 99))  # changed file: another key
    os.utime(root / "train" / "red" / "img000.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    before = list((tmp_path / "cache" / "cifarkit-folders").glob("*.pt"))
    assert len(before) == 1
    load_dataset("folder", root, progress=False)
    after = list((tmp_path / "cache" / "cifarkit-folders").glob("*.pt"))
    assert len(after) == 1 and after != before  # decoded again, and the stale decode removed, not piled up
    load_dataset("folder", root, image_size=16, progress=False)  # another size: a cache of its own, beside
    shutil.copytree(root, tmp_path / "copy")
    load_dataset("folder", tmp_path / "copy", progress=False)  # another folder: one of its own too
    assert len(list((tmp_path / "cache" / "cifarkit-folders").glob("*.pt"))) == 3 and after[0].exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no-train", "no train/ folder"),
        ("no-test", "no test/ \\(or val/\\) folder"),
        ("empty-class", "class folder\\(s\\) without images: green"),
        ("class-sets", "different classes: only in train/: green; only in test/: -"),
        ("one-class", "one class only"),
        ("truncated", "1 image file\\(s\\) could not be read: .*img000.png: a corrupt or truncated image"),
        ("not-an-image", "could not be read: .*img001.png: not an image"),
        ("huge", "too large an image"),
        ("loop", "blue: a broken symlink or a symlink loop"),
    ],
)
def test_bad_folders_are_named(tmp_path, monkeypatch, damage, message):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=4)
    red = root / "train" / "red"
    if damage == "no-train":
        (root / "train").rename(root / "training")
    elif damage == "no-test":
        (root / "test").rename(root / "testing")
    elif damage == "empty-class":
        (root / "train" / "green").mkdir()
        (root / "test" / "green").mkdir()
    elif damage == "class-sets":
        (root / "train" / "green").mkdir()
        (red / "img000.png").rename(root / "train" / "green" / "img000.png")
    elif damage == "one-class":
        for split in ("train", "test"):
            for p in (root / split / "blue").iterdir():
                p.unlink()
            (root / split / "blue").rmdir()
    elif damage == "truncated":
        (red / "img000.png").write_bytes((red / "img000.png").read_bytes()[:60])
    elif damage == "not-an-image":
        (red / "img001.jpg").write_bytes(b"this is text, not a JPEG")
        (red / "img001.jpg").rename(red / "img001.png")
    elif damage == "huge":
        monkeypatch.setattr(folder, "MAX_IMAGE_PIXELS", 1000)
    elif damage == "loop":
        for p in (root / "train" / "blue").iterdir():
            p.unlink()
        (root / "train" / "blue").rmdir()
        (root / "train" / "blue").symlink_to(root / "train" / "blue")
    with pytest.raises(UserError, match=message):
        load_dataset("folder", root, progress=False)


def test_other_files_among_the_images_are_skipped_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=4)
    (root / "train" / "red" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="skipped 1 file"):
        data = load_dataset("folder", root, progress=False)
    assert len(data.train_labels) == 8


def test_a_folder_too_large_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    root = write_folders(tmp_path / "imgs", per_class=4)
    monkeypatch.setattr(folder, "memory_budget", lambda: 1000)
    with pytest.raises(UserError, match=r"12 images at 32x32 take .* GiB, over the .* budget .*--image-size"):
        load_dataset("folder", root, progress=False)
    # what needs only the test set (evaluate, GradCAM, the app) counts only test/: 4 images fit in 20,000 bytes
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(folder, "memory_budget", lambda: 20_000)
    data = load_dataset("folder", root, progress=False, test_only=True)
    assert len(data.test_labels) == 4 and len(data.train_labels) == 0


def test_images_below_a_class_folder_are_read_at_any_depth_and_symlink_loops_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    flat = write_folders(tmp_path / "flat", per_class=4)
    nested = Path(shutil.copytree(flat, tmp_path / "nested", symlinks=True))
    red, blue = nested / "train" / "red", nested / "train" / "blue"
    (red / "batch1").mkdir()
    for image in red.glob("img*"):
        image.rename(red / "batch1" / image.name)
    blue.rename(tmp_path / "blue-elsewhere")  # blue's images reached only through a symlinked folder
    (blue / "deeper").mkdir(parents=True)
    (blue / "deeper" / "batch1").symlink_to(tmp_path / "blue-elsewhere")
    (red / "batch1" / "notes.txt").write_text("not an image")  # still counted as skipped, at any depth
    (red / "batch1" / "back").symlink_to(red)  # a loop: must be skipped, not walked forever
    (red / ".hidden").mkdir()
    Image.new("RGB", (32, 32)).save(red / ".hidden" / "img999.png")  # hidden folders stay unread
    with pytest.warns(UserWarning) as warned:
        data = load_dataset("folder", nested, progress=False)
    messages = " | ".join(str(w.message) for w in warned)
    assert "skipped 1 file(s) that are not of the image types read here" in messages and "notes.txt" in messages
    assert "skipped 1 symlinked folder(s) that lead to a folder already read" in messages and "back" in messages
    same = load_dataset("folder", flat, progress=False)
    assert torch.equal(data.train_images, same.train_images) and torch.equal(data.train_labels, same.train_labels)


def test_a_symlink_above_its_class_or_into_another_class_is_not_read_as_this_class(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=4)
    plain = load_dataset("folder", root, progress=False)
    red = root / "train" / "red"
    (red / "up").symlink_to(red.parent)  # train/red/up/blue/... would be blue's images labelled red
    (red / "sibling").symlink_to(root / "train" / "blue")
    with pytest.warns(UserWarning, match=r"skipped 2 symlinked folder\(s\) .*above their class or into another"):
        linked = load_dataset("folder", root, progress=False)
    assert torch.equal(linked.train_labels, plain.train_labels)


def test_one_decode_cache_per_folder_whatever_the_path_to_it(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CIFARKIT_CACHE", str(cache))
    root = write_folders(tmp_path / "imgs", per_class=4)
    load_dataset("folder", root, progress=False)
    (tmp_path / "link").symlink_to(root)
    monkeypatch.setattr(folder, "_decode", lambda *a, **k: pytest.fail("decoded again for another path"))
    for same in (tmp_path / "link", Path(os.path.relpath(root))):
        load_dataset("folder", same, progress=False)
    assert len(list((cache / "cifarkit-folders").glob("*-32px-*.pt"))) == 1


def test_the_decode_cache_removes_only_its_own_stale_files_in_a_shared_cache_folder(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv("CIFARKIT_CACHE", str(shared))
    root = write_folders(tmp_path / "imgs", per_class=4)
    load_dataset("folder", root, progress=False)
    (ours,) = (shared / "cifarkit-folders").glob("*.pt")
    prefix = ours.name[: ours.name.index("px-") + 3]
    # others' files in the shared folder, named as the cache names its files (a hash, this folder's prefix)
    theirs = [
        shared / ("0123456789abcdef" * 2 + ".pt"),
        shared / f"{prefix}{'f' * 32}.pt",
        shared / "cifarkit-folders" / "notes.pt",
        shared / "cifarkit-folders" / f"{prefix}draft.pt",
    ]
    for path in theirs:
        path.write_bytes(b"someone else's file")
    real_unlink = Path.unlink

    def busy(path, *args, **kwargs):  # a stale file that cannot be removed (another user's) does not fail the run
        if path in theirs:
            raise AssertionError(f"removed {path}, a file the cache did not write")
        raise PermissionError(13, "Permission denied", str(path))

    save_image(root / "train" / "red" / "img000.png", "RGB", (99, 99))  # the folder changed: another key
    os.utime(root / "train" / "red" / "img000.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    monkeypatch.setattr(Path, "unlink", busy)
    load_dataset("folder", root, progress=False)
    assert ours.exists()  # could not be removed: left there
    monkeypatch.setattr(Path, "unlink", real_unlink)
    os.utime(root / "train" / "red" / "img000.png", ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    load_dataset("folder", root, progress=False)
    assert not ours.exists() and all(path.read_bytes() == b"someone else's file" for path in theirs)
    assert len(list((shared / "cifarkit-folders").glob(f"{prefix}*.pt"))) == 2  # the new decode, and their draft


def test_a_class_folder_that_is_a_link_to_another_class_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=4)
    for split in ("train", "test"):
        (root / split / "crimson").symlink_to(root / split / "red")
    with pytest.raises(
        UserError,
        match=r"train: the class folders 'crimson' and 'red' are one folder, .*train/red "
        r"\('crimson' is a symlink to it\): two classes would train on the same",
    ):
        load_dataset("folder", root, progress=False)
    for split in ("train", "test"):  # two links to one folder outside: the same refusal, both named
        (root / split / "crimson").unlink()
        (root / split / "red").rename(root / f"{split}-red")
        for name in ("a", "red"):
            (root / split / name).symlink_to(root / f"{split}-red")
    with pytest.raises(UserError, match=r"'a' and 'red' are one folder, .*train-red \('a' and 'red' are symlinks"):
        load_dataset("folder", root, progress=False)


def test_a_val_folder_beside_a_test_folder_is_named_as_unread(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=4)
    write_folders(tmp_path / "other", per_class=4, test_name="val")
    (tmp_path / "other" / "val").rename(root / "val")
    with pytest.warns(UserWarning, match=r"val/ is not read when test/ is there.*--val-split N holds"):
        data = load_dataset("folder", root, progress=False)
    assert len(data.test_labels) == 4


def test_read_image_names_a_folder_and_an_unreadable_file(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="a folder, not an image file; pass the image files in it"):
        folder.read_image(tmp_path)

    def denied(path, *args, **kwargs):  # the tests run as root too, where chmod 000 still reads
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(UserError, match=r"secret.png: cannot be read \(permission denied\)"):
        folder.read_image(tmp_path / "secret.png")


def test_names_that_are_not_utf8_load_as_files_and_are_refused_as_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=4)
    train = os.fsencode(root / "train")
    os.rename(train + b"/red/img000.png", train + b"/red/\xe9t\xe9.png")
    assert len(load_dataset("folder", root, progress=False).train_labels) == 8
    for split in ("train", "test"):
        (root / split / "blue").rename(root / split / os.fsdecode(b"bl\xe9u"))
    with pytest.raises(UserError, match=r"class folder name 'bl\\udce9u' is not valid UTF-8; rename it"):
        load_dataset("folder", root, progress=False)


def test_what_needs_only_the_test_set_does_not_decode_train(tmp_path, monkeypatch):
    """evaluate, GradCAM and the app on a machine without the decode cache: test/ is decoded, train/ only listed."""
    cache = tmp_path / "cache"
    root = write_folders(tmp_path / "imgs")
    decoded = []
    real_decode = folder._decode
    monkeypatch.setattr(folder, "_decode", lambda files, *a: decoded.append(len(files)) or real_decode(files, *a))
    data = folder.load_folder(root, image_size=16, progress=False, cache_dir=cache, test_only=True)
    assert decoded == [12] and not list(cache.rglob("*.pt"))  # no cache without the training images
    assert data.classes == ("blue", "red") and data.train_images.shape == (0, 3, 16, 16) and data.image_size == 16
    whole = folder.load_folder(root, image_size=16, progress=False, cache_dir=cache)
    assert torch.equal(whole.test_images, data.test_images) and torch.equal(whole.test_labels, data.test_labels)
    decoded.clear()
    cached = folder.load_folder(root, image_size=16, progress=False, cache_dir=cache, test_only=True)
    assert decoded == [] and len(cached.train_labels) == 24  # a cache there is read whole


def test_a_class_named_in_decomposed_unicode_on_one_side_is_the_same_class(tmp_path, monkeypatch):
    """A train/ copied from a Mac (NFD names) beside a test/ made on Linux (NFC): one class, named in NFC, in
    train/'s order, though "e" + U+0301 sorts before "f" and U+00E9 after it."""
    import unicodedata

    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=4)
    composed, decomposed = (unicodedata.normalize(form, "é") for form in ("NFC", "NFD"))
    assert composed != decomposed and sorted([composed, "f"]) != sorted([decomposed, "f"])
    for split, name in (("train", decomposed), ("test", composed)):
        (root / split / "blue").rename(root / split / name)
        (root / split / "red").rename(root / split / "f")
    data = load_dataset("folder", root, progress=False)
    assert data.classes == (composed, "f")
    blue = data.test_images[data.test_labels == 0].float().mean((0, 2, 3))
    assert blue[2] > 150 and blue[0] < 100  # test/é's blue images are class 0, as train/'s
    (root / "test" / "f").rename(root / "test" / decomposed)  # one name twice in one split: ambiguous
    with pytest.raises(UserError, match=r"test: the class folders .* are one name written in two Unicode forms"):
        load_dataset("folder", root, progress=False)


def test_a_thin_image_is_cropped_before_it_is_resized(tmp_path, monkeypatch):
    thin = tmp_path / "thin.png"
    Image.new("RGB", (1, 200_000), (0, 200, 0)).save(thin)  # < 1 KB on disk, 1.5 GB upscaled whole
    sizes, resize = [], Image.Image.resize

    def recording(image, size, *args, **kwargs):
        sizes.append(size)
        return resize(image, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recording)
    pixels = folder.read_image(thin, 32)
    assert max(w * h for w, h in sizes) <= 32 * 32 and pixels.shape == (3, 32, 32)
    assert pixels[:, 0, 0].tolist() == [0, 200, 0] and (pixels == pixels[:, :1, :1]).all()


@pytest.mark.parametrize(
    "width, height, size", [(48, 64, 32), (64, 48, 24), (33, 32, 32), (1000, 700, 64), (20, 50, 40)]
)
def test_an_image_decodes_as_its_shorter_side_resized_then_the_centre_cropped(tmp_path, width, height, size):
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    scale = size / min(width, height)
    resized = Image.open(path).resize((round(width * scale), round(height * scale)), Image.Resampling.LANCZOS)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    expected = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.int16)
    got = folder.read_image(path, size).permute(1, 2, 0).numpy().astype(np.int16)
    assert np.abs(got - expected).max() <= 1  # the same geometry; Pillow's fixed-point rounding may differ by one


def save_grey16(path, value):
    """A 40x40 16-bit grey image: PNG from a uint16 array (Pillow mode "I;16"), or a PGM written byte by byte
    (Pillow mode "I", as old Pillows gave 16-bit PNGs)."""
    if path.suffix == ".png":
        Image.fromarray(np.full((40, 40), value, dtype=np.uint16)).save(path)
    else:
        path.write_bytes(b"P5 40 40 65535\n" + np.full((40, 40), value, dtype=">u2").tobytes())


@pytest.mark.parametrize("suffix, mode", [(".png", "I;16"), (".pgm", "I")])
def test_a_brighter_16_bit_image_never_reads_darker(tmp_path, suffix, mode):
    values = [0, 100, 200, 255, 256, 300, 1000, 32768, 65535]
    means = []
    for value in values:
        save_grey16(tmp_path / f"{value}{suffix}", value)
        assert Image.open(tmp_path / f"{value}{suffix}").mode in (mode, "I")  # older Pillows: "I" for 16-bit PNGs
        means.append(folder.read_image(tmp_path / f"{value}{suffix}", 16).float().mean().item())
    assert means == sorted(means), dict(zip(values, means))  # 300 read as 1 and 200 as 200 before
    assert (means[0], means[-2], means[-1]) == (0, 128, 255)  # over 65535, whatever the image's own maximum


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "cifar10", "--labels", "coarse"], "--labels 'coarse': coarse labels exist for CIFAR-100 only"),
        (["--dataset", "folder", "--image-size", "0"], "--image-size 0: must be a whole number of pixels"),
        (["--image-size", "64"], "--image-size 64: CIFAR images are 32x32"),
        (["--val-split", "-3"], "--val-split -3"),
    ],
)
def test_bad_dataset_flags_are_refused(tmp_path, capsys, argv, message):
    assert main(["train", "--data-dir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_validation_split_is_stratified_fixed_by_the_seed_and_apart_from_train(tiny_py):
    data = load_dataset("cifar10", tiny_py, download=False)
    a, b, c = data.split_validation(50, 0), data.split_validation(50, 0), data.split_validation(50, 1)
    assert torch.equal(a.val_images, b.val_images) and not torch.equal(a.val_images, c.val_images)
    assert len(a.val_labels) == 50 and len(a.train_labels) == 150
    assert torch.bincount(a.val_labels, minlength=10).tolist() == [5] * 10  # 20 per class -> 5 each
    train_rows = {bytes(x.numpy()) for x in a.train_images}
    assert not any(bytes(x.numpy()) in train_rows for x in a.val_images)
    with pytest.raises(UserError, match="--val-split 200: the training set has only 200 images"):
        data.split_validation(200, 0)


def test_a_limit_above_the_datas_size_is_said_not_silently_ignored(tiny_py):
    from cifarkit.config.train_config import TrainConfig
    from cifarkit.data.cifar import load_cifar10
    from cifarkit.data.loading import run_view

    data = load_cifar10(tiny_py, download=False)
    with pytest.warns(UserWarning, match=r"--limit-train 1000: the data has only 200 images; using all 200"):
        shaped = run_view(data, TrainConfig(limit_train=1000, limit_test=50))
    assert len(shaped.train_labels) == 200 and len(shaped.test_labels) == 50


def test_a_run_with_a_validation_split_tests_only_at_the_end(tiny_py, tmp_path):
    config = TrainConfig(
        model="s10-small",
        epochs=3,
        batch_size=50,
        max_lr=5e-3,
        data_dir=str(tiny_py),
        threads=1,
        precision="fp32",
        val_split=40,
    )
    results = train(config, tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:6] == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert all(r["val_acc"] != "nan" for r in rows) and [r["test_acc"] for r in rows[:-1]] == ["nan", "nan"]
    assert (
        results["n_val"] == 40 and results["n_train"] == 160 and results["val_accuracy"] == float(rows[-1]["val_acc"])
    )
    assert results["test_accuracy"] == float(rows[-1]["test_acc"]) > 0.5
    assert "val_accuracy" in (tmp_path / "run" / "report.html").read_text()


def test_channel_stats_are_exact_and_travel_in_the_checkpoint(tiny_py, tmp_path):
    data = load_dataset("cifar10", tiny_py, download=False)
    mean, std = data.channel_stats()
    pixels = data.train_images.double().numpy() / 255
    assert np.allclose(mean, pixels.mean((0, 2, 3)), atol=1e-12) and np.allclose(std, pixels.std((0, 2, 3)), atol=1e-9)
    config = TrainConfig(
        model="s10-small", epochs=1, batch_size=100, max_lr=5e-3, data_dir=str(tiny_py), threads=1, precision="fp32"
    )
    train(config, tmp_path / "run", progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert np.allclose(ckpt["mean"], mean) and ckpt["image_size"] == 32 and ckpt["dataset"] == "cifar10"


@pytest.mark.realdata
def test_cifar10_statistics_computed_from_its_training_images_are_the_known_ones(real_data_dir):
    mean, std = load_dataset("cifar10", real_data_dir, download=False).channel_stats()
    assert np.allclose(mean, MEAN, atol=1e-4) and np.allclose(std, STD, atol=1e-4), (mean, std)


def test_a_folder_dataset_at_another_size_trains_evaluates_and_predicts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=16)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "folder",
                "--data-dir",
                str(root),
                "--image-size",
                "40",
                "--model",
                "s10-small",
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--max-lr",
                "5e-3",
                "--threads",
                "1",
                "--precision",
                "fp32",
                "--out",
                str(run),
                "--quiet",
            ]
        )
        == 0
    )
    results = json.loads((run / "results.json").read_text())
    assert (results["dataset"], results["classes"], results["image_size"]) == ("folder", 2, 40)
    assert main(["evaluate", str(run), "--out", str(tmp_path / "eval.json")]) == 0
    assert set(json.loads((tmp_path / "eval.json").read_text())["per_class_accuracy"]) == {"blue", "red"}
    image = root / "test" / "red" / "img001.jpg"
    capsys.readouterr()
    assert main(["predict", str(run), str(image), "--json"]) == 0  # the default 3 is every class of two
    assert {t["class"] for t in json.loads(capsys.readouterr().out)[0]["top"]} == {"blue", "red"}
    monkeypatch.delenv("CIFARKIT_DATA", raising=False)
    root.rename(tmp_path / "moved")  # the run's image folder is somewhere else now
    assert main(["evaluate", str(run), "--out", str(tmp_path / "eval.json")]) == 2
    assert (
        f"the run's image folder {root} is not here (moved, or a path relative to where it trained?); pass "
        "--data-dir" in capsys.readouterr().err
    )
    assert main(["evaluate", str(run), "--data-dir", str(tmp_path / "moved"), "--out", str(tmp_path / "e.json")]) == 0


def test_cli_data_describes_a_folder_and_cifar100(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = write_folders(tmp_path / "imgs", per_class=4, test_name="val")
    assert main(["data", "--dataset", "folder", "--data-dir", str(root), "--image-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "folder at" in out and "2 classes, 16x16 images" in out and "blue" in out
    write_cifar100(tmp_path / "c100")
    assert (
        main(
            [
                "data",
                "--dataset",
                "cifar100",
                "--labels",
                "coarse",
                "--data-dir",
                str(tmp_path / "c100"),
                "--no-download",
            ]
        )
        == 0
    )
    assert "cifar100 at" in capsys.readouterr().out
