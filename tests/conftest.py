"""Fixtures: a tiny, learnable CIFAR-10 written in both official layouts, and real data when available."""

from __future__ import annotations

import fcntl
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifarkit.data.dataset import CLASSES

REPO = Path(__file__).resolve().parents[1]
SHARED_GETTER = REPO.parent / "shared" / "data" / "get_cifar10.py"


def synthetic_cifar(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is a colour (one of 10 well-separated ones) under pixel noise.

    The cue survives crop, flip and cutout, so a few steps of training learn it.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per_class)
    rng.shuffle(labels)
    palette = np.array(
        [
            [0, 0, 0],
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [255, 255, 0],
            [255, 0, 255],
            [0, 255, 255],
            [255, 255, 255],
            [128, 128, 128],
            [255, 128, 0],
        ]
    )
    images = rng.normal(0, 25, size=(len(labels), 3, 32, 32)) + palette[labels][:, :, None, None] * 0.6 + 50
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)


def write_py_layout(root: Path, train: tuple, test: tuple) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    x, y = train
    chunks = np.array_split(np.arange(len(y)), 5)
    for i, idx in enumerate(chunks, start=1):
        batch = {
            "batch_label": f"training batch {i} of 5",
            "labels": y[idx].tolist(),
            "data": x[idx].reshape(len(idx), -1),
            "filenames": [f"img{j}.png" for j in idx],
        }
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    tx, ty = test
    (folder / "test_batch").write_bytes(
        pickle.dumps(
            {"batch_label": "testing batch 1 of 1", "labels": ty.tolist(), "data": tx.reshape(len(ty), -1)}, protocol=2
        )
    )
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CLASSES), "num_cases_per_batch": 10000}))
    return folder


def write_bin_layout(root: Path, train: tuple, test: tuple) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)

    def records(x, y):
        return np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(y), -1)], axis=1).tobytes()

    x, y = train
    for i, idx in enumerate(np.array_split(np.arange(len(y)), 5), start=1):
        (folder / f"data_batch_{i}.bin").write_bytes(records(x[idx], y[idx]))
    (folder / "test_batch.bin").write_bytes(records(*test))
    (folder / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_arrays():
    return synthetic_cifar(20, seed=1), synthetic_cifar(10, seed=2)  # 200 train, 100 test


@pytest.fixture
def tiny_py(tmp_path, tiny_arrays) -> Path:
    """A data dir holding cifar-10-batches-py with 200 train / 100 test images."""
    write_py_layout(tmp_path / "py", *tiny_arrays)
    return tmp_path / "py"


@pytest.fixture
def tiny_bin(tmp_path, tiny_arrays) -> Path:
    write_bin_layout(tmp_path / "bin", *tiny_arrays)
    return tmp_path / "bin"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real CIFAR-10: $CIFARKIT_TEST_DATA if set, else fetched by ../shared/data/get_cifar10.py."""
    if os.environ.get("CIFARKIT_TEST_DATA"):
        path = Path(os.environ["CIFARKIT_TEST_DATA"])
        if (path / "cifar-10-batches-bin").exists():
            return path
        pytest.skip(f"CIFARKIT_TEST_DATA={path} holds no cifar-10-batches-bin")
    if not SHARED_GETTER.exists():
        pytest.skip(f"real CIFAR-10 unavailable: {SHARED_GETTER} is absent and CIFARKIT_TEST_DATA is unset")
    target = Path.home() / ".cache" / "cifarkit-test-data"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / "cifarkit-test-data.lock", "w") as lock:  # pytest-xdist: one worker fetches at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run([sys.executable, str(SHARED_GETTER), str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"real CIFAR-10 unavailable: {SHARED_GETTER} failed: {done.stderr.strip()[-300:]}")
    return target


def write_bad_image(path: Path, content, monkeypatch) -> None:
    """At `path`: "truncated" (a PNG cut short), "huge" (over a lowered pixel limit), bytes as given, or nothing
    (None: a missing file)."""
    from PIL import Image

    from cifarkit.data import folder

    if content == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:200])
    elif content == "huge":
        Image.new("RGB", (400, 400)).save(path)
        monkeypatch.setattr(folder, "MAX_IMAGE_PIXELS", 100_000)
    elif content is not None:
        path.write_bytes(content)


@pytest.fixture
def crash_at_step(monkeypatch):
    """crash_at_step(n): the n-th call of Trainer.train_step from now raises RuntimeError("simulated crash");
    crash_at_step(None): steps run normally again."""
    from cifarkit.training.trainer import Trainer

    original = Trainer.train_step

    def arm(n: int | None) -> None:
        if n is None:
            monkeypatch.setattr(Trainer, "train_step", original)
            return
        calls = {"n": 0}

        def crashing(self, *args):
            calls["n"] += 1
            if calls["n"] == n:
                raise RuntimeError("simulated crash")
            return original(self, *args)

        monkeypatch.setattr(Trainer, "train_step", crashing)

    return arm


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_arrays):
    """(root, results): a finished s10-small run on the tiny data in root/data, its folder root/run."""
    from cifarkit import TrainConfig, train

    root = tmp_path_factory.mktemp("trained")
    write_py_layout(root / "data", *tiny_arrays)
    config = TrainConfig(
        model="s10-small",
        epochs=3,
        batch_size=50,
        max_lr=5e-3,
        data_dir=str(root / "data"),
        threads=1,
        precision="fp32",
    )
    return root, train(config, root / "run", progress=False)
