"""Files a user (or anyone who could write them) controls: one reader, which refuses what is no regular file, too
large, nested too deep or holding too long a number, naming the file; and the checkpoint's settings checked as a
config file's are. Every case ends in a clear message (exit 2, no traceback) and nothing hangs."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from cifarkit.cli.main import main
from cifarkit.errors import UserError
from cifarkit.files import reader
from cifarkit.rundir.checkpoint import load_checkpoint
from cifarkit.rundir.run_dir import RunDir

DEEP = "[" * 50_000 + "]" * 50_000
HUGE_INT = '{"seed": ' + "9" * 5_000 + "}"


def refused(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


# the reader ------------------------------------------------------------------------------------------------------


def test_the_reader_refuses_what_is_no_regular_file_without_waiting(tmp_path, fifo):
    for path, kind in ((fifo, "a FIFO"), (tmp_path, "a folder"), ("/dev/zero", "a device")):
        with pytest.raises(UserError, match=rf"{path}: cannot be read as a config file: it is {kind}"):
            reader.read_json(path, "config file")  # a plain open() of the FIFO would wait for a writer for ever
    with pytest.raises(UserError, match="no such config file"):
        reader.read_json(tmp_path / "missing.json", "config file")


def test_the_reader_refuses_a_file_larger_than_its_limit(tmp_path):
    (tmp_path / "big.json").write_text("[" + "0," * 600 + "0]")
    with pytest.raises(UserError, match=r"big.json: 1,203 bytes, more than any lr_find.json cifarkit writes"):
        reader.read_json(tmp_path / "big.json", "lr_find.json", limit=1000)
    assert len(reader.read_json(tmp_path / "big.json", "lr_find.json")) == 601


@pytest.mark.parametrize(
    "text, reason",
    [
        (DEEP, "nested more than 32 deep"),
        (HUGE_INT, "a whole number of 5000 digits"),
        ('{"a": "' + "[" * 100 + '"}', None),  # brackets inside a string do not nest
        ('{"a": "\\"[[[[", "b": [[1]]}', None),  # nor after an escaped quote
    ],
)
def test_json_nesting_and_number_length_are_checked_outside_strings(tmp_path, text, reason):
    (tmp_path / "f.json").write_text(text)
    if reason is None:
        assert reader.read_json(tmp_path / "f.json", "file") == json.loads(text)
    else:
        with pytest.raises(UserError, match=rf"f.json: not valid JSON \({reason}"):
            reader.read_json(tmp_path / "f.json", "file")


# every command that reads a config, a run's JSON or metrics -------------------------------------------------------


@pytest.mark.parametrize(
    "content, needle",
    [
        (DEEP, "not valid JSON (nested more than 32 deep)"),
        (HUGE_INT, "not valid JSON (a whole number of 5000 digits"),
    ],
)
def test_a_hostile_config_file_is_named(tmp_path, capsys, content, needle):
    (tmp_path / "config.json").write_text(content)
    refused(
        capsys,
        ["train", "--config", str(tmp_path / "config.json"), "--data-dir", str(tmp_path)],
        f"{tmp_path / 'config.json'}: {needle}",
    )


def test_a_fifo_or_a_device_as_config_file_is_refused_at_once(tmp_path, capsys, fifo):
    refused(capsys, ["train", "--config", str(fifo)], f"{fifo}: cannot be read as a config file: it is a FIFO")
    refused(capsys, ["lr-find", "--config", "/dev/zero"], "/dev/zero: cannot be read as a config file: it is a device")


def test_a_fifo_as_checkpoint_is_refused_at_once(tmp_path, capsys, fifo):
    refused(capsys, ["evaluate", str(fifo)], f"{fifo}: cannot be read as a checkpoint: it is a FIFO")
    (tmp_path / "run" / "checkpoints" / "last.pt").mkdir(parents=True)
    refused(
        capsys, ["predict", str(tmp_path / "run"), str(fifo)], "last.pt: cannot be read as a checkpoint: it is a folder"
    )


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("config.json", DEEP, "config.json: not valid JSON (nested more than 32 deep)"),
        ("results.json", HUGE_INT, "results.json: not valid JSON (a whole number of 5000 digits"),
        ("results.json", "fifo", "results.json: cannot be read as a cifarkit results.json: it is a FIFO"),
        ("results.json", "folder", "results.json: cannot be read as a cifarkit results.json: it is a folder"),
        ("metrics.csv", "fifo", "metrics.csv: cannot be read as a cifarkit metrics.csv: it is a FIFO"),
    ],
)
def test_report_and_compare_name_a_hostile_run_file(trained_run, tmp_path, capsys, name, content, needle):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run[0] / "run", run)
    (run / name).unlink()
    if content == "fifo":
        os.mkfifo(run / name)
    elif content == "folder":
        (run / name).mkdir()
    else:
        (run / name).write_text(content)
    for command in (["report", str(run)], ["compare", str(run), str(trained_run[0] / "run")]):
        refused(capsys, command, needle)


def test_a_metrics_field_over_csvs_limit_is_named_with_its_line(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run[0] / "run", run)
    lines = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join([*lines[:2], "1," + "9" * 200_000, *lines[2:]]) + "\n")
    refused(capsys, ["report", str(run)], "metrics.csv: line 3: not a row of numbers (field larger than field limit")


def test_resume_names_a_hostile_config_json(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run[0] / "run", run)
    (run / "config.json").write_text(DEEP)
    refused(capsys, ["train", "--resume", str(run)], "config.json: not valid JSON (nested more than 32 deep)")


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("classes", ["cat", "dog"], 'classes is ["cat", "dog"], not a whole number'),
        ("test_accuracy", "high", 'test_accuracy is "high", not a number'),
        ("epochs", True, "epochs is true, not a whole number"),
        ("dataset", 10, "dataset is 10, not text"),
    ],
)
def test_results_fields_are_read_with_their_types(trained_run, tmp_path, field, value, needle):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run[0] / "run", run)
    results = RunDir(run).read_results()
    assert isinstance(results["classes"], int) and isinstance(results["test_accuracy"], float)
    (run / "results.json").write_text(json.dumps({**results, field: value}))
    with pytest.raises(UserError, match=re.escape(f"results.json: {needle}")):
        RunDir(run).read_results()


@pytest.mark.parametrize("command", [["compare", "{run}"], ["export", "{run}", "--app", "{out}"], ["report", "{run}"]])
def test_commands_that_show_results_name_a_field_of_the_wrong_type(trained_run, tmp_path, capsys, command):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run[0] / "run", run)
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**results, "classes": ["cat", "dog"], "test_accuracy": "high"}))
    argv = [part.format(run=run, out=tmp_path / "bundle") for part in command]
    refused(capsys, argv, "results.json: ", "not a ")


# a checkpoint's settings, checked as a config file's are -------------------------------------------------------------


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"config": {"precision": "fp8"}}, "its config: --precision 'fp8': choose one of"),
        ({"config": {"tta": "everything"}}, "its config: --tta 'everything': choose one of"),
        ({"config": {"eval_batch_size": 0}}, "its config: --eval-batch-size 0: must be a whole number >= 1"),
        ({"config": {"image_size": 200_000}}, "its config: --image-size 200000: must be a whole number of pixels"),
        ({"config": {"epochs": "3"}}, "its config: setting 'epochs' must be a whole number"),
        ({"image_size": 1}, "its image size 1 is not its config's --image-size 32"),
        (
            {"mean": [float("nan")] * 3},
            "not a cifarkit checkpoint: its normalisation mean [nan, nan, nan] is not that of pixels in [0, 1]",
        ),
        (
            {"std": [1e-30] * 3},
            "not a cifarkit checkpoint: its normalisation std [1e-30, 1e-30, 1e-30] is not that of pixels in [0, 1]",
        ),
    ],
)
def test_a_checkpoints_config_is_validated_and_its_path_named(trained_run, tmp_path, capsys, change, needle):
    root, _ = trained_run
    ckpt = load_checkpoint(root / "run")
    for key, value in change.items():
        ckpt[key] = {**ckpt[key], **value} if key == "config" else value
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    bad = tmp_path / "run" / "checkpoints" / "last.pt"
    torch.save(ckpt, bad)
    refused(
        capsys,
        ["evaluate", str(bad), "--data-dir", str(root / "data"), "--out", str(tmp_path / "e.json")],
        f"{bad}: {needle}",
    )
    assert not (tmp_path / "e.json").exists()


def test_a_checkpoint_named_through_a_symlinked_folder_out_of_its_run_is_refused(trained_run, tmp_path, capsys):
    root, _ = trained_run
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").symlink_to(root / "run" / "checkpoints")
    refused(capsys, ["evaluate", str(tmp_path / "run")], "checkpoints/last.pt: a symlink out of the run folder")


def test_a_fifo_config_never_hangs_a_subprocess(tmp_path, fifo):
    """The whole command, as a user runs it: it ends (with exit 2) rather than waiting for a writer."""
    done = subprocess.run(
        [sys.executable, "-m", "cifarkit", "train", "--config", str(fifo)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "it is a FIFO" in done.stderr
