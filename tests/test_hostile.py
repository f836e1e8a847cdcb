"""Hostile and careless input: outputs onto inputs, two writers, damaged and foreign files, values out of range,
images that are not what they claim, data that moved or changed, and the command line's own slips.

Every case ends in a clear message (exit 2, no traceback) or in the right result; nothing is lost.
"""

import json
import pickle
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cifarkit import TrainConfig, train
from cifarkit.cli.main import main
from cifarkit.data.dataset import CLASSES
from cifarkit.errors import UserError
from cifarkit.files import atomic as files
from cifarkit.models.nets import build_model
from cifarkit.rundir.checkpoint import load_checkpoint
from cifarkit.rundir.run_dir import RunDir

TINY = [
    "--model",
    "s10-small",
    "--epochs",
    "1",
    "--batch-size",
    "100",
    "--max-lr",
    "5e-3",
    "--threads",
    "1",
    "--precision",
    "fp32",
    "--quiet",
]


def tiny_run(tiny_py, run, *extra):
    assert main(["train", "--data-dir", str(tiny_py), *TINY, "--out", str(run), *extra]) == 0
    return run


def refused(capsys, argv, *needles):
    """Runs the CLI; asserts exit 2, every needle in stderr and no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# -- an output onto an input ---------------------------------------------------------------------------------


def test_evaluate_never_writes_onto_the_checkpoint_it_reads(tiny_py, tmp_path, capsys):
    run = tiny_run(tiny_py, tmp_path / "run")
    before = (run / "checkpoints" / "last.pt").read_bytes()
    refused(capsys, ["evaluate", str(run), "--out", str(run / "checkpoints" / "last.pt")], "that is the input")
    refused(capsys, ["evaluate", str(run), "--out", str(run / "results.json")], "a file of the run in")
    refused(capsys, ["export", str(run), "--onnx", str(run / "checkpoints" / "last.pt")], "that is the input")
    refused(capsys, ["export", str(run), "--onnx", str(run / "metrics.csv")], "a file of the run in")
    refused(capsys, ["evaluate", str(run), "--out", str(run / ".cifarkit.lock")], "a file of the run in")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    # the range test writes lr_find.json/.png: never over a training run's own
    refused(
        capsys,
        ["lr-find", "--data-dir", str(tiny_py), "--model", "s10-small", "--out", str(run)],
        f"--out {run}: holds a training run",
    )


# -- two writers of one run folder; unique default names; the real folder printed -------------------------------


def test_a_locked_run_folder_is_refused_and_default_names_are_unique(tiny_py, tmp_path, capsys, monkeypatch):
    held = RunDir(tmp_path / "run").lock()  # another process's lock: a different open file description
    refused(
        capsys,
        ["train", "--data-dir", str(tiny_py), *TINY, "--out", str(tmp_path / "run")],
        "another cifarkit process",
        "is writing this run folder",
    )
    (tmp_path / "run" / "config.json").write_text("{}")  # started, before its first checkpoint
    refused(capsys, ["train", "--resume", str(tmp_path / "run")], "another cifarkit process")  # not "start again"
    # under torchrun only rank 0 looks at the lock: the other ranks, never taking it, cannot mistake each other
    # for "another process"
    from cifarkit.training.run_folder import reopen

    with pytest.raises(UserError, match="no checkpoint yet"):
        reopen(tmp_path / "run", TrainConfig(), writes=False)
    assert held._lock is not None
    monkeypatch.chdir(tmp_path)
    from cifarkit.training.run_folder import new_run_dir

    names = {new_run_dir(TrainConfig()) for _ in range(3)}  # within one second
    assert len(names) == 3 and all(p.is_dir() for p in names)
    assert main(["train", "--data-dir", str(tiny_py), *TINY]) == 0
    printed = capsys.readouterr().out.strip().split("-> ")[-1]
    assert printed.startswith("runs/s10-") and (tmp_path / printed / "results.json").exists()


# -- an interrupted ending is finished by --resume -------------------------------------------------------------


def test_resume_finishes_a_missing_ending(tiny_py, tmp_path, capsys):
    run = tiny_run(tiny_py, tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    for name in ("results.json", "model.txt", "report.html", "plots/confusion.png"):
        (run / name).unlink()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "results.json").read_text())["test_accuracy"] == results["test_accuracy"]
    assert (run / "model.txt").exists() and (run / "plots" / "confusion.png").exists()
    refused(capsys, ["train", "--resume", str(run)], "already finished")


# -- --overwrite clears every file a run folder may hold ----------------------------------------------------------


def test_overwrite_clears_the_old_evaluations(tiny_py, tmp_path):
    run = tiny_run(tiny_py, tmp_path / "run")
    assert main(["evaluate", str(run)]) == 0
    assert (run / "evaluate-none.json").exists()
    tiny_run(tiny_py, run, "--overwrite")
    assert not (run / "evaluate-none.json").exists()


# -- a checkpoint's data_dir is a hint, never created ----------------------------------------------------------


def test_evaluate_takes_cifarkit_data_and_never_creates_the_checkpoints_path(tiny_py, tmp_path, monkeypatch):
    run = tiny_run(tiny_py, tmp_path / "run")
    ckpt = load_checkpoint(run)
    elsewhere = tmp_path / "other-machine" / "data"
    ckpt["config"]["data_dir"] = str(elsewhere)
    torch.save(ckpt, tmp_path / "moved.pt")
    monkeypatch.setenv("CIFARKIT_DATA", str(tiny_py))
    assert main(["evaluate", str(tmp_path / "moved.pt"), "--out", str(tmp_path / "e.json")]) == 0
    assert not (tmp_path / "other-machine").exists()


def test_a_runs_own_data_comes_before_cifarkit_data(tiny_py, tmp_path, monkeypatch):
    from conftest import synthetic_cifar, write_py_layout

    run = tiny_run(tiny_py, tmp_path / "run")  # trained on tiny_py: 100 test images
    write_py_layout(tmp_path / "other", synthetic_cifar(20, 1), synthetic_cifar(3, 2))  # 30 test images
    monkeypatch.setenv("CIFARKIT_DATA", str(tmp_path / "other"))  # a general default, not the run's data
    assert main(["evaluate", str(run), "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["n_test"] == 100
    assert main(["evaluate", str(run), "--data-dir", str(tmp_path / "other"), "--out", str(tmp_path / "f.json")]) == 0
    assert json.loads((tmp_path / "f.json").read_text())["n_test"] == 30  # the flag names other data: it is read


def test_a_mistyped_data_dir_or_a_forgotten_dataset_flag_never_starts_a_download(
    tiny_py, tmp_path, monkeypatch, capsys
):
    from cifarkit.data import download

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloading"))
    run = tiny_run(tiny_py, tmp_path / "run")
    refused(
        capsys,
        ["evaluate", str(run), "--data-dir", str(tmp_path / "typo")],
        f"--data-dir {tmp_path / 'typo'}: no such folder",
    )
    assert not (tmp_path / "typo").exists()
    images = tmp_path / "images"
    (images / "train" / "cat").mkdir(parents=True)  # an image folder, and --dataset folder left out
    refused(
        capsys,
        ["train", "--data-dir", str(images), "--out", str(tmp_path / "r")],
        f"--data-dir {images}: holds train/ (an image folder dataset), not cifar-10-python.tar.gz's CIFAR; pass "
        "--dataset folder",
    )
    assert sorted(p.name for p in images.iterdir()) == ["train"]


# -- report.html escapes what it reads and stays inside the run folder -------------------------------------------


def test_report_escapes_and_never_follows_a_symlink_out(tiny_py, tmp_path):
    run = tiny_run(tiny_py, tmp_path / "run")
    lines = (run / "metrics.csv").read_text().splitlines()  # a column someone added, named to attack the page
    (run / "metrics.csv").write_text(
        "\n".join([lines[0] + ",<img src=x onerror=alert(1)>"] + [line + ",1" for line in lines[1:]]) + "\n"
    )
    (tmp_path / "secret.txt").write_text("SECRET-OUTSIDE")
    (run / "model.txt").unlink()
    (run / "model.txt").symlink_to(tmp_path / "secret.txt")
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert "SECRET-OUTSIDE" not in page


# -- every failed write is one clear message ----------------------------------------------------------------------


def test_write_errors_are_named(tiny_py, tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("x")
    refused(
        capsys, ["train", "--data-dir", str(tiny_py), *TINY, "--out", str(tmp_path / "afile")], "a file is in the way"
    )
    refused(
        capsys,
        ["train", "--data-dir", str(tiny_py), *TINY, "--out", str(tmp_path / "afile" / "run")],
        "cannot create the run folder",
    )
    run = tiny_run(tiny_py, tmp_path / "run")
    refused(capsys, ["evaluate", str(run), "--out", str(tmp_path)], "could not write it (it is a folder)")
    long_name = tmp_path / ("e" * 245 + ".json")  # legal: 250 bytes; the temporary name must not overflow
    assert main(["evaluate", str(run), "--out", str(long_name)]) == 0 and long_name.exists()
    refused(capsys, ["data", "--data-dir", str(tmp_path / "afile")], "a file, not a folder")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    refused(capsys, ["data", "--data-dir", str(tmp_path / "loop")], "symlink loop")

    def torch_full(obj, f, *args, **kwargs):  # torch's writer reports a full disk as a RuntimeError
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(files.torch, "save", torch_full)
    refused(
        capsys,
        ["train", "--data-dir", str(tiny_py), *TINY, "--out", str(tmp_path / "full")],
        "could not write the checkpoint (",
        "--resume",
    )
    assert not list((tmp_path / "full").rglob("*.tmp"))


# -- config files: every value checked for type and range once, naming the file and field --------------------------


@pytest.mark.parametrize(
    "content, needle",
    [
        ("[1, 2]", "expected an object of settings"),
        ("null", "expected an object of settings"),
        ("42", "expected an object of settings"),
        (b"\xff\xfe{", "not a config file: not UTF-8 text"),
        ('{"data_dir": 5}', "setting 'data_dir' must be a string, not 5"),
        ('{"nesterov": "false"}', "setting 'nesterov' must be true or false"),
        ('{"epochs": true}', "setting 'epochs' must be a whole number, not true"),
        ('{"flip": "no"}', "setting 'flip' must be true or false"),
        ('{"base_momentum": 5, "max_momentum": -3}', "--base-momentum 5: must be in [0, 1)"),
    ],
)
def test_bad_config_files_are_named(tmp_path, capsys, content, needle):
    path = tmp_path / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    refused(capsys, ["train", "--config", str(path), "--data-dir", str(tmp_path)], needle)


def test_a_folder_as_config_file_is_named(tmp_path, capsys):
    refused(capsys, ["train", "--config", str(tmp_path), "--data-dir", str(tmp_path)], "cannot be read as a config")


# -- checkpoints that load but are not cifarkit's -------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("no-model-name", "model_name None"),
        ("config-list", "its config is not a set of settings"),
        ("other-weights", "its weights do not fit model 's10-small' with 10 classes (Missing key(s)"),
        ("wrong-shape", "its weights do not fit model 's10-small' with 10 classes (size mismatch for prep.0.weight"),
        ("no-classes", "its class names are missing"),
        ("image-size-text", "its image size 'abc' is not a whole number of pixels"),
        ("nan-weights", "its weights hold NaN or infinite values (prep.0.weight)"),
    ],
)
def test_malformed_checkpoints_are_named(trained_run, tmp_path, capsys, damage, needle):
    root, _ = trained_run
    ckpt = load_checkpoint(root / "run")
    if damage == "no-model-name":
        del ckpt["model_name"]
    elif damage == "config-list":
        ckpt["config"] = [1, 2]
    elif damage == "other-weights":
        ckpt["model"] = {"fc.weight": torch.zeros(3, 3)}
    elif damage == "wrong-shape":
        ckpt["model"]["prep.0.weight"] = ckpt["model"]["prep.0.weight"][:1]
    elif damage == "image-size-text":
        ckpt["image_size"] = "abc"
    elif damage == "nan-weights":
        ckpt["model"]["prep.0.weight"][0, 0, 0, 0] = float("nan")
    else:
        ckpt["classes"] = []
    torch.save(ckpt, tmp_path / "bad.pt")
    refused(
        capsys,
        ["evaluate", str(tmp_path / "bad.pt"), "--data-dir", str(root / "data")],
        "not a cifarkit checkpoint: " + needle,
    )


def test_weights_flagged_for_assignment_still_load_by_copy(trained_run, tmp_path):
    root, _ = trained_run
    ckpt = load_checkpoint(root / "run")
    for entry in ckpt["model"]._metadata.values():  # as load_state_dict(assign=True) leaves them, then saved
        entry["assign_to_params_buffers"] = True
    torch.save(ckpt, tmp_path / "flagged.pt")
    model = build_model(ckpt["model_name"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.load_state_dict(load_checkpoint(tmp_path / "flagged.pt")["model"])
    # still the parameters the optimiser steps, holding copies: training would go on
    assert all(p is q for p, q in zip(model.parameters(), optimizer.param_groups[0]["params"]))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt["model"].items())


# -- report on damaged files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("garbage-row", "metrics.csv: line 3: not a row of numbers"),
        ("no-columns", "metrics.csv: line 1: not a cifarkit metrics header"),
        ("bad-json", "results.json: not valid JSON"),
    ],
)
def test_report_names_the_damaged_file_and_line(tiny_py, tmp_path, capsys, damage, needle):
    run = tiny_run(tiny_py, tmp_path / "run", "--epochs", "2")
    if damage == "garbage-row":
        lines = (run / "metrics.csv").read_text().splitlines()
        lines[2] = "2,not,a,number" + "," * 5
        (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    elif damage == "no-columns":
        (run / "metrics.csv").write_text("a,b\n1,2\n")
    else:
        (run / "results.json").write_text("{oops")
    refused(capsys, ["report", str(run)], needle)


# -- values the commands other than train did not check --------------------------------------------------------


def test_devices_limits_labels_and_timeouts_are_checked(trained_run, tiny_py, tmp_path, capsys):
    root, _ = trained_run
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 40), (200, 10, 10)).save(image)
    for device in ("bogus", "meta"):
        refused(capsys, ["predict", str(root / "run"), str(image), "--device", device], f"--device '{device}'")
        refused(capsys, ["evaluate", str(root / "run"), "--device", device], "unknown device")
    for limit in ("-5", "0"):
        refused(capsys, ["evaluate", str(root / "run"), "--limit-test", limit], f"--limit-test {limit}")
    refused(capsys, ["train", "--data-dir", str(tiny_py), *TINY, "--dist-timeout", "nan"], "--dist-timeout nan")
    batch = tiny_py / "cifar-10-batches-py" / "data_batch_1"
    original = pickle.loads(batch.read_bytes(), encoding="latin1")
    for labels, needle in (
        (["cat"] * 40, "must be whole numbers"),
        ([2**70] * 40, "too large"),
        ([1.5] * 40, "must be whole numbers"),
    ):
        batch.write_bytes(pickle.dumps({**original, "labels": labels}, protocol=2))
        refused(capsys, ["data", "--data-dir", str(tiny_py)], "data_batch_1: ", needle)


# -- decompression bombs are refused by name, quietly -------------------------------------------------------------


def test_a_huge_png_is_refused_without_pils_warning(trained_run, tmp_path, capsys):
    root, _ = trained_run
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 megapixels, a few KB on disk
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        refused(capsys, ["predict", str(root / "run"), str(bomb)], "bomb.png: too large an image")


# -- 16-bit and EXIF-rotated images arrive as they look ---------------------------------------------------------------


def test_sixteen_bit_grey_is_scaled_and_exif_orientation_applied(tmp_path):
    from cifarkit.data.folder import read_image

    grey = tmp_path / "grey16.png"
    Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16)).save(grey)
    assert 120 <= int(read_image(grey, 32).float().mean()) <= 135  # mid-grey, not clipped to white
    photo = tmp_path / "rotated.jpg"
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, :40] = 255  # left half white, landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the displayed image is portrait, white on top
    Image.fromarray(pixels).save(photo, exif=exif, quality=95)
    shown = read_image(photo, 32).float().mean(0)
    assert shown[:8].mean() > 200 and shown[-8:].mean() < 50


# -- more threads than CPUs ------------------------------------------------------------------------------------


def test_threads_are_capped_at_the_cpus_available(monkeypatch):
    from cifarkit.runtime import device as runtime

    monkeypatch.setattr(runtime, "available_cpus", lambda: 2)
    before = torch.get_num_threads()
    try:
        with pytest.warns(UserWarning, match="--threads 1000: this process may use 2"):
            runtime.setup_runtime(TrainConfig(threads=1000, device="cpu"))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# -- the range test on too few images, and advice that points the right way -------------------------------------------


def test_lr_find_warns_on_few_images_and_advises_a_higher_range_when_flat(tiny_py, tmp_path):
    from cifarkit.training.lr_finder import suggest

    with pytest.warns(UserWarning, match="the range test sees only 1 training image"), pytest.raises(UserError):
        from cifarkit.data.loading import load_dataset
        from cifarkit.training.lr_finder import find_lr

        config = TrainConfig(
            model="s10-small",
            batch_size=50,
            threads=1,
            precision="fp32",
            limit_train=1,
            lr_find_start=1e-7,
            lr_find_end=1e-6,
            lr_find_iters=30,
        ).validate()
        find_lr(config, load_dataset("cifar10", tiny_py, download=False).limit(1), tmp_path / "lr")
    lrs = list(np.geomspace(1e-6, 1e-5, 40))
    with pytest.raises(UserError, match="Try a higher range"):
        suggest(lrs, [2.3] * 40, 1e-6, 1e-5, 40)
    with pytest.raises(UserError, match="Try a lower range"):
        suggest(lrs, list(np.linspace(2.3, 9.0, 40)), 1e-6, 1e-5, 40)


# -- wall time and train time are accounted alike across a crash ------------------------------------------------------


def crashed_run(tiny_py, run, crash_at_step, step):
    """A 2-epoch run of 8 steps, checkpointed every 2 steps, that crashed at `step`."""
    config = TrainConfig(
        model="s10-small", epochs=2, batch_size=50, max_lr=5e-3, data_dir=str(tiny_py), threads=1, precision="fp32"
    )
    crash_at_step(step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, run, progress=False, checkpoint_every=2)
    crash_at_step(None)
    return run


def test_after_a_crash_and_resume_wall_time_covers_train_time(tiny_py, tmp_path, crash_at_step):
    crashed_run(tiny_py, tmp_path / "run", crash_at_step, 7)
    results = train(TrainConfig(), tmp_path / "run", resume=True, progress=False)
    assert results["wall_time_s"] >= results["train_seconds"]


# -- a resumed run on other data is refused before a step: its schedule would stop short or overrun ------------------


def test_resume_on_a_data_dir_with_more_training_images_is_refused(tiny_py, tmp_path, crash_at_step, capsys):
    from conftest import synthetic_cifar, write_py_layout

    crashed_run(tiny_py, tmp_path / "run", crash_at_step, 3)
    more = tmp_path / "more"
    write_py_layout(more, synthetic_cifar(30, seed=1), synthetic_cifar(10, seed=2))
    refused(
        capsys,
        ["train", "--resume", str(tmp_path / "run"), "--data-dir", str(more), "--quiet"],
        "the run started with a schedule of 8 steps",
        "gives 12 (300 training images at batch 50)",
        "resume with the --data-dir it started on",
    )
    renamed = tmp_path / "renamed"  # the same images, their classes named in another order: labels would permute
    shutil.copytree(tiny_py, renamed)
    meta = renamed / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": list(reversed(CLASSES)), "num_cases_per_batch": 10000}))
    refused(
        capsys,
        ["train", "--resume", str(tmp_path / "run"), "--data-dir", str(renamed), "--quiet"],
        "the run trained on the classes airplane, automobile, bird, cat, deer, ...; the data in",
        "has truck, ship, horse, frog, dog, ...: resume with the --data-dir it started on",
    )
    assert main(["train", "--resume", str(tmp_path / "run"), "--data-dir", str(tiny_py), "--quiet"]) == 0


# -- a training size the model narrows too far for BatchNorm is refused before the first step -----------------------


@pytest.mark.parametrize(
    "model, flags, message",
    [
        (
            "fast-small",
            ["--small-crop", "16", "--small-crop-epochs", "1"],
            "--small-crop 16: model fast-small narrows a 16x16 image to a 1x1 map at group3.2, and a batch of one "
            "image (151 training images at --batch-size 50) gives BatchNorm one value per channel; use --small-crop "
            "17 or more, or a --batch-size that leaves no image alone",
        ),
        (
            "fast-small",
            ["--small-crop", "8", "--small-crop-epochs", "1"],
            "--small-crop 8: model fast-small narrows a 8x8 image to nothing (a map of size 0); use --small-crop 17 "
            "or more",
        ),
        (
            "s10-small",
            ["--small-crop", "15", "--small-crop-epochs", "1"],
            "--small-crop 15: model s10-small narrows a 15x15 image to a 1x1 map at layer3.0.2, and a batch of one "
            "image",
        ),
    ],
)
def test_a_size_too_small_for_batchnorm_is_refused_with_the_least_that_trains(
    tiny_py, tmp_path, capsys, model, flags, message
):
    argv = [
        "train",
        "--data-dir",
        str(tiny_py),
        "--model",
        model,
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--threads",
        "1",
        "--precision",
        "fp32",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
        *flags,
    ]
    refused(capsys, argv + ["--limit-train", "151"], message)
    if "nothing" not in message:  # a 1x1 map trains when every batch holds two images or more
        assert main(argv + ["--limit-train", "150"]) == 0


# -- the command line's own slips -----------------------------------------------------------------------------------


def test_an_unknown_flag_is_named_by_its_command_with_the_nearest_one(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--lr", "0.1"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("usage: cifarkit train")
    assert "unrecognized arguments: --lr 0.1 (did you mean --max-lr?)" in err
    with pytest.raises(SystemExit):  # before the command word: the top-level parser's
        main(["--bogus", "train"])
    err = capsys.readouterr().err
    assert err.startswith("usage: cifarkit [-h]") and "unrecognized arguments: --bogus" in err


def test_a_warning_is_one_line_naming_the_command(tiny_py, tmp_path, capsys):
    argv = [
        "train",
        "--data-dir",
        str(tiny_py),
        "--model",
        "s10-small",
        "--epochs",
        "1",
        "--batch-size",
        "100",
        "--max-lr",
        "5e-3",
        "--precision",
        "fp32",
        "--threads",
        "4096",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(argv) == 0
    err = capsys.readouterr().err
    assert "cifarkit train: warning: --threads 4096: this process may use" in err
    assert "UserWarning" not in err and ".py:" not in err


def test_output_piped_into_a_reader_that_stops_early_ends_quietly():
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first write: every write meets a closed pipe
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cifarkit", "summary", "--model", "s10"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr


# what a command may read, write and delete ----------------------------------------------------------------------


def test_report_and_compare_never_read_nor_write_through_a_symlink_out_of_the_run(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0] / "run", run)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text('{"epochs": 99, "secret": "SECRET-OUTSIDE"}')
    (outside / "confusion.png").write_bytes(b"the user's picture")
    (run / "config.json").unlink()
    (run / "config.json").symlink_to(outside / "config.json")
    for argv in (["report", str(run)], ["compare", str(run), str(trained_run[0] / "run")]):
        refused(capsys, argv, f"{run / 'config.json'}: a symlink out of the run folder")
    shutil.copy(trained_run[0] / "run" / "config.json", run / "config.json.real")
    (run / "config.json").unlink()
    (run / "config.json.real").rename(run / "config.json")
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").symlink_to(outside / "config.json")
    refused(capsys, ["compare", str(run), str(trained_run[0] / "run")], "metrics.csv: a symlink out of the run folder")
    (run / "metrics.csv").unlink()
    shutil.copy(trained_run[0] / "run" / "metrics.csv", run / "metrics.csv")
    shutil.rmtree(run / "plots")
    (run / "plots").symlink_to(outside)  # report would draw its curves, and the page, over the user's files
    refused(capsys, ["report", str(run)], "plots/", "a symlink out of the run folder")
    assert sorted(p.name for p in outside.iterdir()) == ["config.json", "confusion.png"]
    assert (outside / "confusion.png").read_bytes() == b"the user's picture"


def test_overwrite_never_wipes_a_users_folder_that_merely_holds_a_config_json(tiny_py, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "plots").mkdir(parents=True)
    (mine / "config.json").write_text('{"epochs": 5}')  # even one that parses as a cifarkit config
    (mine / "results.json").write_text('{"accuracy": "the user\'s"}')
    for name in ("report.html", "model.txt", "plots/confusion.png"):
        (mine / name).write_text(f"the user's {name}")
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    refused(
        capsys,
        ["train", "--data-dir", str(tiny_py), *TINY, "--out", str(mine), "--overwrite"],
        f"--out {mine}: a folder of other files",
    )
    refused(capsys, ["report", str(mine)], f"{mine}: a folder of other files", "not a cifarkit run")
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before
    run = tiny_run(tiny_py, tmp_path / "run")  # a real run's own files are what --overwrite replaces
    (run / "notes.txt").write_text("kept")
    tiny_run(tiny_py, run, "--overwrite")
    assert (run / "notes.txt").read_text() == "kept" and (run / "results.json").exists()


def test_no_output_lands_among_the_data_a_command_reads(tiny_py, tmp_path, capsys, monkeypatch):
    run = tiny_run(tiny_py, tmp_path / "run")
    test_batch = tiny_py / "cifar-10-batches-py" / "test_batch"
    before = test_batch.read_bytes()
    refused(
        capsys,
        ["evaluate", str(run), "--data-dir", str(tiny_py), "--out", str(test_batch)],
        f"--out {test_batch}: inside the data in {tiny_py / 'cifar-10-batches-py'}",
    )
    monkeypatch.setenv("CIFARKIT_DATA", str(tiny_py))  # the data found without --data-dir: the same rule
    refused(capsys, ["evaluate", str(run), "--out", str(test_batch)], "inside the data")
    assert test_batch.read_bytes() == before
    images = tmp_path / "images"  # a folder dataset: a run inside it would feed its plots to the next run
    (images / "train" / "cat").mkdir(parents=True)
    (images / "test").mkdir()
    for out in (images / "train" / "cat" / "run", images / "runs"):
        refused(
            capsys,
            ["train", "--dataset", "folder", "--data-dir", str(images), *TINY, "--out", str(out)],
            f"--out {out}: inside the data in {images}",
        )
        refused(
            capsys, ["lr-find", "--dataset", "folder", "--data-dir", str(images), "--out", str(out)], "inside the data"
        )
    monkeypatch.chdir(images)  # the default runs/ folder inside the data too
    refused(capsys, ["train", "--dataset", "folder", "--data-dir", str(images), *TINY], "--out runs: inside the data")
    assert sorted(p.name for p in images.rglob("*")) == ["cat", "test", "train"]


def test_lr_find_never_replaces_a_users_range_test_files(tiny_py, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "lr_find.json").write_text('{"mine": true}')
    refused(
        capsys,
        ["lr-find", "--data-dir", str(tiny_py), "--model", "s10-small", "--out", str(mine)],
        f"--out {mine}: a folder of other files (lr_find.json), not an earlier range test's",
    )
    assert (mine / "lr_find.json").read_text() == '{"mine": true}'


def test_a_suggested_command_names_the_program_as_it_was_started(tmp_path, monkeypatch):
    import os
    import sys

    import cifarkit
    from cifarkit.runtime.invoked import program

    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "cifarkit").write_text("#!/bin/sh\n")
    (venv / "cifarkit").chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(sys, "argv", [str(venv / "cifarkit"), "train"])  # started by a path PATH does not lead to
    assert program() == str(venv / "cifarkit")
    monkeypatch.setenv("PATH", str(venv))  # the same program found on PATH: its name is enough
    assert program() == "cifarkit"
    monkeypatch.setattr(sys, "argv", [os.path.join(os.path.dirname(cifarkit.__file__), "__main__.py")])
    assert program().endswith(" -m cifarkit")  # python -m cifarkit (the interpreter's path: `python` is not on PATH)
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/ipykernel_launcher.py"])  # the Python API
    assert program() == "cifarkit"


def test_the_resume_hint_runs_as_printed(tiny_py, tmp_path, capsys, monkeypatch):
    import sys

    from cifarkit.training.stopping import Interrupted
    from cifarkit.training.trainer import Trainer

    def interrupted(self):
        raise Interrupted("SIGINT")

    def torch_full(obj, f, *args, **kwargs):
        raise RuntimeError("PytorchStreamWriter failed writing file")

    monkeypatch.setenv("PATH", "/nonexistent")  # .venv/bin/cifarkit run by its path: cifarkit is not on PATH
    monkeypatch.setattr(sys, "argv", [".venv/bin/cifarkit"])
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", interrupted)
        assert main(["train", "--data-dir", str(tiny_py), *TINY, "--out", str(tmp_path / "run")]) == 130
    assert f"Continue with: .venv/bin/cifarkit train --resume {tmp_path / 'run'}" in capsys.readouterr().err
    monkeypatch.setattr(files.torch, "save", torch_full)
    refused(
        capsys,
        ["train", "--data-dir", str(tiny_py), *TINY, "--out", str(tmp_path / "full")],
        "continue with: .venv/bin/cifarkit train --resume",
    )
