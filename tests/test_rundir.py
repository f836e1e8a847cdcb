"""The run folder: names, atomic writes, rank-0-only writing, listing and clearing."""

import os

import pytest

from cifarkit.errors import UserError
from cifarkit.rundir.run_dir import CONFIG, LOCK, RUN_FILES, RunDir


def test_clear_removes_the_run_files_and_nothing_else(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_json(CONFIG, {"a": 1})
    run.write_bytes("plots/curves.png", b"png")
    run.write_text("notes.txt", "mine")  # a user's own file beside the run
    assert run.existing() == [CONFIG, "plots/curves.png"] and set(run.existing()) <= set(RUN_FILES)
    run.clear()
    assert run.existing() == [] and (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_a_rundir_that_does_not_write_writes_nothing(tmp_path):
    run = RunDir(tmp_path / "run", writes=False)
    run.write_json(CONFIG, {})
    run.write_metrics([{"epoch": 1}])
    run.save_checkpoint({"format": 1})
    assert not (tmp_path / "run").exists()


def test_a_damaged_json_file_is_named(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / CONFIG).write_text("{not json")
    with pytest.raises(UserError, match=r"config.json: not valid JSON"):
        run.read_json(CONFIG)
    assert run.read_json("results.json") is None
    for content in ("null", "[]"):  # valid JSON, but no run writes it: never read as "absent" or "unfinished"
        (tmp_path / "results.json").write_text(content)
        with pytest.raises(UserError, match=r"results.json: not a cifarkit results.json \(expected an object"):
            run.read_json("results.json")


def test_a_commands_default_output_goes_into_the_run_folder_else_beside_a_loose_checkpoint(tmp_path, monkeypatch):
    from cifarkit.rundir.outputs import default_output

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "copy.pt").write_bytes(b"")
    assert default_output(run, "gradcam.png") == run / "gradcam.png"
    assert default_output(run / "checkpoints" / "last.pt", "evaluate-flip.json") == run / "evaluate-flip.json"
    assert default_output(tmp_path / "copy.pt", "evaluate-flip.json") == tmp_path / "copy.evaluate-flip.json"
    monkeypatch.chdir(run / "checkpoints")
    assert default_output("last.pt", "gradcam.png").resolve() == (run / "gradcam.png").resolve()
    (run / "gradcam.png").write_bytes(b"")
    (run / "evaluate-flip.json").write_text("{}")
    RunDir(run).clear()  # --overwrite: the commands' outputs about the old model go with it
    assert not (run / "gradcam.png").exists() and not (run / "evaluate-flip.json").exists()


def test_what_a_failed_start_leaves_is_no_folder_of_other_files_and_a_users_gradcam_png_is_no_run(tmp_path):
    left = tmp_path / "left"
    for name in ("checkpoints", "plots", "tb"):  # emptied by --overwrite, or tb/ made before the data failed
        (left / name).mkdir(parents=True)
    (left / "tb" / "events.out.tfevents.1").write_bytes(b"")
    (left / ".DS_Store").write_bytes(b"")
    assert RunDir(left).foreign_files() == [] and RunDir(left).existing() == []
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("gradcam.png", "holiday.jpg"):
        (photos / name).write_bytes(b"")
    assert RunDir(photos).existing() == [] and RunDir(photos).foreign_files() == ["gradcam.png", "holiday.jpg"]
    RunDir(photos).clear()
    assert (photos / "gradcam.png").exists()
    for name, file in (("plots", "holiday.jpg"), ("checkpoints", "resnet50.pth"), ("tb", "notes.txt")):
        mine = tmp_path / f"mine-{name}" / name  # a user's folder that a run's is named like: theirs
        mine.mkdir(parents=True)
        (mine / file).write_bytes(b"")
        assert RunDir(mine.parent).existing() == [] and RunDir(mine.parent).foreign_files() == [name]
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    assert RunDir(tmp_path / "repo").foreign_files() == [".git"]


def test_a_lock_whose_file_was_removed_under_it_is_taken_afresh(tmp_path, monkeypatch):
    import os

    run = RunDir(tmp_path / "run")
    real_flock = __import__("fcntl").flock

    def removed_meanwhile(fd, op):  # another process discarded the folder's lock file after we opened it
        real_flock(fd, op)
        if not removed:
            removed.append(True)
            os.unlink(tmp_path / "run" / LOCK)

    removed = []
    monkeypatch.setattr("fcntl.flock", removed_meanwhile)
    run.lock()
    assert removed and os.stat(tmp_path / "run" / LOCK).st_ino == os.fstat(run._lock).st_ino
    run.unlock()


# what a command may read and write: files inside the run, in a folder that is the run's own ---------------------------


def test_a_symlink_out_of_the_run_is_never_read_nor_written_through(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_json(CONFIG, {"epochs": 1})
    user = tmp_path / "user"
    user.mkdir()
    (user / "confusion.png").write_bytes(b"the user's")
    (user / "secret.json").write_text('{"secret": 1}')
    (tmp_path / "run" / "plots").symlink_to(user)  # plots/ leads out: report must not write through it
    with pytest.raises(UserError, match=r"plots/curves.png: a symlink out of the run folder \(to .*user"):
        run.plot("curves")
    with pytest.raises(UserError, match="a symlink out of the run folder"):
        run.write_bytes("plots/confusion.png", b"png")
    (tmp_path / "run" / "results.json").symlink_to(user / "secret.json")  # read as the run's own: refused
    with pytest.raises(UserError, match=r"results.json: a symlink out of the run folder"):
        run.read_json("results.json")
    (tmp_path / "run" / "metrics.csv").symlink_to(user / "secret.json")
    with pytest.raises(UserError, match=r"metrics.csv: a symlink out of the run folder"):
        run.read_metrics()
    assert run.regular_file("plots/confusion.png") is None
    run.clear()  # the links go, never what they lead to
    assert (user / "confusion.png").read_bytes() == b"the user's" and (user / "secret.json").exists()
    assert not os.path.lexists(tmp_path / "run" / "results.json")
    (tmp_path / "run" / "inner").mkdir()  # a link that stays inside the folder is fine
    (tmp_path / "run" / "inner" / "metrics.csv").write_text("epoch,lr,train_loss,train_acc,test_loss,test_acc\n")
    (tmp_path / "run" / "metrics.csv").symlink_to(tmp_path / "run" / "inner" / "metrics.csv")
    assert run.read_metrics() == []


def test_a_folder_is_a_run_only_when_its_files_say_so(tmp_path):
    from cifarkit.rundir.run_dir import CHECKPOINT, MARKER

    mine = tmp_path / "mine"  # a user's folder with files named as a run's, a valid cifarkit config among them
    (mine / "plots").mkdir(parents=True)
    for name in ("results.json", "report.html", "model.txt", "plots/confusion.png"):
        (mine / name).write_text("the user's")
    (mine / CONFIG).write_text('{"epochs": 3}')
    run = RunDir(mine)
    assert (
        not run.owned()
        and run.existing() == []
        and run.foreign_files() == sorted(["config.json", "model.txt", "plots", "report.html", "results.json"])
    )
    run.clear()
    with pytest.raises(UserError, match=r"mine: a folder of other files \(config.json, model.txt, plots, \.\.\.\)"):
        run.write_text("report.html", "<html>")
    assert all((mine / name).read_text() == "the user's" for name in ("results.json", "report.html", "model.txt"))
    (mine / CHECKPOINT).parent.mkdir()
    (mine / CHECKPOINT).write_bytes(b"")  # a run from before markers: a cifarkit config beside a checkpoint
    (mine / CONFIG).write_text('{"not_a_setting": 1}')
    assert not RunDir(mine).owned()
    (mine / CONFIG).write_text('{"epochs": 3}')
    legacy = RunDir(mine)
    assert legacy.owned()
    legacy.clear()  # --overwrite: the run's files go (a user's notes would stay); the new run's first write marks it
    assert not (mine / CHECKPOINT).exists() and not (mine / MARKER).exists()
    legacy.write_json(CONFIG, {"epochs": 1})
    assert (mine / MARKER).is_file() and RunDir(mine).owned()
    fresh = RunDir(tmp_path / "fresh")  # the first write into a new folder marks it as the run's
    fresh.write_json(CONFIG, {"epochs": 1})
    assert (tmp_path / "fresh" / MARKER).is_file() and RunDir(tmp_path / "fresh").owned()
    assert MARKER not in RunDir(tmp_path / "fresh").existing()


def test_a_runs_plot_is_read_through_the_checked_reader(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_bytes("plots/curves.png", b"png")
    assert run.read_bytes("plots/curves.png") == b"png" and run.read_bytes("plots/absent.png") is None
    with pytest.raises(UserError, match=r"curves.png: 3 bytes, more than any cifarkit plots/curves.png"):
        run.read_bytes("plots/curves.png", limit=2)
