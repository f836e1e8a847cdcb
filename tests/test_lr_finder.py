"""LR range test on the tiny synthetic CIFAR-10."""

import contextlib
import io
import json
import math

import pytest
import torch

from cifarkit import TrainConfig, train
from cifarkit.cli.main import main
from cifarkit.data.batches import BatchStream
from cifarkit.data.cifar import load_cifar10
from cifarkit.errors import UserError
from cifarkit.optim.schedule import planned_schedule
from cifarkit.report import figures as report
from cifarkit.training.build import build_optimizer, prepare_model
from cifarkit.training.lr_finder import keep_group_scales, range_test, suggest

SWEEP = dict(lr_find_start=1e-4, lr_find_end=1.0, lr_find_iters=60)


def tiny(data_dir, **kw) -> TrainConfig:
    return TrainConfig(
        model="s10-small",
        batch_size=50,
        epochs=2,
        data_dir=str(data_dir),
        threads=1,
        precision="fp32",
        **{**SWEEP, **kw},
    )


def test_sweep_restores_weights_and_suggests_before_the_minimum(tiny_py):
    cfg = tiny(tiny_py)
    device = torch.device("cpu")
    data = load_cifar10(tiny_py, download=False)
    model = prepare_model(cfg, device)
    optimizer = build_optimizer(model, cfg, 1e-4, device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.set_num_threads(1)
    result = range_test(
        model,
        optimizer,
        BatchStream(data, cfg, device, "lr-find"),
        cfg,
        device,
        torch.float32,
        1e-4,
        1.0,
        60,
        progress=False,
    )
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not optimizer.state  # no Adam moments left behind
    assert result.suggestion_index < result.min_loss_index
    assert result.suggestion < result.min_loss_lr
    assert result.losses[result.suggestion_index] > result.losses[result.min_loss_index]
    assert result.lrs[0] == pytest.approx(1e-4) and all(a < b for a, b in zip(result.lrs, result.lrs[1:]))


def test_keep_group_scales_steps_each_group_at_its_multiple_and_restores_it():
    weight, bias = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([{"params": [weight], "lr": 0.1}, {"params": [bias], "lr": 0.1, "lr_scale": 8.0}])
    seen = []
    with keep_group_scales(optimizer):
        optimizer.register_step_pre_hook(lambda opt, *_: seen.append([g["lr"] for g in opt.param_groups]))
        weight.grad, bias.grad = torch.ones(2, 2), torch.ones(2)
        optimizer.step()
        assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.1]  # as the lr finder set them
    assert seen == [[0.1, pytest.approx(0.8)]]
    assert torch.allclose(weight, torch.full((2, 2), 0.9)) and torch.allclose(bias, torch.full((2,), 0.2))
    optimizer.step()  # outside, no scaling is left behind
    assert torch.allclose(bias, torch.full((2,), 0.1))


def test_sweep_keeps_the_norm_groups_lr_multiple(tiny_py, monkeypatch):
    """With --norm-lr-scale the sweep steps the BatchNorm/bias group at K x the weights' lr, as training does."""
    from cifarkit.training import lr_finder

    cfg = tiny(tiny_py, optimizer="sgd", momentum=0.9, norm_lr_scale=8.0)
    device = torch.device("cpu")
    data = load_cifar10(tiny_py, download=False)
    model = prepare_model(cfg, device)
    optimizer = build_optimizer(model, cfg, 1e-4, device)
    stepped = []
    real = lr_finder.keep_group_scales

    @contextlib.contextmanager
    def observed(opt):
        with real(opt):  # our hook runs after the scaling one
            hook = opt.register_step_pre_hook(lambda o, *_: stepped.append([g["lr"] for g in o.param_groups]))
            yield
            hook.remove()

    monkeypatch.setattr(lr_finder, "keep_group_scales", observed)
    torch.set_num_threads(1)
    result = range_test(
        model,
        optimizer,
        BatchStream(data, cfg, device, "lr-find"),
        cfg,
        device,
        torch.float32,
        1e-4,
        1.0,
        30,
        progress=False,
    )
    assert len(stepped) == len(result.lrs)
    assert all(norm == pytest.approx(8 * weights) for weights, norm in stepped)
    assert [weights for weights, _ in stepped] == pytest.approx(result.lrs)  # the suggestion is the weights' lr
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, pytest.approx(8e-4)]  # restored


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = [10 ** (-4 + 4 * i / 59) for i in range(60)]
    # flat, a steep drop around index 30, minimum at 40, then a rise that is steeper still
    losses = [2.3 - 1.5 / (1 + math.exp(-(i - 30) / 2)) if i <= 40 else 0.8 + 0.3 * (i - 40) for i in range(60)]
    result = suggest(lrs, losses, 1e-4, 1.0, 60)
    assert result.min_loss_index == 40
    assert abs(result.suggestion_index - 30) <= 1


def test_a_loss_nan_from_the_start_is_reported():
    with pytest.raises(UserError, match="from the first step.*lower --start-lr"):
        suggest([1.0, 2.0], [float("nan"), float("nan")], 1.0, 10.0, 50)


def test_a_loss_that_never_descends_is_reported():
    lrs = [10 ** (-3 + 3 * i / 49) for i in range(50)]
    with pytest.raises(UserError, match="never descended.*--start-lr"):
        suggest(lrs, [2.3 + 0.01 * i for i in range(50)], 1e-3, 1.0, 50)


def test_a_sweep_that_diverges_at_once_is_reported(tiny_py, tmp_path):
    code = main(
        [
            "lr-find",
            "--data-dir",
            str(tiny_py),
            "--model",
            "s10-small",
            "--batch-size",
            "50",
            "--threads",
            "1",
            "--start-lr",
            "1e3",
            "--end-lr",
            "1e6",
            "--num-iter",
            "30",
            "--out",
            str(tmp_path / "lf"),
            "--quiet",
        ]
    )
    assert code == 2


def test_cli_lr_find_writes_json_and_plot(tiny_py, tmp_path, capsys):
    out = tmp_path / "lf"
    code = main(
        [
            "lr-find",
            "--data-dir",
            str(tiny_py),
            "--model",
            "s10-small",
            "--batch-size",
            "50",
            "--threads",
            "1",
            "--start-lr",
            "1e-4",
            "--end-lr",
            "1",
            "--num-iter",
            "60",
            "--out",
            str(out),
            "--precision",
            "fp32",
        ]
    )  # the same curve on every CPU kind (auto is bf16 on some)
    assert code == 0
    said = capsys.readouterr().out
    assert "suggested max lr" in said and "See the graph" not in said  # torch-lr-finder's advice for its own API
    saved = json.loads((out / "lr_find.json").read_text())
    assert saved["suggestion_index"] < saved["min_loss_index"] and len(saved["lrs"]) == len(saved["losses"])
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_with_max_lr_find_uses_the_suggestion(tiny_py, tmp_path):
    run = tmp_path / "run"
    results = train(tiny(tiny_py, max_lr="find"), run, progress=False)
    suggestion = json.loads((run / "lr_find.json").read_text())["suggestion"]
    assert results["max_lr_source"] == "lr-find" and results["max_lr"] == suggestion
    assert (run / "lr_find.png").exists() and (run / "plots" / "lr_schedule.png").exists()
    assert json.loads((run / "config.json").read_text())["max_lr"] == "find"  # a rerun sweeps again


def test_schedule_plot_peaks_at_the_configured_epoch(tmp_path, monkeypatch):
    captured = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, path: captured.update(fig=fig))
    cfg = TrainConfig(epochs=24, pct_start=5 / 24)
    report.plot_schedule(planned_schedule(cfg, 0.05, 98), 98, tmp_path / "s.png")
    x, y = captured["fig"].axes[0].lines[0].get_data()
    peak_epoch = x[int(y.argmax())]  # each step is drawn at the epoch where it ends
    assert peak_epoch == pytest.approx(5.0)
    assert y.max() == pytest.approx(0.05) and y[0] == pytest.approx(5e-4)


def test_a_run_started_with_max_lr_find_resumes_with_the_found_lr(tiny_py, tmp_path, crash_at_step):
    import csv

    from cifarkit.rundir.checkpoint import load_checkpoint

    cfg = tiny(tiny_py, max_lr="find")
    train(cfg, tmp_path / "full", progress=False)

    crash_at_step(7)  # mid-epoch 2 (4 steps an epoch), after the step-6 checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "cut", progress=False, checkpoint_every=2)
    crash_at_step(None)
    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0  # was a ValueError (exit 1)

    full, cut = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    assert cut["max_lr_source"] == "lr-find" and cut["max_lr"] == full["max_lr"]
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    results = [json.loads((tmp_path / run / "results.json").read_text()) for run in ("full", "cut")]
    assert results[0]["max_lr"] == results[1]["max_lr"] and results[1]["max_lr_source"] == "lr-find"
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]
    rows = [list(csv.DictReader(io.StringIO((tmp_path / run / "metrics.csv").read_text()))) for run in ("full", "cut")]
    assert [r["train_loss"] for r in rows[0]] == [r["train_loss"] for r in rows[1]]


def test_a_schedule_the_trainer_would_refuse_is_refused_before_the_range_test(tiny_py, tmp_path, capsys):
    from cifarkit.cli.main import main

    # 200 images at batch 50, 1 epoch: 4 steps, a quarter of them puts the lr peak on the first
    argv = [
        "train",
        "--data-dir",
        str(tiny_py),
        "--model",
        "s10-small",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--max-lr",
        "find",
        "--pct-start",
        "0.25",
        "--threads",
        "1",
        "--precision",
        "fp32",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 2
    assert "--pct-start 0.25 of 4 steps" in capsys.readouterr().err
    assert not (tmp_path / "run" / "lr_find.json").exists()


def test_find_lr_from_the_api_sees_only_the_runs_training_images_and_checks_its_folder_first(
    tiny_py, tmp_path, monkeypatch
):
    from cifarkit.training import lr_finder

    seen = []

    def sweep(config, data, progress):
        seen.append(len(data.train_labels))
        return suggest_on_a_dip(config)

    def suggest_on_a_dip(config):
        lrs = [10 ** (-4 + 4 * i / 59) for i in range(60)]
        losses = [2.3 - 0.02 * i if i < 40 else 1.5 + 0.05 * (i - 40) for i in range(60)]
        return suggest(lrs, losses, 1e-4, 1.0, 60)

    monkeypatch.setattr(lr_finder, "_sweep", sweep)
    data = load_cifar10(tiny_py, download=False)  # 200 training images, as a notebook passes them: unshaped
    lr_finder.find_lr(tiny(tiny_py, limit_train=150, val_split=50), data, tmp_path / "lf", progress=False)
    assert seen == [100]  # the first 150, less the 50 held out for validation (as `cifarkit lr-find` does)
    assert (tmp_path / "lf" / "lr_find.json").is_file()

    (tmp_path / "file").write_text("x")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="a file, not a folder"):
        lr_finder.find_lr(tiny(tiny_py), data, tmp_path / "file", progress=False)
    with pytest.raises(UserError, match="holds a training run"):
        lr_finder.find_lr(tiny(tiny_py), data, tmp_path / "run", progress=False)
    with pytest.raises(UserError, match="config: a cifarkit.TrainConfig"):
        lr_finder.find_lr({"model": "s10-small"}, data, tmp_path / "other", progress=False)
    assert seen == [100]  # no sweep for the refused ones
