"""End-to-end training on the tiny synthetic CIFAR-10 (s10-small, CPU, seconds)."""

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from cifarkit import TrainConfig, train
from cifarkit.cli.main import main
from cifarkit.errors import UserError
from cifarkit.rundir.checkpoint import load_checkpoint
from cifarkit.training.resume import checkpoint_of, restore
from cifarkit.training.run_folder import reopen
from cifarkit.training.trainer import Trainer


def tiny_config(data_dir, **overrides) -> TrainConfig:
    # fp32: a tiny run's numbers must not depend on whether this CPU autocasts to bf16 (tests/conftest.py)
    values = dict(
        model="s10-small", epochs=3, batch_size=50, max_lr=5e-3, data_dir=str(data_dir), threads=1, precision="fp32"
    )
    values.update(overrides)
    return TrainConfig(**values)


def rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_training_reduces_the_loss_and_writes_the_run_folder(tiny_py, tmp_path):
    run = tmp_path / "run"
    results = train(tiny_config(tiny_py), run, progress=False)
    metrics = rows(run)
    assert [int(r["epoch"]) for r in metrics] == [1, 2, 3]
    assert float(metrics[-1]["train_loss"]) < 0.7 * float(metrics[0]["train_loss"])
    assert results["test_accuracy"] > 0.5  # chance is 0.1
    for key in (
        "preset",
        "model",
        "params",
        "epochs",
        "test_accuracy",
        "test_loss",
        "train_images_per_second",
        "wall_time_s",
        "device",
        "dtype",
        "seed",
        "torch",
        "max_lr",
        "max_lr_source",
    ):
        assert key in results, key
    assert json.loads((run / "results.json").read_text()) == results
    assert TrainConfig.from_json(run / "config.json") == tiny_config(tiny_py)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["state"]["epoch"] == 3 and ckpt["classes"][0] == "airplane"
    assert not list(run.rglob("*.tmp"))


def test_same_seed_same_run_bitwise(tiny_bin, tmp_path):
    cfg = tiny_config(tiny_bin, epochs=1)
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert rows(tmp_path / "a")[0]["train_loss"] == rows(tmp_path / "b")[0]["train_loss"]


FAST_TINY = dict(
    model="fast-small",
    optimizer="sgd",
    nesterov=True,
    momentum=0.85,
    cycle_momentum=False,
    norm_lr_scale=64.0,
    max_lr=0.2,
    label_smoothing=0.2,
    pad_crop=2,
    cutout_size=0,
    eval_every=0,
    tta="flip-translate",
)


FAST_TINY_AVERAGED = {**FAST_TINY, "lookahead_decay": 0.7, "lookahead_every": 3, "alternate_flip": True}


# bf16 autocast on every CPU kind (emulated, with a warning, where the CPU has no native bf16): its resume is as
# exact as fp32's, whatever the rounding.
BF16 = {"precision": "bf16"}
# Muon on the filters, its orthogonalisation in bf16 (cifarkit.optim.muon): momentum buffers resume exactly too.
MUON_BF16 = {**FAST_TINY, "optimizer": "muon", "muon_lr": 0.1, **BF16}
# InfoBatch pruning (cifarkit.data.batches): the images' losses and the epoch's left-out set resume exactly too.
# 3 epochs: the crash falls in the second, the one that prunes.
PRUNED = {**FAST_TINY, "optimizer": "muon", "muon_lr": 0.1, "prune_easy": 0.5, "epochs": 3}
# progressive resizing: the crash falls in the second small-window epoch, the third trains at full size; the
# stem's bias is frozen from the second epoch on, so the resumed process must freeze it too
SMALL_CROP = {**FAST_TINY, "small_crop": 24, "small_crop_epochs": 2, "epochs": 3, "stem_bias_epochs": 1}


@pytest.mark.parametrize(
    "overrides",
    [{}, {"ema_decay": 0.9}, FAST_TINY, FAST_TINY_AVERAGED, BF16, MUON_BF16, PRUNED, SMALL_CROP],
    ids=[
        "s10-small",
        "ema",
        "fast",
        "lookahead-alternate-flip",
        "bf16-autocast",
        "muon-bf16",
        "muon-pruned",
        "small-crop-stem-frozen",
    ],
)
@pytest.mark.filterwarnings("ignore:--precision bf16")
def test_resume_after_a_crash_matches_the_uninterrupted_run(tiny_py, tmp_path, crash_at_step, overrides):
    cfg = tiny_config(tiny_py, **{"epochs": 2, **overrides})
    ema_decay = cfg.ema_decay
    results = train(cfg, tmp_path / "full", progress=False)
    if cfg.prune_easy:  # the middle epoch trained fewer images than the others
        assert results["train_images_seen"] < cfg.epochs * results["n_train"]

    crash_at_step(7)  # mid-epoch 2 (4 steps an epoch), after the step-6 checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "cut", progress=False, checkpoint_every=2)
    assert load_checkpoint(tmp_path / "cut")["state"]["step_in_epoch"] == 2
    crash_at_step(None)
    train(TrainConfig(), tmp_path / "cut", resume=True, progress=False)

    full, cut = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    if ema_decay:
        assert all(torch.equal(full["training_weights"][k], cut["training_weights"][k]) for k in full["model"])
    timing = ("images_per_s", "seconds")

    def strip(rs):
        return [{k: v for k, v in r.items() if k not in timing} for r in rs]

    assert strip(rows(tmp_path / "full")) == strip(rows(tmp_path / "cut"))


def test_the_stem_bias_trains_for_its_epochs_then_nothing_before_the_first_conv_does(tiny_py, tmp_path):
    trainer = Trainer(
        tiny_config(tiny_py, **{**FAST_TINY, "epochs": 3, "stem_bias_epochs": 1}), tmp_path / "run", progress=False
    )
    biases, first_conv_input_trains = [trainer.model.stem.bias.detach().clone()], []

    class Record:
        def after_sync(self, trainer, loss, lrs):
            pass

        def after_epoch(self, trainer, row):
            biases.append(trainer.model.stem.bias.detach().clone())

        def at_end(self, trainer, results):
            pass

    trainer.observers.append(Record())
    first_conv = trainer.model.group1[0]
    first_conv.register_forward_hook(
        lambda module, inputs, output: (
            first_conv_input_trains.append((trainer.state.epoch, inputs[0].requires_grad)) if module.training else None
        )
    )
    trainer.fit()
    assert not torch.equal(biases[0], biases[1])  # epoch 1 trains it
    assert torch.equal(biases[1], biases[2]) and torch.equal(biases[2], biases[3])
    assert {epoch: trains for epoch, trains in first_conv_input_trains} == {0: True, 1: False, 2: False}
    assert trainer.model.stem.bias.grad is None

    with pytest.raises(UserError, match="--stem-bias-epochs 1: model s10-small has no whitening stem"):
        train(tiny_config(tiny_py, stem_bias_epochs=1), tmp_path / "s10", progress=False)


@pytest.mark.filterwarnings("ignore:--precision bf16")
def test_bf16_autocast_trains_and_says_so(tiny_py, tmp_path):
    results = train(tiny_config(tiny_py, epochs=2, **BF16), tmp_path / "run", progress=False)
    assert results["dtype"] == "bfloat16"
    losses = [float(r["train_loss"]) for r in rows(tmp_path / "run")]
    assert losses[1] < 0.5 * losses[0]  # measured (AVX512-BF16 EPYC): 1.79 -> 0.37; rounding cannot close that gap


def test_a_nan_loss_stops_training_and_names_the_step(tiny_py, tmp_path, monkeypatch):
    original = Trainer.train_step

    def poisoned(self, images, *args):
        if self.state.epoch == 1:
            images = images * float("nan")
        return original(self, images, *args)

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    with pytest.raises(UserError, match=r"loss became nan at epoch 2, step \d+ \(lr .*last good checkpoint"):
        train(tiny_config(tiny_py), tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run")["state"]["epoch"] == 1
    ended = json.loads((tmp_path / "run" / "ended.json").read_text())  # the folder says why it stopped
    assert ended["reason"] == "diverged" and "loss became nan at epoch 2" in ended["message"]
    with monkeypatch.context() as healed:  # continued by hand (say after a fix): no longer ended
        healed.setattr(Trainer, "train_step", original)
        train(None, tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "ended.json").exists()
    monkeypatch.setattr(Trainer, "train_step", lambda self, images, *args: original(self, images * float("nan"), *args))
    with pytest.raises(UserError, match=r"loss became nan at epoch 1, step 1 .*No checkpoint was written yet"):
        train(tiny_config(tiny_py), tmp_path / "first", progress=False)  # none to point to


def test_cli_train_refuses_to_clobber_a_run(tiny_py, tmp_path, capsys):
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
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    assert main(argv) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    assert "already finished" in capsys.readouterr().err


@pytest.mark.parametrize(
    "settings, key, said",
    [
        ({"ema_decay": 0.9}, "training_weights", "saved without a weight average, but this run has ema_decay 0.9"),
        (
            {"lookahead_decay": 0.7},
            "lookahead",
            "saved without Lookahead's slow weights, but this run has lookahead_decay 0.7",
        ),
        ({"prune_easy": 0.5}, "pruning", "saved without the losses --prune-easy needs"),
    ],
)
def test_a_checkpoint_without_what_the_run_keeps_beside_its_weights_is_refused(tiny_py, tmp_path, settings, key, said):
    trainer = Trainer(tiny_config(tiny_py, **settings), tmp_path / "run", progress=False)
    checkpoint = checkpoint_of(trainer)
    del checkpoint[key]
    with pytest.raises(UserError, match=re.escape(f"{trainer.run.checkpoint}: {said}")):
        restore(trainer, checkpoint)


def test_ema_is_the_decayed_average_of_the_weights_and_is_what_gets_evaluated(tiny_py, tmp_path):
    trainer = Trainer(tiny_config(tiny_py, ema_decay=0.9), tmp_path / "run", progress=False)
    order = trainer.images_of_epoch(0)
    snapshots = []
    for step in range(3):
        trainer.train_step(*trainer.global_batch(order, 0, step))
        snapshots.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    expected = {
        k: 0.9 * (0.9 * snapshots[0][k] + 0.1 * snapshots[1][k]) + 0.1 * snapshots[2][k]
        for k, v in snapshots[0].items()
        if v.is_floating_point()
    }  # the first update copies
    averaged = trainer.ema.module.state_dict()
    for k, v in expected.items():
        assert torch.allclose(averaged[k], v, atol=1e-6), k
    assert trainer.eval_model is trainer.ema.module
    assert checkpoint_of(trainer)["model"].keys() == checkpoint_of(trainer)["training_weights"].keys()


def test_lookahead_runs_inside_training_and_the_model_ends_as_its_slow_weights(tiny_py, tmp_path):
    trainer = Trainer(
        tiny_config(tiny_py, epochs=1, lookahead_decay=0.7, lookahead_every=2), tmp_path / "run", progress=False
    )
    assert trainer.steps_per_epoch == 4
    seen = []
    original = trainer.lookahead.after_step
    trainer.lookahead.after_step = lambda step: (seen.append(step), original(step))
    trainer.fit()
    assert seen == [1, 2, 3, 4]  # every optimiser step, numbered through the run
    weights = trainer.model.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in trainer.lookahead.slow.items())
    assert checkpoint_of(trainer)["lookahead"].keys() == trainer.lookahead.slow.keys()


def test_alternate_flip_mirrors_an_image_in_consecutive_epochs(tiny_py, tmp_path):
    trainer = Trainer(
        tiny_config(tiny_py, alternate_flip=True, pad_crop=0, cutout_size=0), tmp_path / "run", progress=False
    )
    order = trainer.images_of_epoch(0)
    (x0, y0), (x1, y1) = trainer.global_batch(order, 0, 0), trainer.global_batch(order, 1, 0)
    assert torch.equal(y0, y1) and torch.equal(x1, x0.flip(3))


def test_norm_lr_scale_puts_batchnorm_and_biases_in_a_scaled_group(tiny_py, tmp_path):
    cfg = tiny_config(
        tiny_py,
        model="fast-small",
        optimizer="sgd",
        nesterov=True,
        max_lr=0.5,
        weight_decay=1e-3,
        norm_lr_scale=64.0,
        cycle_momentum=False,
        epochs=1,
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    weights, norm = trainer.optimizer.param_groups
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    assert len(weights["params"]) + len(norm["params"]) == len(trainable)  # frozen stem/BN scales left out
    assert all(p.ndim > 1 for p in weights["params"]) and all(p.ndim == 1 for p in norm["params"])
    assert norm["weight_decay"] == pytest.approx(1e-3 / 64) and weights["weight_decay"] == 1e-3
    for _ in range(3):  # the schedule keeps the ratio at every step
        assert norm["lr"] == pytest.approx(64 * weights["lr"])
        trainer.optimizer.step()  # no gradients: leaves the weights, keeps the step order torch expects
        trainer.scheduler.step()
    one = Trainer(tiny_config(tiny_py, epochs=1), tmp_path / "one", progress=False)
    assert len(one.optimizer.param_groups) == 1  # the S10 recipe: one group, as its checkpoints have


def test_eval_every_zero_tests_only_after_the_last_epoch(tiny_py, tmp_path):
    results = train(tiny_config(tiny_py, eval_every=0), tmp_path / "run", progress=False)
    history = rows(tmp_path / "run")
    assert [r["test_acc"] for r in history[:-1]] == ["nan", "nan"]
    assert float(history[-1]["test_acc"]) == results["test_accuracy"] > 0.5
    assert (tmp_path / "run" / "plots" / "curves.png").exists()
    html = (tmp_path / "run" / "report.html").read_text()
    assert re.search(r"<td[^>]*>-</td>", html) and not re.search(r"<td[^>]*>nan</td>", html)  # any cell markup


def test_compile_trains_through_the_compiled_model_and_saves_the_plain_one(tiny_py, tmp_path):
    eager = Trainer(tiny_config(tiny_py), tmp_path / "eager", progress=False)
    compiled = Trainer(tiny_config(tiny_py, compile=True), tmp_path / "compiled", progress=False)
    assert compiled.train_model is not compiled.model and compiled.train_model._orig_mod is compiled.model
    batch = eager.global_batch(eager.images_of_epoch(0), 0, 0)
    before = torch.cat([p.detach().flatten() for p in eager.model.parameters()])
    # one step from the same weights: the same loss and update, up to inductor's reordering of float sums
    assert compiled.train_step(*batch)[0].item() == pytest.approx(eager.train_step(*batch)[0].item(), rel=1e-5)
    moved = [torch.cat([p.detach().flatten() for p in t.model.parameters()]) - before for t in (compiled, eager)]
    assert torch.cosine_similarity(*moved, dim=0) > 0.99
    results = train(tiny_config(tiny_py, epochs=1, compile=True), tmp_path / "run", progress=False)
    saved = load_checkpoint(tmp_path / "run")
    assert saved["config"]["compile"] and not any(k.startswith("_orig_mod") for k in saved["model"])
    assert results["test_accuracy"] > 0.2  # chance is 0.1
    # compiling is where a run computes, not what: a resumed run takes the caller's choice, else keeps the run's
    assert reopen(tmp_path / "run", TrainConfig(compile=None))[1].compile is True
    assert reopen(tmp_path / "run", TrainConfig(compile=False))[1].compile is False


def test_train_gives_the_caller_back_its_threads_and_random_stream(tiny_py, tmp_path):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        train(tiny_config(tiny_py, epochs=1, threads=1, seed=7), tmp_path / "run", progress=False)
        assert torch.get_num_threads() == 2
        assert torch.equal(torch.rand(3), expected)  # not the stream that seed 7 leaves behind
    finally:
        torch.set_num_threads(threads)


def test_the_api_refuses_a_config_that_is_not_one_and_a_bad_checkpoint_interval(tiny_py, tmp_path):
    with pytest.raises(UserError, match=r"config: a cifarkit.TrainConfig \(e.g. preset_config.*not str"):
        train("s10", tmp_path / "a")
    with pytest.raises(UserError, match="--checkpoint-every -1: must be a whole number"):
        train(tiny_config(tiny_py), tmp_path / "b", checkpoint_every=-1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any folder


def test_the_command_line_and_the_api_refuse_a_bad_checkpoint_interval_in_the_same_words(tiny_py, tmp_path, capsys):
    with pytest.raises(UserError) as api:
        train(tiny_config(tiny_py), tmp_path / "a", checkpoint_every=-2)
    assert main(["train", "--data-dir", str(tiny_py), "--out", str(tmp_path / "b"), "--checkpoint-every", "-2"]) == 2
    assert f"error: {api.value}" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_settings_a_resume_may_change_are_declared_once():
    from cifarkit.cli import main as cli
    from cifarkit.config.train_config import MACHINE_SETTINGS, SETTINGS
    from cifarkit.training import run
    from cifarkit.tune import sweep

    assert set(MACHINE_SETTINGS) == {name for name, s in SETTINGS.items() if s.machine} >= {"data_dir", "threads"}
    assert not any(
        hasattr(module, "RESUME_FLAGS") or "MACHINE_SETTINGS =" in Path(module.__file__).read_text()
        for module in (cli, run, sweep)
    )


def test_resume_with_no_config_keeps_the_runs_settings(tiny_py, tmp_path, crash_at_step):
    run = tmp_path / "run"
    crash_at_step(6)  # in epoch 2 (4 steps an epoch), after epoch 1's checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_config(tiny_py, epochs=2), run, progress=False)
    crash_at_step(None)
    train(None, run, resume=True, progress=False)
    assert [int(r["epoch"]) for r in rows(run)] == [1, 2]


def test_a_run_never_joins_a_folder_of_other_files_and_a_failed_start_leaves_no_folder(tiny_py, tmp_path):
    with pytest.raises(UserError, match=r"--out .*py: a folder of other files \(cifar-10-batches-py\), not a run"):
        train(tiny_config(tiny_py), tiny_py, progress=False, overwrite=True)  # the data folder itself
    assert sorted(p.name for p in tiny_py.iterdir()) == ["cifar-10-batches-py"]  # no lock file left there either
    with pytest.raises(UserError, match="--val-split"):  # fails after the folder was made and locked
        train(tiny_config(tiny_py, val_split=10**6), tmp_path / "new" / "run", progress=False)
    assert not (tmp_path / "new" / "run").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made, empty: used, and kept if the run fails
    with pytest.raises(UserError, match="--val-split"):
        train(tiny_config(tiny_py, val_split=10**6), tmp_path / "mine", progress=False)
    assert (tmp_path / "mine").is_dir()
