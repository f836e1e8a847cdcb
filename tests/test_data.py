import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from cifarkit.cli.main import main
from cifarkit.config.train_config import TrainConfig
from cifarkit.data import cifar as data_mod
from cifarkit.data import dataset as dataset_mod
from cifarkit.data.cifar import download_and_extract, load_cifar10, safe_extract
from cifarkit.data.dataset import describe
from cifarkit.data.loading import load_run_data
from cifarkit.errors import UserError


def test_both_layouts_give_the_same_tensors(tiny_py, tiny_bin, tiny_arrays):
    py, bn = load_cifar10(tiny_py, download=False), load_cifar10(tiny_bin, download=False)
    (x, y), (tx, ty) = tiny_arrays
    for ds, layout in ((py, "py"), (bn, "bin")):
        assert ds.layout == layout
        assert ds.train_images.dtype == torch.uint8 and ds.train_images.shape == (200, 3, 32, 32)
        assert torch.equal(ds.train_images, torch.from_numpy(x))
        assert torch.equal(ds.train_labels, torch.from_numpy(y))
        assert torch.equal(ds.test_images, torch.from_numpy(tx))
        assert ds.classes[0] == "airplane"


def test_describe_counts_per_class_and_md5_status(tiny_bin):
    text = describe(load_cifar10(tiny_bin, download=False))
    assert "bin layout" in text
    assert "airplane" in text and "total" in text and "200" in text
    assert "MD5 differs from the official file" in text and "structure valid, used" in text


def test_the_batches_folder_itself_is_accepted(tiny_py):
    assert len(load_cifar10(tiny_py / "cifar-10-batches-py", download=False).train_labels) == 200


def test_missing_folder_without_download_names_it(tmp_path):
    with pytest.raises(UserError, match="no CIFAR-10 here.*cifarkit data"):
        load_cifar10(tmp_path / "nothing", download=False)


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_damaged_py_file_is_named(tiny_py, damage):
    path = tiny_py / "cifar-10-batches-py" / "data_batch_3"
    blob = path.read_bytes()
    path.write_bytes({"truncate": blob[: len(blob) // 2], "empty": b"", "garbage": os.urandom(500)}[damage])
    with pytest.raises(UserError, match="data_batch_3"):
        load_cifar10(tiny_py, download=False)


def test_truncated_bin_file_is_named(tiny_bin):
    path = tiny_bin / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="test_batch.bin.*whole number of 3073-byte records"):
        load_cifar10(tiny_bin, download=False)


def test_a_pickle_with_code_is_refused_and_never_runs(tiny_py, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tiny_py / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({"data": Evil(), "labels": []}))
    with pytest.raises(UserError, match="data_batch_1"):
        load_cifar10(tiny_py, download=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "layout, name, kind, message",
    [
        ("py", "data_batch_2", "fifo", "it is a FIFO \\(named pipe\\), not a file"),
        ("py", "batches.meta", "fifo", "it is a FIFO \\(named pipe\\), not a file"),
        ("bin", "test_batch.bin", "folder", "it is a folder, not a file"),
        ("bin", "data_batch_1.bin", "device", "it is a device, not a file"),
        ("bin", "batches.meta.txt", "device", "it is a device, not a file"),
    ],
)
def test_a_batch_that_is_a_fifo_a_folder_or_a_device_is_named_never_waited_on(
    layout, name, kind, message, tiny_py, tiny_bin
):
    root = tiny_py if layout == "py" else tiny_bin
    path = root / f"cifar-10-batches-{layout}" / name
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)  # a plain read waits for a writer for ever
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")  # a plain read never ends
    with pytest.raises(UserError, match=f"{name}: cannot be read as a CIFAR-10 (batch|meta file): {message}"):
        load_cifar10(root, download=False)


def test_wrong_labels_are_refused(tiny_bin):
    path = tiny_bin / "cifar-10-batches-bin" / "data_batch_1.bin"
    raw = bytearray(path.read_bytes())
    raw[0] = 42
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="labels must lie in 0..9"):
        load_cifar10(tiny_bin, download=False)


def _archive_of(folder: Path, out: Path) -> str:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return hashlib.md5(out.read_bytes()).hexdigest()


def test_download_checks_md5_then_extracts(tiny_py, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = _archive_of(tiny_py / "cifar-10-batches-py", archive)
    target = tmp_path / "fresh"
    download_and_extract(target, url=archive.as_uri(), md5=md5)
    assert len(load_cifar10(target, download=False).train_labels) == 200


def test_download_with_wrong_md5_is_deleted_and_refused(tiny_py, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    _archive_of(tiny_py / "cifar-10-batches-py", archive)
    target = tmp_path / "fresh"
    with pytest.raises(UserError, match="does not match the official"):
        download_and_extract(target, url=archive.as_uri(), md5="0" * 32)
    assert not (target / archive.name).exists()
    assert not any(target.glob("*.tmp")) and not any(target.glob(".*.tmp"))


def test_load_downloads_when_absent(tiny_py, tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = _archive_of(tiny_py / "cifar-10-batches-py", archive)
    monkeypatch.setattr(data_mod, "ARCHIVE_URL", archive.as_uri())
    monkeypatch.setattr(data_mod, "ARCHIVE_MD5", md5)
    monkeypatch.setattr(data_mod.download_and_extract, "__defaults__", (archive.as_uri(), md5))
    ds = load_cifar10(tmp_path / "cache")
    assert ds.layout == "py" and len(ds.test_labels) == 100


def test_unreachable_download_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="downloading it from .*absent.tar.gz failed"):
        download_and_extract(tmp_path / "d", url=(tmp_path / "absent.tar.gz").as_uri(), md5="0" * 32)
    assert not (tmp_path / "d").exists()


def no_network(monkeypatch):
    """The downloader as on a machine without a network: the name of the host cannot be resolved."""

    def unreachable(url, timeout=None):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)


def test_without_a_network_the_error_says_once_what_to_copy_and_where_and_leaves_no_folder(
    tmp_path, monkeypatch, capsys
):
    no_network(monkeypatch)
    typo = tmp_path / "dats" / "cifar"
    assert main(["data", "--data-dir", str(typo)]) == 2
    err = capsys.readouterr().err
    for said in (
        "no CIFAR-10 in",
        str(typo),
        "Temporary failure in name resolution",
        "cifar-10-python.tar.gz",
        "cifar-10-binary.tar.gz",
        "cifar-10-batches-py",
        "cifar-10-batches-bin",
        "--data-dir DIR",
        "CIFARKIT_DATA",
        "docs/getting-started.md#offline",
    ):
        assert said in err, said
    assert err.count("--data-dir") == 1 and "~/.cache" not in err and "Traceback" not in err
    assert not (tmp_path / "dats").exists()  # the mistyped folder and its missing parent were not left behind
    monkeypatch.setenv("CIFARKIT_DATA", str(tmp_path / "env-typo"))
    with pytest.raises(UserError, match="no CIFAR-10 in .*env-typo"):
        load_cifar10()
    config = TrainConfig(data_dir=str(tmp_path / "someone" / "elses" / "data"))  # as read from their config.json
    with pytest.raises(UserError, match="CIFARKIT_DATA"):
        load_run_data(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_download_cut_off_midway_leaves_no_partial_archive_and_no_folder(tmp_path, monkeypatch):
    class CutOff(io.BytesIO):
        headers = {"Content-Length": str(10 << 20)}

        def read(self, size=-1):
            if self.tell() >= 1 << 20:
                raise TimeoutError("The read operation timed out")
            return super().read(size)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: CutOff(b"x" * (2 << 20)))
    with pytest.raises(UserError, match="The read operation timed out.*without a network"):
        load_cifar10(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # a folder that was there before stays, empty as it was
    with pytest.raises(UserError, match="timed out"):
        load_cifar10(tmp_path / "mine")
    assert list((tmp_path / "mine").iterdir()) == []


@pytest.mark.parametrize("layout", ["py", "bin"])
def test_an_official_archive_copied_into_the_data_folder_is_unpacked_without_a_network(
    layout, tiny_py, tiny_bin, tmp_path, monkeypatch
):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("went to the network"))
    source, name = {
        "py": (tiny_py / "cifar-10-batches-py", "cifar-10-python.tar.gz"),
        "bin": (tiny_bin / "cifar-10-batches-bin", "cifar-10-binary.tar.gz"),
    }[layout]
    (tmp_path / "copied").mkdir()
    _archive_of(source, tmp_path / "copied" / name)
    for download in (True, False):
        data = load_cifar10(tmp_path / "copied", download=download)
        assert data.layout == layout and len(data.train_labels) == 200


@pytest.mark.parametrize(
    "link, problem",
    [
        ("broken", r"a symlink to .*gone/cifar-10-batches-py, which does not exist"),
        ("loop", r"a symlink loop \(it leads back to itself through .*data/other\)"),
        ("file", r"a file, not the folder of that name the archive unpacks to"),
    ],
)
def test_a_batches_folder_name_taken_by_a_bad_link_or_a_file_is_named_not_downloaded_beside(
    tmp_path, monkeypatch, capsys, link, problem
):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("went to the network"))
    root = tmp_path / "data"
    root.mkdir()
    if link == "broken":
        (root / "cifar-10-batches-py").symlink_to(tmp_path / "gone" / "cifar-10-batches-py")
    elif link == "file":
        (root / "cifar-10-batches-py").write_bytes(b"not a folder")
    else:
        (root / "cifar-10-batches-py").symlink_to(root / "other")
        (root / "other").symlink_to(root / "cifar-10-batches-py")
    for download in (True, False):
        with pytest.raises(UserError, match=f"data/cifar-10-batches-py: {problem}; "):
            load_cifar10(root, download=download)
    assert main(["data", "--data-dir", str(root)]) == 2
    said = {"broken": "a symlink to", "loop": "a symlink loop", "file": "a file, not the folder"}[link]
    assert f"cifar-10-batches-py: {said}" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == sorted(["cifar-10-batches-py"] + ["other"] * (link == "loop"))


@pytest.mark.parametrize("layout", ["py", "bin"])
def test_a_meta_file_naming_a_class_twice_is_refused_by_the_names(layout, tiny_py, tiny_bin):
    if layout == "py":
        root, meta = tiny_py, tiny_py / "cifar-10-batches-py" / "batches.meta"
        meta.write_bytes(pickle.dumps({"label_names": ["cat"] * 10, "num_cases_per_batch": 10000}))
        message = "batches.meta: the class names repeat: 'cat' \\(10 times\\)"
    else:
        root, meta = tiny_bin, tiny_bin / "cifar-10-batches-bin" / "batches.meta.txt"
        # one name twice, and one name in Unicode's composed and decomposed forms (a Mac's): the same class
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "dog", "Caf\u00e9", "Cafe\u0301"]
        meta.write_text("\n".join(names) + "\n", encoding="utf-8")
        message = "the class names repeat: 'dog' \\(2 times\\), 'Caf\u00e9' \\(2 times\\)"
    with pytest.raises(UserError, match=message):
        load_cifar10(root, download=False)


def test_archive_member_escaping_the_target_is_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        payload = b"gotcha"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(UserError, match="outside"):
        safe_extract(archive, target)
    assert not (tmp_path / "escaped.txt").exists()


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_DATA", str(tmp_path / "env"))
    assert dataset_mod.default_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert dataset_mod.default_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("CIFARKIT_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert dataset_mod.default_data_dir(None) == tmp_path / "cache" / "cifarkit"


def test_cli_data_prints_and_fails_cleanly(tiny_bin, tmp_path, capsys):
    assert main(["data", "--data-dir", str(tiny_bin)]) == 0
    assert "bin layout" in capsys.readouterr().out
    assert main(["data", "--data-dir", str(tmp_path / "none"), "--no-download"]) == 2
    assert "no CIFAR-10 here" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--image-size", "64"], "--image-size 64: CIFAR images are 32x32; --image-size is for --dataset folder"),
        (["--labels", "coarse"], "--labels 'coarse': coarse labels exist for CIFAR-100 only"),
        (["--dataset", "folder", "--image-size", "0"], "--image-size 0: must be a whole number of pixels in [16, 512]"),
    ],
)
def test_cli_data_refuses_what_train_refuses(tiny_bin, capsys, flags, message):
    assert main(["data", "--data-dir", str(tiny_bin), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.realdata
def test_real_cifar10_loads_with_official_md5s(real_data_dir):
    ds = load_cifar10(real_data_dir / "cifar-10-batches-bin", download=False)
    assert ds.train_images.shape == (50000, 3, 32, 32) and ds.test_images.shape == (10000, 3, 32, 32)
    assert torch.bincount(ds.train_labels).tolist() == [5000] * 10
    assert all(status == "MD5 ok" for status in ds.checks.values())
    py = load_cifar10(real_data_dir / "cifar-10-batches-py", download=False)
    assert torch.equal(py.test_images, ds.test_images) and np.array_equal(py.train_labels, ds.train_labels)


def test_limit_and_to_return_new_datasets_and_leave_the_callers_alone(tiny_py, tmp_path):
    from cifarkit import TrainConfig, train

    data = load_cifar10(tiny_py, download=False)
    small = data.limit(50, 20)
    assert (len(small.train_labels), len(small.test_labels)) == (50, 20)
    assert (len(data.train_labels), len(data.test_labels)) == (200, 100)
    assert data.limit().train_images.shape == data.train_images.shape
    moved = data.to("cpu")
    assert moved is not data and moved.train_images.data_ptr() == data.train_images.data_ptr()  # shared, not copied
    config = TrainConfig(
        model="s10-small",
        epochs=1,
        batch_size=50,
        max_lr=5e-3,
        threads=1,
        precision="fp32",
        limit_train=100,
        limit_test=40,
    )
    train(config, tmp_path / "run", data=data, progress=False)
    assert (len(data.train_labels), len(data.test_labels)) == (200, 100)  # train() did not truncate ours


def test_a_channel_that_never_varies_is_named_rather_than_divided_by(tiny_py):
    data = load_cifar10(tiny_py, download=False)
    data.channel_stats()  # varied colours: fine
    data.train_images[:, 2] = 200  # a blue channel the same in every pixel
    with pytest.raises(UserError, match=r"the blue channel is the same in every pixel of the 200 training images"):
        data.channel_stats()


def _hand_made(**changes):
    """A valid hand-made Dataset (as a notebook user builds one), with `changes` applied."""
    images, labels = torch.zeros(20, 3, 8, 8, dtype=torch.uint8), torch.arange(20) % 4
    values = dict(
        train_images=images,
        train_labels=labels,
        test_images=images[:6],
        test_labels=labels[:6],
        classes=("a", "b", "c", "d"),
    )
    return dataset_mod.Dataset(**{**values, **changes})


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(train_images=torch.rand(20, 3, 8, 8)), r"data.train_images: torch.float32 .*\* 255"),
        (dict(train_images=torch.zeros(20, 8, 8, 3, dtype=torch.uint8)), r"\(20, 8, 8, 3\).*permute"),
        (dict(test_images=torch.zeros(6, 1, 8, 8, dtype=torch.uint8)), r"data.test_images: .*\(6, 1, 8, 8\).*expand"),
        (dict(test_images=torch.zeros(6, 3, 16, 16, dtype=torch.uint8)), "16x16 images, the training images are 8x8"),
        (dict(train_labels=(torch.arange(20) % 4).int()), r"data.train_labels: torch.int32 .*labels.long\(\)"),
        (
            dict(train_labels=torch.arange(18) % 4),
            r"data.train_labels: .*shape \(18,\); expected int64 of shape \(20,\)",
        ),
        (dict(test_labels=torch.tensor([0, 1, 2, 3, 4, 0])), "class indices 0 to 4, but data.classes names 4"),
        (dict(train_images=np.zeros((20, 3, 8, 8), np.uint8)), "must be torch tensors, not ndarray"),
        (dict(val_images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), "data.val_images, data.val_labels: .*NoneType"),
        (dict(classes=("only",)), "needs at least two"),
    ],
)
def test_a_hand_made_dataset_is_refused_by_name_before_training(changes, message):
    from cifarkit.data.loading import run_view

    config = TrainConfig(limit_train=10)
    assert len(run_view(_hand_made(), config).train_labels) == 10  # the valid one passes
    with pytest.raises(UserError, match=message):
        run_view(_hand_made(**changes), config)
    with pytest.raises(UserError, match="data: a cifarkit.data.dataset.Dataset .*not tuple"):
        run_view((_hand_made().train_images, _hand_made().train_labels), config)
