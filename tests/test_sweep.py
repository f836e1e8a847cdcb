"""`cifarkit sweep` (Optuna): SQLite by default, continuing an interrupted sweep, pruning, bad input, and two
workers sharing one study on a real PostgreSQL server started here on 127.0.0.1."""

import glob
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cifarkit.cli.main import main
from cifarkit.errors import UserError

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402 (after the skip when it is not installed)


def flags(data, out, trials, *extra):
    return [
        "sweep",
        "--model",
        "s10-small",
        "--precision",
        "fp32",
        "--threads",
        "1",
        "--batch-size",
        "50",
        "--epochs",
        "2",
        "--val-split",
        "50",
        "--data-dir",
        str(data),
        "--trials",
        str(trials),
        "--out",
        str(out),
        "--sampler-seed",
        "0",
        "--quiet",
        *extra,
    ]


def study(out, storage=None):
    return optuna.load_study(study_name=Path(out).name, storage=storage or f"sqlite:///{out}/study.db")


def states(out, storage=None):
    return sorted(t.state.name for t in study(out, storage).trials)


def test_sqlite_sweep_writes_run_folders_best_config_and_plots_then_extends(tiny_py, tmp_path, capsys):
    out = tmp_path / "sweep"
    cmd = flags(tiny_py, out, 2, "--param", "max_lr=log:1e-3:1e-2", "--param", "label_smoothing=0:0.3", "--no-prune")
    assert main(cmd) == 0
    printed = capsys.readouterr().out
    assert f"cifarkit train --config {out / 'best_config.json'}" in printed and "2 complete" in printed
    assert (out / "study.db").is_file()
    for n in (0, 1):
        assert json.loads((out / f"trial-{n}" / "results.json").read_text())["n_val"] == 50  # normal run folders
    best = study(out).best_trial
    from cifarkit import TrainConfig

    config = TrainConfig.from_json(out / "best_config.json")
    assert (config.max_lr, config.label_smoothing, config.val_split) == (
        best.params["max_lr"],
        best.params["label_smoothing"],
        50,
    )
    assert best.value == json.loads((out / f"trial-{best.number}" / "results.json").read_text())["val_accuracy"]
    for plot in ("history", "importances"):
        assert (out / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
    cmd[cmd.index("--trials") + 1] = "3"  # the same sweep, one trial more: trials 0 and 1 are not run again
    assert main(cmd) == 0
    assert states(out) == ["COMPLETE"] * 3 and (out / "trial-2" / "results.json").is_file()
    trials = study(out).trials  # the seeded sampler drew on: trial 2 is not trial 0 again
    assert trials[2].params != trials[0].params and trials[2].params != trials[1].params
    capsys.readouterr()
    for changed, named in (
        (["--epochs", "3"], "epochs 3 (the study's: 2)"),
        (
            ["--param", "max_lr=log:1e-3:1e-1", "--param", "label_smoothing=0:0.3"],
            "--param max_lr=log:0.001:0.1 label_smoothing=0:0.3 (the study's: max_lr=log:0.001:0.01",
        ),
    ):
        again = cmd[: cmd.index("--param")] + ["--trials", "4", "--no-prune"] + changed
        if changed[0] == "--epochs":
            again += cmd[cmd.index("--param") : cmd.index("--no-prune")]
        assert main(again) == 2
        assert "was started with other settings" in (err := capsys.readouterr().err) and named in err, err
    assert main(cmd + ["--study", "another"]) == 2  # its trial-0 would replace this study's
    assert "trial-0: holds a run that is not trial 0 of this study" in capsys.readouterr().err
    assert len(study(out).trials) == 3


@pytest.mark.parametrize("how", ["crash", "ctrl-c"])
def test_an_interrupted_sweep_continues_with_the_same_command(
    tiny_py, tmp_path, crash_at_step, monkeypatch, capsys, how
):
    out = tmp_path / "sweep"
    cmd = flags(tiny_py, out, 2, "--param", "max_lr=log:1e-3:1e-2", "--no-prune")
    # trial 0 takes 6 steps (150 images / 50, 2 epochs): the interruption comes in trial 1
    if how == "crash":
        crash_at_step(8)
        with pytest.raises(RuntimeError, match="simulated crash"):
            main(cmd)
        crash_at_step(None)
    else:
        from cifarkit.training.trainer import Trainer

        original, calls = Trainer.train_step, []

        def interrupted(self, *args):
            calls.append(1)
            if len(calls) == 8:
                os.kill(os.getpid(), signal.SIGINT)  # the loop turns it into a checkpoint and a stop
            return original(self, *args)

        monkeypatch.setattr(Trainer, "train_step", interrupted)
        assert main(cmd) == 130  # stopped, as by Ctrl-C: not an error
        assert "stopped during trial 1" in capsys.readouterr().err
        monkeypatch.setattr(Trainer, "train_step", original)
    assert states(out) == ["COMPLETE", "FAIL"]
    assert main(cmd) == 0
    assert states(out) == ["COMPLETE", "COMPLETE", "FAIL"]  # the interrupted trial does not count
    assert not (out / "trial-1" / "results.json").exists() and (out / "trial-2" / "results.json").exists()


def test_a_sweep_whose_every_trial_diverges_says_so_and_fails(tiny_py, tmp_path, capsys):
    out = tmp_path / "sweep"
    # SGD at 1e6: the training loss turns NaN or infinite, or an epoch's last update leaves NaN weights behind a
    # finite loss (a NaN validation loss; such a trial once ended as "complete" at 10% accuracy)
    cmd = flags(tiny_py, out, 2, "--optimizer", "sgd", "--param", "max_lr=log:1e6:1e7")
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert re.search(
        r"no trial of the study has finished: all 2 trials diverged \(trial 1: the (validation )?loss "
        r"became (nan|inf)",
        err,
    ), err
    assert "no best_config.json was written" in err and "Traceback" not in err
    assert not (out / "best_config.json").exists()
    trials = study(out).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 and all("diverged" in t.user_attrs for t in trials)
    assert json.loads((out / "trial-0" / "ended.json").read_text())["reason"] == "diverged"


def test_nan_weights_behind_a_finite_training_loss_are_a_divergence():
    from types import SimpleNamespace

    from cifarkit.errors import Diverged
    from cifarkit.tune.sweep import ReportValidation

    reported = []
    trial = SimpleNamespace(report=lambda value, step: reported.append(value), should_prune=lambda: False)
    trainer = SimpleNamespace(config=SimpleNamespace(epochs=1))
    # NaN predictions: argmax picks class 0, a finite accuracy that must not count as the trial's result
    with pytest.raises(Diverged, match="the validation loss became nan after epoch 1"):
        ReportValidation(trial).after_epoch(
            trainer, {"epoch": 1, "lr": 1e6, "train_loss": 3.0, "val_loss": math.nan, "val_acc": 0.1}
        )
    assert reported == []


def test_a_study_without_a_finished_trial_names_each_cause(tmp_path):
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from cifarkit import TrainConfig
    from cifarkit.tune.outcome import finish
    from cifarkit.tune.params import parse_param

    s = optuna.create_study(direction="maximize")
    made = {"params": {"max_lr": 0.5}, "distributions": {"max_lr": FloatDistribution(0.1, 1)}}
    s.add_trial(
        create_trial(
            state=TrialState.FAIL,
            user_attrs={"diverged": "the loss became nan at epoch 1, step 2 (lr 0.9); training stopped"},
            **made,
        )
    )
    s.add_trial(create_trial(state=TrialState.PRUNED, **made))
    s.add_trial(
        create_trial(
            state=TrialState.FAIL,
            user_attrs={"refused": "--pct-start 0.5 of 3 steps ...; pass --pct-start 0.2"},
            **made,
        )
    )
    s.add_trial(create_trial(state=TrialState.FAIL, **made))  # stopped by Ctrl-C
    with pytest.raises(UserError) as refused:
        finish(s, TrainConfig(val_split=50), [parse_param("max_lr=0.1:1")], tmp_path)
    assert str(refused.value) == (
        f"{tmp_path}: no trial of the study has finished: 1 pruned, 1 diverged (trial 0: the loss became nan at "
        "epoch 1, step 2 (lr 0.9)), 1 refused (trial 2: --pct-start 0.5 of 3 steps ...), 1 stopped or crashed; "
        "pass --no-prune or more --startup-trials; lower the --param ranges that made the loss diverge (e.g. "
        "max_lr's high end); change the settings the refusal names; run the same command again to run them anew; "
        "no best_config.json was written"
    )
    assert not (tmp_path / "best_config.json").exists()


def test_a_trial_whose_schedule_cannot_be_laid_is_refused_and_counts(tiny_py, tmp_path, capsys):
    out = tmp_path / "sweep"
    # 150 training images at batch 50, 1 epoch: 3 steps, and a third of them puts the peak on the first
    cmd = flags(tiny_py, out, 2, "--param", "max_lr=1e-3:1e-2", "--epochs", "1", "--pct-start", repr(1 / 3))
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert "no trial of the study has finished: all 2 trials refused (trial 1: --pct-start 0.333333 of 3 steps" in err
    assert "Traceback" not in err
    trials = study(out).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all(t.user_attrs["refused"].startswith("--pct-start 0.333333 of 3 steps") for t in trials)


def test_a_hopeless_trial_is_pruned_after_its_first_epoch(tiny_py, tmp_path, capsys):
    out = tmp_path / "sweep"
    created = optuna.create_study(study_name=out.name, storage=f"sqlite:///{tmp_path}/sweep.db", direction="maximize")
    out.mkdir()
    shutil.move(tmp_path / "sweep.db", out / "study.db")
    del created
    s = study(out)
    s.enqueue_trial({"max_lr": 5e-3})  # learns: 30% validation accuracy after epoch 1 on the tiny data
    s.enqueue_trial({"max_lr": 1e-6})  # learns nothing: 10%
    cmd = flags(tiny_py, out, 2, "--param", "max_lr=log:1e-6:1e-2", "--startup-trials", "1", "--epochs", "3")
    assert main(cmd) == 0
    trials = study(out).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert list(trials[1].intermediate_values) == [1]
    assert len((out / "trial-1" / "metrics.csv").read_text().splitlines()) == 2  # header + epoch 1
    assert not (out / "trial-1" / "results.json").exists()
    assert "1 complete, 1 pruned" in capsys.readouterr().out
    assert json.loads((out / "trial-1" / "ended.json").read_text())["reason"] == "pruned"
    assert main(["compare", str(out)]) == 0  # the run folders say how each trial ended
    table = capsys.readouterr().out
    assert re.search(r"trial-0 .* finished", table) and re.search(r"trial-1 .* pruned \(1/3 epochs\)", table)


def test_a_trial_is_not_pruned_after_its_last_epoch():
    from types import SimpleNamespace

    from cifarkit.tune.sweep import ReportValidation

    trial = SimpleNamespace(report=lambda value, step: None, should_prune=lambda: True)  # the pruner says stop
    trainer = SimpleNamespace(config=SimpleNamespace(epochs=3))
    ReportValidation(trial).after_epoch(trainer, {"epoch": 3, "val_acc": 0.1})  # nothing left to save: it completes
    with pytest.raises(optuna.TrialPruned):
        ReportValidation(trial).after_epoch(trainer, {"epoch": 2, "val_acc": 0.1})


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--param", "max_lrr=0:1"], "unknown setting 'max_lrr'; the numbers a sweep can tune are max_lr, epochs"),
        (["--param", "max_lr=0.1"], "expected max_lr=LOW:HIGH or max_lr=log:LOW:HIGH"),
        (["--param", "max_lr=log:a:b"], "expected max_lr=LOW:HIGH"),
        (["--param", "epochs=1.5:3"], "with whole numbers"),
        (["--param", "max_lr=0.5:0.1"], "the low end must be below the high end"),
        (["--param", "max_lr=0.1:0.1"], "the low end must be below the high end"),
        (["--param", "weight_decay=log:0:1e-2"], "a log range needs positive bounds"),
        (["--param", "max_lr=0.1:1", "--trials", "0"], "--trials 0: run at least one trial"),
        (["--param", "max_lr=0.1:1", "--val-split", "0"], "never on the test set: pass --val-split"),
        (["--param", "max_lr=0.1:1", "--val-split", "500"], "--val-split 500: the training set has only 200 images"),
        ([], "at least one --param"),
        (
            ["--param", "label_smoothing=0:1.5"],
            "--param label_smoothing=0:1.5: its end 1.5 is not a valid value "
            "(--label-smoothing 1.5: must be in [0, 1))",
        ),
        (["--param", "max_lr=0.1:1", "--startup-trials", "-1"], "--startup-trials -1: must be a whole number >= 0"),
        (
            ["--param", "max_lr=0.1:1", "--sampler-seed", "-3"],
            "--sampler-seed -3: must be a whole number in [0, 2**32)",
        ),
        (
            ["--param", "max_lr=0.1:1", "--storage", "postgresql://me:secret@127.0.0.1:1/sweeps"],
            "--storage postgresql://me:***@127.0.0.1:1/sweeps: cannot open the study database",
        ),
        # a URL sqlalchemy cannot parse (its port is not a number) is masked too
        (
            ["--param", "max_lr=0.1:1", "--storage", "postgresql://me:secret@127.0.0.1:abc/sweeps"],
            "--storage postgresql://me:***@127.0.0.1:abc/sweeps: cannot open the study database (ValueError",
        ),
        # an '@' typed in the password: the driver takes its tail for the host, and names that host
        (
            ["--param", "max_lr=0.1:1", "--storage", "postgresql://me:top@secret@127.0.0.1:1/sweeps"],
            "--storage postgresql://me:***@127.0.0.1:1/sweeps: cannot open the study database",
        ),
        (
            [
                "--param",
                "max_lr=0.1:1",
                "--storage",
                "postgresql://me@127.0.0.1:1/sweeps?password=secret&sslmode=disable",
            ],
            "--storage postgresql://me@127.0.0.1:1/sweeps?password=***&sslmode=disable: cannot open the study database",
        ),
    ],
)
def test_bad_input_is_refused_by_name(tiny_py, tmp_path, capsys, extra, message):
    cmd = flags(tiny_py, tmp_path / "sweep", 2)
    cmd = cmd[: cmd.index("--trials")] + cmd[cmd.index("--out") :] + ["--trials", "2"]
    assert main(cmd + extra) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "secret" not in err
    assert not (tmp_path / "sweep" / "trial-0").exists()


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://me:pa:ss%40word@db.example:5432/sweeps", "postgresql://me:***@db.example:5432/sweeps"),
        ("postgresql+psycopg://me:secret@[::1]:x/sweeps", "postgresql+psycopg://me:***@[::1]:x/sweeps"),
        ("postgresql://:secret@host/db", "postgresql://:***@host/db"),
        ("mysql://me:PASSWORD=1@host/db?PassWord=secret2", "mysql://me:***@host/db?PassWord=***"),
        ("postgresql://me@host:5432/db", "postgresql://me@host:5432/db"),  # nothing to hide: shown as given
        ("sqlite:////tmp/a:b@c/study.db", "sqlite:////tmp/a:b@c/study.db"),  # a path, not a password
    ],
)
def test_a_storage_url_is_shown_without_its_password(url, shown):
    from cifarkit.tune.storage import without_password

    assert without_password(url, url) == shown
    assert without_password(f"--storage {url}: cannot open", url) == f"--storage {shown}: cannot open"


def test_a_drivers_message_is_shown_without_the_password():
    from cifarkit.tune.storage import without_password

    # the password quoted as typed or decoded, its tail after an '@' that the driver took for the host, or a
    # ?password= value; a password of under 4 characters is hidden only in the URL (else it would hide words)
    assert (
        without_password("no 'pa:ss@word' nor 'pa:ss%40word'", "postgresql://me:pa:ss%40word@db/x")
        == "no '***' nor '***'"
    )
    assert (
        without_password("cannot resolve 'secret@host'", "postgresql://me:top@secret@host/db")
        == "cannot resolve '***@host'"
    )
    assert without_password("rejected hunter22", "postgresql://me@host/db?pwd=hunter22") == "rejected ***"
    assert without_password("the server at host said no", "postgresql://me:the@host/db") == "the server at host said no"


def test_without_optuna_the_sweep_says_what_to_install(tiny_py, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError, as when not installed
    assert main(flags(tiny_py, tmp_path / "sweep", 1, "--param", "max_lr=0.1:1")) == 2
    err = capsys.readouterr().err
    assert "a sweep needs optuna: pip install 'cifarkit[sweep]'" in err and "Traceback" not in err


# ----------------------------------------------------------------------- PostgreSQL: two workers, one study


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """postgresql://cifarkit@127.0.0.1:PORT/postgres: a throwaway cluster in a temporary folder, stopped after."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        if os.environ.get("CI"):
            pytest.fail(
                "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): .ci/run installs Debian's "
                "postgresql package"
            )
        pytest.skip("no PostgreSQL server here (apt-get install postgresql; .ci/run does)")
    bin_dir = Path(binaries[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="cifarkit-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = folder / "data"
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "cifarkit", "-A", "trust"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"postgresql://cifarkit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_a_password_in_the_postgresql_url_is_nowhere_in_the_sweeps_output(postgres, tiny_py, tmp_path, capsys):
    password = "hunter2-pg-password"
    storage = postgres.replace("cifarkit@", f"cifarkit:{password}@")  # the server trusts 127.0.0.1: any password
    out = tmp_path / "sweep"
    assert main(flags(tiny_py, out, 1, "--param", "max_lr=log:1e-3:1e-2", "--storage", storage)) == 0
    printed = capsys.readouterr()
    assert "cifarkit train --config" in printed.out
    for text in (printed.out, printed.err, *(f.read_bytes().decode("latin-1") for f in out.rglob("*") if f.is_file())):
        assert password not in text
    assert (out / "best_config.json").is_file()


def test_two_workers_share_one_study_on_postgresql(postgres, tiny_py, tmp_path):
    out = tmp_path / "shared"
    cmd = [
        sys.executable,
        "-m",
        "cifarkit",
        *flags(
            tiny_py, out, 4, "--param", "max_lr=log:1e-3:1e-2", "--no-prune", "--storage", postgres, "--study", "shared"
        ),
    ]
    cmd.remove("--sampler-seed")
    cmd.remove("0")  # each worker samples on its own
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [e[-2000:] for _, e in outputs]
    shared = optuna.load_study(study_name="shared", storage=postgres)
    trials = shared.trials
    # one study, not two: together they ran 4 trials (a fifth at most, started as another ended), numbered once
    assert 4 <= len(trials) <= 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    for t in trials:
        assert Path(t.user_attrs["run_dir"], "results.json").is_file()
    for printed, _ in outputs:  # each reports the study's best when it stopped (the other may still have run one)
        number = int(printed.split("best: trial ")[1].split()[0])
        assert f"validation accuracy {trials[number].value:.2%}" in printed
