"""Faults: kills at any moment, failing writes, hostile checkpoints, wrong checkpoints."""

import csv
import errno
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from cifarkit.cli.main import main
from cifarkit.errors import UserError
from cifarkit.files import atomic as files
from cifarkit.rundir.checkpoint import load_checkpoint

TIMING = ("images_per_s", "seconds")


def train_argv(data_dir, out, *extra):
    return [
        "train",
        "--data-dir",
        str(data_dir),
        "--model",
        "s10-small",
        "--epochs",
        "3",
        "--batch-size",
        "50",
        "--max-lr",
        "5e-3",
        "--threads",
        "1",
        "--precision",
        "fp32",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def spawn(argv):
    return subprocess.Popen(
        [sys.executable, "-m", "cifarkit", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_checkpoint(run, proc, epoch, timeout=120):
    """Poll until the run's checkpoint is mid-way through `epoch` (0-based) or a later one: a poll that misses the
    epoch's few steps (a busy CPU: pytest-xdist's workers beside the run) still finds one to interrupt."""
    deadline = time.monotonic() + timeout
    path = run / "checkpoints" / "last.pt"
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
        if path.exists():
            state = load_checkpoint(path)["state"]
            if state["epoch"] >= epoch and state["step_in_epoch"] >= 1:
                return state
        time.sleep(0.01)
    raise AssertionError("no mid-epoch checkpoint appeared")


def metrics(run):
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def same_weights(a, b):
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture
def reference_run(tiny_py, tmp_path):
    run = tmp_path / "reference"
    done = subprocess.run([sys.executable, "-m", "cifarkit", *train_argv(tiny_py, run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return run


def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(tiny_py, tmp_path, reference_run):
    run = tmp_path / "killed"
    proc = spawn(train_argv(tiny_py, run, "--checkpoint-every", "1"))
    state = wait_for_checkpoint(run, proc, epoch=1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and state["step_in_epoch"] >= 1
    assert not (run / "results.json").exists()
    done = subprocess.run(
        [sys.executable, "-m", "cifarkit", "train", "--resume", str(run), "--quiet"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert same_weights(run, reference_run)
    assert metrics(run) == metrics(reference_run)


def test_sigint_checkpoints_and_says_how_to_resume(tiny_py, tmp_path, reference_run):
    run = tmp_path / "interrupted"
    proc = spawn(train_argv(tiny_py, run, "--checkpoint-every", "1"))
    wait_for_checkpoint(run, proc, epoch=0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "error" not in err  # stopped on request: not an error
    assert "stopped by SIGINT; checkpoint saved" in err and f"cifarkit train --resume {run}" in err
    assert f"train(None, {str(run)!r}, resume=True)" in err
    assert "Traceback" not in err
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert same_weights(run, reference_run) and metrics(run) == metrics(reference_run)


def test_a_write_failing_half_way_keeps_the_previous_checkpoint(tiny_py, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main(train_argv(tiny_py, run, "--epochs", "1")) == 0
    before = load_checkpoint(run)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.torch, "save", disk_full)
    assert main(train_argv(tiny_py, tmp_path / "run2", "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert "could not write the checkpoint (No space left on device)" in err and "--resume" in err
    after = load_checkpoint(run)  # the earlier run's checkpoint is still whole
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert not list((tmp_path / "run2").rglob("*.tmp"))


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "results.json"
    files.write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), files.atomic_open(path) as f:
        f.write(b'{"v": 2, "trunc')
        raise RuntimeError("killed")
    assert path.read_text().strip().startswith('{\n  "v": 1')
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(pickle.dumps({"format": 1, "model": Payload()}, protocol=2))
    with pytest.raises(UserError, match="refused or unreadable.*never executed"):
        load_checkpoint(run / "checkpoints" / "last.pt")
    (run / "config.json").write_text("{}")
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "never executed" in err and "weights_only" not in err  # torch's advice to load it unsafely is not passed on
    assert "unsupported GLOBAL posix.system" in err and "Please use" not in err  # its reason is
    assert not marker.exists()


def test_a_file_that_is_no_checkpoint_is_named_for_what_it_is(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "cat.png")
    (tmp_path / "config.json").write_text('{"epochs": 3}')
    (tmp_path / "model.safetensors").write_bytes((128).to_bytes(8, "little") + b'{"__metadata__":{}}'.ljust(128))
    for name, kind in [
        ("cat.png", "a PNG image"),
        ("config.json", "JSON or text"),
        ("model.safetensors", "a safetensors file"),
    ]:
        assert main(["predict", str(tmp_path / name), str(tmp_path / "cat.png")]) == 2  # e.g. arguments swapped
        err = capsys.readouterr().err
        assert f"{tmp_path / name}: not a checkpoint ({kind}" in err and "weights_only" not in err


def test_wrong_version_and_wrong_model_checkpoints_are_explained(tiny_py, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_argv(tiny_py, run, "--epochs", "1")) == 0
    ckpt = load_checkpoint(run)
    torch.save({**ckpt, "format": 99}, tmp_path / "future.pt")
    with pytest.raises(UserError, match="format 99, this cifarkit reads format 1"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a cifarkit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    config = (run / "config.json").read_text().replace('"s10-small"', '"s10"').replace('"epochs": 1', '"epochs": 2')
    (run / "config.json").write_text(config)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "config.json disagrees with the checkpoint" in err and "model 's10' (checkpoint: 's10-small')" in err
    assert "epochs 2 (checkpoint: 1)" in err
