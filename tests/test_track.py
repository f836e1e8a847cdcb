"""TensorBoard logging (`train --tensorboard`), read back with TensorBoard's own event reader."""

import csv
import shutil
import time

import pytest

from cifarkit import TrainConfig, train
from cifarkit.cli.main import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402 (after the skip when absent)
    EventAccumulator,
)


def events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


def rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_tensorboard_logs_steps_epochs_images_graph_and_hparams_and_changes_nothing(trained_run, tmp_path):
    root, results = trained_run  # the same run without --tensorboard
    config = TrainConfig(
        model="s10-small",
        epochs=3,
        batch_size=50,
        max_lr=5e-3,
        data_dir=str(root / "data"),
        threads=1,
        precision="fp32",
    )
    logged = train(config, tmp_path / "run", progress=False, tensorboard=True)
    timing = ("images_per_s", "seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows(tmp_path / "run")] == [
        {k: v for k, v in r.items() if k not in timing} for r in rows(root / "run")
    ]  # tracing left no trace
    assert logged["test_accuracy"] == results["test_accuracy"]

    acc = events(tmp_path / "run" / "tb")
    assert steps(acc, "train/step_loss") == list(range(1, 13))  # 200 images / 50 = 4 steps an epoch, 3 epochs
    assert steps(acc, "lr/group0") == list(range(1, 13))
    assert steps(acc, "test/acc") == [4, 8, 12]
    assert [e.value for e in acc.Scalars("test/acc")] == pytest.approx(
        [float(r["test_acc"]) for r in rows(tmp_path / "run")]
    )
    assert steps(acc, "train/epoch_loss") == [4, 8, 12]
    assert len(acc.Images("augmented")) == 1
    assert acc.Tags()["graph"]
    hparams = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    assert acc.Scalars("hparam/test_accuracy")[0].value == pytest.approx(results["test_accuracy"])


def test_resume_appends_without_duplicating_steps(tiny_py, tmp_path, crash_at_step, capsys):
    flags = [
        "--model",
        "s10-small",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--max-lr",
        "5e-3",
        "--threads",
        "1",
        "--precision",
        "fp32",
        "--data-dir",
        str(tiny_py),
        "--quiet",
    ]
    crash_at_step(7)  # steps 5 and 6 of epoch 2 are logged after the epoch-1 checkpoint (step 4), then lost
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["train", *flags, "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")])
    assert steps(events(tmp_path / "tb" / "run"), "train/step_loss") == [1, 2, 3, 4, 5, 6]  # DIR/RUN_NAME
    crash_at_step(None)
    time.sleep(1.1)  # event files are ordered by their name's creation second
    assert main(["train", "--resume", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb"), "--quiet"]) == 0
    acc = events(tmp_path / "tb" / "run")
    assert steps(acc, "train/step_loss") == list(range(1, 9))
    assert steps(acc, "test/acc") == [4, 8]
    assert len(acc.Images("augmented")) == 1
    # another run of the same folder name would purge these events: refused before it trains
    capsys.readouterr()
    assert (
        main(["train", *flags, "--out", str(tmp_path / "elsewhere" / "run"), "--tensorboard", str(tmp_path / "tb")])
        == 2
    )
    owner = (tmp_path / "run").resolve()
    assert f"{tmp_path / 'tb' / 'run'} holds the events of another run ({owner})" in capsys.readouterr().err
    assert steps(events(tmp_path / "tb" / "run"), "train/step_loss") == list(range(1, 9))
    # ... and refused before --overwrite clears anything: the run it would have replaced stays whole
    shutil.copytree(tmp_path / "run", tmp_path / "other" / "run", ignore=shutil.ignore_patterns(".cifarkit.lock"))
    assert (
        main(
            [
                "train",
                *flags,
                "--out",
                str(tmp_path / "other" / "run"),
                "--overwrite",
                "--tensorboard",
                str(tmp_path / "tb"),
            ]
        )
        == 2
    )
    assert (tmp_path / "other" / "run" / "results.json").exists()


def test_a_tensorboard_folder_of_many_runs_gives_each_its_own_and_keeps_what_another_run_owns(tmp_path):
    from cifarkit.errors import UserError
    from cifarkit.training.tensorboard import OWNER_FILE, TensorBoard

    first, second = tmp_path / "a" / "run", tmp_path / "b" / "run"
    first.mkdir(parents=True)
    (first / "config.json").write_text("{}")
    assert TensorBoard(tmp_path / "tb", run_dir=first).log_dir == tmp_path / "tb" / "run"
    assert (tmp_path / "tb" / "run" / OWNER_FILE).read_text() == str(first.resolve())
    with pytest.raises(UserError, match="holds the events of another run"):
        TensorBoard(tmp_path / "tb", run_dir=second)  # the first run is still there
    (first / "config.json").unlink()  # moved or deleted: its subfolder is free
    TensorBoard(tmp_path / "tb", run_dir=second)
    assert (tmp_path / "tb" / "run" / OWNER_FILE).read_text() == str(second.resolve())
    (tmp_path / "loose" / "run").mkdir(parents=True)
    (tmp_path / "loose" / "run" / "events.out.tfevents.1.host").write_bytes(b"")  # events of no cifarkit run
    with pytest.raises(UserError, match="holds TensorBoard events of no cifarkit run"):
        TensorBoard(tmp_path / "loose", run_dir=second)
    # --tensorboard naming the folder the run is in: its events go to RUN_DIR/tb, not among the run's files
    assert TensorBoard(tmp_path / "b", run_dir=second).log_dir == second.resolve() / "tb"


def test_without_tensorboard_no_event_files_are_written(trained_run):
    root, _ = trained_run
    assert not (root / "run" / "tb").exists()


def test_a_tensorboard_folder_that_cannot_be_made_is_refused_before_training(tiny_py, tmp_path, capsys):
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"a file, not a folder")
    assert (
        main(
            [
                "train",
                "--data-dir",
                str(tiny_py),
                "--model",
                "s10-small",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--precision",
                "fp32",
                "--out",
                str(tmp_path / "run"),
                "--tensorboard",
                str(taken),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"--tensorboard {taken}: cannot make that folder" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "config.json").exists()  # so the same command, corrected, needs no --overwrite


def test_an_observer_writes_only_the_hooks_it_needs(tiny_py, tmp_path):
    from cifarkit import TrainConfig, train
    from cifarkit.training.observer import Observer

    class Epochs(Observer):  # after_sync and at_end come from the base class
        def __init__(self):
            self.rows = []

        def after_epoch(self, trainer, row):
            self.rows.append(row["epoch"])

    epochs = Epochs()
    train(
        TrainConfig(model="s10-small", epochs=2, batch_size=50, data_dir=str(tiny_py), threads=1, precision="fp32"),
        tmp_path / "run",
        progress=False,
        observers=[epochs],
    )
    assert epochs.rows == [1, 2]
