import re

import pytest

from cifarkit.cli.main import main
from cifarkit.config.train_config import TrainConfig, preset_config
from cifarkit.errors import UserError
from cifarkit.models.nets import build_model, count_parameters


def test_s10_preset_is_the_s10_recipe():
    cfg = preset_config("s10")
    assert (cfg.model, cfg.optimizer, cfg.weight_decay, cfg.batch_size, cfg.epochs) == ("s10", "adam", 1e-4, 512, 24)
    assert (cfg.pct_start, cfg.div_factor, cfg.final_div_factor, cfg.three_phase, cfg.anneal_strategy) == (
        5 / 24,
        100,
        100,
        False,
        "linear",
    )
    assert (cfg.pad_crop, cfg.flip, cfg.cutout_size, cfg.cutout_prob) == (4, True, 8, 0.5)
    assert cfg.max_lr == 4.51e-2


def test_json_round_trip(tmp_path):
    cfg = preset_config("s10", epochs=3, seed=5)
    path = tmp_path / "c.json"
    path.write_text(__import__("json").dumps(cfg.to_dict()))
    assert TrainConfig.from_json(path) == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": -1}, "--epochs -1: must be a whole number >= 1"),
        ({"batch_size": 0}, "--batch-size 0"),
        ({"max_lr": -0.1}, "--max-lr"),
        ({"max_lr": "soon"}, "--max-lr 'soon'"),
        ({"pct_start": 1.2}, "--pct-start 1.2: the peak must fall strictly inside"),
        ({"pct_start": 0.6, "three_phase": True}, "--pct-start 0.6: with --three-phase the lr rises and falls back"),
        ({"device": "tpu"}, "--device 'tpu': unknown device"),
        ({"model": "vgg"}, "--model 'vgg': unknown model"),
        ({"limit_train": 0}, "--limit-train 0"),
        ({"ema_decay": 1.5}, "--ema-decay 1.5: must be in [0, 1)"),
        ({"tta": "rotate"}, "--tta 'rotate': choose one of none, flip, flip-translate"),
        ({"norm_lr_scale": 0}, "--norm-lr-scale 0: must be a positive number"),
        ({"eval_every": -1}, "--eval-every -1: must be a whole number of epochs >= 0"),
        ({"lookahead_decay": 1.0}, "--lookahead-decay 1.0: must be in [0, 1)"),
        ({"lookahead_every": 0}, "--lookahead-every 0: must be a whole number of steps >= 1"),
        ({"pad_crop": 17}, "--pad-crop 17: must be a whole number of pixels in [0, 16]"),
        (
            {"dataset": "folder", "image_size": 16, "pad_crop": 16},
            "--pad-crop 16: must be a whole number of pixels in [0, 15]",
        ),  # reflect padding needs pad < side
        (
            {"dataset": "folder", "image_size": 16, "cutout_size": 20},
            "--cutout-size 20: must be a whole number of pixels in [0, 16]",
        ),
        ({"image_size": 16, "pad_crop": 16}, "--image-size 16: CIFAR images are 32x32"),  # the cause, not its effect
        ({"div_factor": 0}, "--div-factor 0: must be > 0"),
        ({"lr_find_start": 0}, "--start-lr 0: must be a positive number"),
        ({"lr_find_end": 0.01}, "--end-lr 0.01: must be a number above --start-lr (0.03)"),
        ({"lr_find_iters": 5}, "--num-iter 5: must be a whole number of steps >= 20"),
        ({"base_momentum": 1.0}, "--base-momentum 1.0: must be in [0, 1)"),
        ({"anneal_strategy": "step"}, "--anneal-strategy 'step': choose one of linear, cos"),
        ({"brightness": -0.1}, "--brightness -0.1: must be in [0, 2]"),
        ({"contrast": 1.0}, "--contrast 1.0: must be in [0, 1)"),
        ({"tta_below": 0.0}, "--tta-below 0.0: must be a probability in (0, 1]"),
        ({"small_crop": 32}, "--small-crop 32: must be 0 (off) or a whole number of pixels in [8, 32) (--image-size)"),
        ({"small_crop_epochs": 24}, "--small-crop-epochs 24: must be a whole number of epochs below --epochs (24)"),
        ({"small_crop": 24}, "--small-crop-epochs 0: goes with --small-crop PX: both 0 (off) or both set"),
        ({"small_crop_epochs": 3}, "--small-crop-epochs 3: goes with --small-crop PX: both 0 (off) or both set"),
        ({"optimizer": "muon", "max_lr": "find"}, "--max-lr 'find': the range test sweeps one lr"),
        ({"flip": "no"}, "setting 'flip' must be true or false, not \"no\""),  # types: checked as the config is built
    ],
)
def test_invalid_values_are_refused_with_the_flag_named(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        preset_config("s10", **overrides)


def test_a_presets_small_windows_that_do_not_fit_the_users_epochs_or_size_say_where_they_come_from():
    off = "give your own, or --small-crop 0 --small-crop-epochs 0 for full size throughout"
    for overrides, message in (
        # the user's own --small-crop asks for windows that one epoch has no room for: the preset's epochs stay
        (
            {"epochs": 1, "small_crop": 24},
            "--small-crop-epochs 6: must be a whole number of epochs below --epochs "
            "(1): the last ones train at full size (one epoch: --small-crop 0 "
            f"--small-crop-epochs 0); the fast-cpu preset sets --small-crop-epochs 6: "
            f"{off}",
        ),
        (
            {"dataset": "folder", "image_size": 24},
            "--small-crop 24: must be 0 (off) or a whole number of pixels in "
            f"[8, 24) (--image-size); the fast-cpu preset sets --small-crop 24: {off}",
        ),
        (
            {"small_crop_epochs": 0},
            "--small-crop-epochs 0: goes with --small-crop PX: both 0 (off) or both set; the "
            f"fast-cpu preset sets --small-crop 24: {off}",
        ),
    ):
        with pytest.raises(UserError, match=re.escape(message)):
            preset_config("fast-cpu", **overrides)
    with pytest.raises(UserError) as raised:  # the user's own value: nothing about the preset, the value that fits
        preset_config("fast-cpu", epochs=4, small_crop_epochs=5)
    assert "preset" not in str(
        raised.value
    ) and "below --epochs (4): the last ones train at full size (at most 3)" in str(raised.value)
    preset_config("fast-cpu", epochs=4, small_crop_epochs=2)
    preset_config("fast-cpu", epochs=4, small_crop=0, small_crop_epochs=0)


def test_unknown_preset_and_unknown_keys():
    with pytest.raises(
        UserError, match="unknown preset; choose one of s10, s10-best, fast-v1, fast, fast-cpu-v1, fast-cpu"
    ):
        preset_config("s11")
    with pytest.raises(UserError, match="unknown setting"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "-2"], "--epochs -2"),
        (["train", "--batch-size", "0"], "--batch-size 0"),
        (["train", "--preset", "nope"], "unknown preset"),
        (["train", "--device", "quantum"], "unknown device"),
        (["train", "--device", "cuda"], "no CUDA GPU"),
    ],
)
def test_cli_refuses_bad_flags_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code = main(argv + ["--data-dir", str(tmp_path / "absent"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_s10_best_changes_the_recipe_not_the_network_or_the_length():
    best, s10 = preset_config("s10-best"), preset_config("s10")
    assert (best.epochs, best.batch_size) == (s10.epochs, s10.batch_size)
    # the same network and parameters; only the logits are scaled (x0.125, no parameter)
    assert count_parameters(build_model(best.model)) == count_parameters(build_model(s10.model)) == 6_573_120
    assert build_model(best.model).logit_scale == 0.125
    assert (best.optimizer, best.nesterov, best.cycle_momentum) == ("sgd", True, False)
    assert best.label_smoothing > 0 and 0.99 <= best.ema_decay < 1 and best.tta == "flip"


def test_fast_is_the_whitened_net_with_muon_on_its_filters_and_selective_tta():
    fast, before = preset_config("fast"), preset_config("fast-v1")
    assert fast.model == "fast" and fast.optimizer == "muon" and fast.epochs < before.epochs
    assert fast.muon_lr > 0 and 0 < fast.muon_momentum < fast.momentum and fast.nesterov
    assert fast.tta == "flip-translate" and fast.tta_below < 1 and fast.eval_every == 0
    assert (fast.pad_crop, fast.cutout_size, fast.alternate_flip) == (2, 0, True)


def test_fast_cpu_is_fast_on_the_narrow_net_with_small_windows_first():
    cpu, before, fast = preset_config("fast-cpu"), preset_config("fast-cpu-v1"), preset_config("fast")
    assert cpu.model == before.model == "fast-small" and cpu.epochs > before.epochs
    assert 0 < cpu.small_crop < cpu.image_size and 0 < cpu.small_crop_epochs < cpu.epochs and fast.small_crop == 0
    assert cpu.muon_lr < fast.muon_lr and cpu.stem_bias_epochs == 3 and fast.stem_bias_epochs == 1
    own = ("preset", "model", "epochs", "small_crop", "small_crop_epochs", "muon_lr", "stem_bias_epochs")
    assert {k: v for k, v in cpu.to_dict().items() if k not in own} == {
        k: v for k, v in fast.to_dict().items() if k not in own
    }


@pytest.mark.parametrize("name, model", [("fast-v1", "fast"), ("fast-cpu-v1", "fast-small")])
def test_fast_presets_before_muon_are_the_whitened_net_tested_once_with_tta(name, model):
    cfg = preset_config(name)
    assert cfg.model == model and cfg.optimizer == "sgd" and cfg.nesterov and cfg.batch_size == 1024
    assert cfg.norm_lr_scale > 1 and cfg.eval_every == 0 and cfg.tta == "flip-translate"
    assert (cfg.pad_crop, cfg.cutout_size) == (2, 0)
    assert cfg.lookahead_decay == pytest.approx(0.95**5) and cfg.lookahead_every == 5 and cfg.alternate_flip


def test_every_preset_validates_and_round_trips_through_json(tmp_path):
    from cifarkit.config.train_config import PRESETS

    for name in PRESETS:
        cfg = preset_config(name)
        path = tmp_path / f"{name}.json"
        path.write_text(__import__("json").dumps(cfg.to_dict()))
        assert TrainConfig.from_json(path) == cfg


def test_cli_flags_reach_the_config_over_the_preset():
    from cifarkit.cli.main import build_parser, config_from_args

    args = build_parser().parse_args(
        [
            "train",
            "--preset",
            "fast",
            "--norm-lr-scale",
            "8",
            "--eval-every",
            "2",
            "--epochs",
            "3",
            "--lookahead-decay",
            "0.5",
            "--lookahead-every",
            "7",
            "--alternate-flip",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.preset, cfg.model, cfg.norm_lr_scale, cfg.eval_every, cfg.epochs) == ("fast", "fast", 8.0, 2, 3)
    assert (cfg.lookahead_decay, cfg.lookahead_every, cfg.alternate_flip) == (0.5, 7, True)

    # a preset's switch can be turned off, and an absent flag keeps the preset's value
    assert (
        config_from_args(build_parser().parse_args(["train", "--preset", "fast", "--no-alternate-flip"])).alternate_flip
        is False
    )
    assert config_from_args(build_parser().parse_args(["train", "--preset", "fast"])).alternate_flip is True
    assert config_from_args(build_parser().parse_args(["train", "--preset", "s10"])).alternate_flip is False


@pytest.mark.parametrize(
    "flag, field",
    [
        ("nesterov", "nesterov"),
        ("alternate-flip", "alternate_flip"),
        ("channels-last", "channels_last"),
        ("sync-bn", "sync_bn"),
    ],
)
def test_every_switch_has_an_off_flag_that_overrides_the_preset(flag, field):
    from cifarkit.cli.main import build_parser, config_from_args

    def parsed(*argv):
        return getattr(config_from_args(build_parser().parse_args(["train", "--preset", "fast", *argv])), field)

    assert parsed(f"--{flag}") is True
    assert parsed(f"--no-{flag}") is False
    assert parsed() == getattr(preset_config("fast"), field)


def test_config_and_preset_together_are_refused(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(__import__("json").dumps(TrainConfig().to_dict()))
    assert main(["train", "--config", str(path), "--preset", "fast"]) == 2
    assert "give one of them" in capsys.readouterr().err


def test_resume_refuses_flags_that_would_change_the_run_and_accepts_machine_ones(trained_run, capsys):
    root, _ = trained_run
    run = root / "run"
    assert main(["train", "--resume", str(run), "--epochs", "50", "--max-lr", "0.1", "--no-nesterov"]) == 2
    err = capsys.readouterr().err
    # the flags in their declaration order
    assert "with --epochs --max-lr --no-nesterov:" in err and "keeps the settings it was started with" in err
    assert main(["train", "--resume", str(run), "--out", str(root / "elsewhere")]) == 2
    assert "--out" in capsys.readouterr().err
    # where the data is and the thread count may differ between a run's processes: past the check (this run is finished)
    assert (
        main(
            [
                "train",
                "--resume",
                str(run),
                "--data-dir",
                str(root / "data"),
                "--threads",
                "1",
                "--quiet",
                "--checkpoint-every",
                "3",
                "--dist-timeout",
                "60",
            ]
        )
        == 2
    )
    assert "already finished" in capsys.readouterr().err


# --- the CLI is generated from TrainConfig's declarations -------------------------------------------------------


def _train_parser():
    from cifarkit.cli.main import build_parser

    parser = build_parser()
    return parser, parser.commands


def _flags(command: str) -> set[str]:
    _, commands = _train_parser()
    # argparse has no public list of a parser's flags: its actions are where they are
    return {flag for action in commands[command]._actions for flag in action.option_strings}


def test_every_setting_has_its_flag_or_is_declared_without_one():
    from cifarkit.config.train_config import SETTINGS, TrainConfig

    fields = [f.name for f in __import__("dataclasses").fields(TrainConfig)]
    assert list(SETTINGS) == fields  # every field is declared with setting(), in order
    train, lr_find = _flags("train"), _flags("lr-find")
    for name, s in SETTINGS.items():
        assert s.help and s.group and s.flag.startswith("--"), name
        if s.cli:
            assert s.flag in train, f"{name}: {s.flag} missing from `cifarkit train`"
            assert (s.flag in lr_find) is not s.train_only, f"{name}: {s.flag} on lr-find"
        else:
            assert name == "preset"  # the one setting without a flag of its own (--preset picks the recipe)
    flags = [s.flag for s in SETTINGS.values()]
    assert len(flags) == len(set(flags))
    # the flags users know keep their names
    for flag in (
        "--start-lr",
        "--end-lr",
        "--num-iter",
        "--max-lr",
        "--limit-train",
        "--limit-test",
        "--data-dir",
        "--no-channels-last",
        "--alternate-flip",
        "--no-alternate-flip",
        "--nesterov",
        "--no-nesterov",
        "--sync-bn",
        "--no-sync-bn",
        "--pct-start",
        "--div-factor",
        "--final-div-factor",
        "--pad-crop",
        "--cutout-size",
        "--cutout-prob",
        "--momentum",
        "--eval-batch-size",
        "--preset",
        "--config",
    ):
        assert flag in train, flag
    assert {"--start-lr", "--end-lr", "--num-iter"} <= lr_find and not {"--max-lr", "--sync-bn"} & lr_find


def test_every_switch_has_an_on_and_an_off_flag():
    from cifarkit.config.train_config import SETTINGS

    train = _flags("train")
    switches = [s for s in SETTINGS.values() if s.type is bool]
    assert {s.name for s in switches} >= {
        "nesterov",
        "three_phase",
        "cycle_momentum",
        "flip",
        "alternate_flip",
        "channels_last",
        "sync_bn",
    }
    for s in switches:
        assert s.flag in train and f"--no-{s.flag[2:]}" in train, s.name


def _other_value(s, current):
    """A valid value of setting `s` other than `current`, as argv and as the config's value."""
    if s.type is bool:
        return [f"--no-{s.flag[2:]}" if current else s.flag], not current
    if s.type is list:  # --exclude FILE: the file's entries
        import tempfile
        from pathlib import Path

        path = Path(tempfile.mkdtemp()) / "exclude.txt"
        path.write_text("3\n1  # why\n")
        return [s.flag, str(path)], ["3", "1"]
    if s.parse is not None:  # --max-lr
        return [s.flag, "find"], "find"
    if s.choices:
        value = next(c for c in s.choices if c != current)
    elif s.type is str:
        value = {"model": "s10-small", "device": "cpu"}.get(s.name, "somewhere")
    elif s.type is int:
        value = 1 if current is None else current + 1
    else:
        value = current / 2 if current else 0.1
    return [s.flag, str(value)], value


def test_each_flag_sets_its_setting():
    from cifarkit.cli.main import config_from_args
    from cifarkit.config.train_config import SETTINGS

    parser, _ = _train_parser()
    s10 = preset_config("s10")
    for s in SETTINGS.values():
        if not s.cli:
            continue
        argv, expected = _other_value(s, getattr(s10, s.name))
        cfg = config_from_args(parser.parse_args(["train", *argv]))
        assert getattr(cfg, s.name) == expected and type(getattr(cfg, s.name)) is type(expected), (argv, s.name)
        # ... and nothing else
        assert {k: v for k, v in cfg.to_dict().items() if k != s.name} == {
            k: v for k, v in s10.to_dict().items() if k != s.name
        }, argv


def test_config_file_is_the_defaults_and_flags_override_it(tmp_path):
    import json

    from cifarkit.cli.flags import parse_args
    from cifarkit.cli.main import build_parser, config_from_args

    path = tmp_path / "config.json"
    path.write_text(json.dumps(preset_config("fast", epochs=3, seed=4).to_dict()))
    args = parse_args(build_parser(), ["train", "--config", str(path), "--epochs", "5", "--no-alternate-flip"])
    assert (args.epochs, args.seed, args.model, args.alternate_flip) == (5, 4, "fast", False)  # defaults: the file
    cfg = config_from_args(args)
    assert (cfg.preset, cfg.model, cfg.epochs, cfg.seed, cfg.alternate_flip) == ("fast", "fast", 5, 4, False)
    assert cfg == preset_config("fast", epochs=5, seed=4, alternate_flip=False)
    # without flags the file is repeated exactly
    assert config_from_args(parse_args(build_parser(), ["train", "--config", str(path)])) == TrainConfig.from_json(path)


def test_config_file_with_an_unknown_setting_is_refused_by_file_and_key(tmp_path, capsys):
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TrainConfig().to_dict(), "epoch": 3}))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: unknown setting(s) epoch" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_help_shows_the_presets_values_from_presets(monkeypatch):
    from cifarkit.config.train_config import PRESETS

    monkeypatch.setitem(PRESETS, "zz-probe", {"epochs": 77, "alternate_flip": True})
    _, commands = _train_parser()
    helps = {a.dest: a.help for a in commands["train"]._actions}  # no public list of a parser's actions
    assert "zz-probe: 77" in helps["epochs"] and "fast-v1: 12" in helps["epochs"]
    assert "s10, s10-best: 24" in helps["epochs"]
    assert "fast-v1, " in helps["alternate_flip"] and "zz-probe: on" in helps["alternate_flip"]
    assert "(default 0.5)" in helps["cutout_prob"]  # the same in every preset


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--pct-start", "2"], "--pct-start 2.0: the peak must fall strictly inside"),
        (["--start-lr", "1", "--end-lr", "0.5"], "--end-lr 0.5: must be a number above --start-lr (1.0)"),
        (["--num-iter", "3"], "--num-iter 3"),
        (["--cutout-prob", "1.5"], "--cutout-prob 1.5"),
    ],
)
def test_validation_names_the_real_flag(argv, message, capsys, tmp_path):
    assert main(["train", *argv, "--data-dir", str(tmp_path / "absent"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert message.split()[0] in _flags("train")


def test_a_cli_training_run_validates_its_config_once(monkeypatch, tiny_py, tmp_path):
    import inspect

    calls = []
    original = TrainConfig.validate

    def counted(self):  # the run's own config; a checkpoint read back (the ending's GradCAM) is checked as a file's
        if not inspect.stack()[1].filename.endswith("checkpoint.py"):
            calls.append(1)
        return original(self)

    monkeypatch.setattr(TrainConfig, "validate", counted)
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
                "--batch-size",
                "100",
                "--precision",
                "fp32",
                "--threads",
                "1",
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ]
        )
        == 0
    )
    assert len(calls) == 1


def test_the_api_takes_a_path_for_data_dir_and_names_a_numpy_number():
    from pathlib import Path

    import numpy as np

    assert preset_config("s10", data_dir=Path("~/cifar10")).data_dir == "~/cifar10"  # kept as config.json's string
    assert TrainConfig(data_dir=Path("/data")).validate().to_dict()["data_dir"] == "/data"
    with pytest.raises(UserError, match=r"setting 'epochs' must be a whole number, not .*3.* \(int64\)"):
        preset_config("s10", epochs=np.int64(3))


# A shorter (or longer) run of a preset: what the preset ties to its length follows --epochs / --limit-train ----------


def test_a_quick_trial_of_fast_moves_the_warm_up_to_the_smallest_share_that_peaks_after_the_first_step(capsys):
    from cifarkit.cli.main import build_parser, config_from_args
    from cifarkit.optim.schedule import check_schedule, planned_schedule

    # 10,000 images at batch 1000, 2 epochs: 20 steps, of which the preset's 5% would peak on the first
    cfg = config_from_args(
        build_parser().parse_args(["train", "--preset", "fast", "--epochs", "2", "--limit-train", "10000"])
    ).validate()
    assert capsys.readouterr().err == (
        "fast: --pct-start 0.05 -> 0.1 for --epochs 2 --limit-train 10000 (20 steps: "
        "the smallest share that puts the lr peak after the first step)\n"
    )
    assert cfg.pct_start == 0.1
    check_schedule(cfg, steps_per_epoch=10)
    lrs = planned_schedule(cfg, max_lr=1.0, steps_per_epoch=10)
    assert lrs.index(max(lrs)) == 1  # one step of warm-up, as a share cannot be shorter
    assert cfg == preset_config("fast", epochs=2, limit_train=10_000)  # the Python API follows the same rule


def test_the_smallest_warm_up_share_peaks_after_the_first_step_and_reads_back_as_typed():
    from cifarkit.config.presets import lowest_pct_start

    for steps in range(3, 3000):
        pct = lowest_pct_start(steps)
        assert float(pct * steps) - 1 >= 1 and float(f"{pct:g}") == pct  # OneCycleLR's end of the rise
        digits = 2 - __import__("math").floor(__import__("math").log10(pct))
        assert float((pct - 10.0**-digits) * steps) - 1 < 1  # one unit less in its 3rd significant digit: too early
    assert (lowest_pct_start(2), lowest_pct_start(3, three_phase=True), lowest_pct_start(4, three_phase=True)) == (
        None,
        None,
        0.5,
    )


def test_a_quick_trial_of_fast_cpu_keeps_the_presets_share_of_small_windows_and_stem_training(capsys):
    cfg = preset_config("fast-cpu", epochs=2)
    assert (cfg.small_crop, cfg.small_crop_epochs, cfg.stem_bias_epochs, cfg.pct_start) == (24, 1, 1, 0.05)
    assert capsys.readouterr().err.splitlines() == [
        "fast-cpu: --small-crop-epochs 6 -> 1 for --epochs 2 (the preset's share of the run)",
        "fast-cpu: --stem-bias-epochs 3 -> 1 for --epochs 2 (the preset's share of the run)",
    ]
    longer = preset_config("fast-cpu", epochs=22)  # 6/11 and 3/11 of 22 epochs
    assert (longer.small_crop_epochs, longer.stem_bias_epochs) == (12, 6)
    one = preset_config("fast-cpu", epochs=1)  # no room for small windows: the last epoch trains at full size
    assert (one.small_crop, one.small_crop_epochs, one.stem_bias_epochs) == (0, 0, 1)
    assert "--small-crop 24 -> 0 and --small-crop-epochs 6 -> 0 for --epochs 1" in capsys.readouterr().err
    assert preset_config("fast", epochs=2).stem_bias_epochs == 1  # never 0, which would mean every epoch


def test_a_value_the_user_gave_is_never_changed_and_a_refusal_names_the_value_that_works(capsys):
    from cifarkit.optim.schedule import check_schedule

    cfg = preset_config("fast-cpu", epochs=2, stem_bias_epochs=3, small_crop_epochs=1)
    assert (cfg.stem_bias_epochs, cfg.small_crop_epochs) == (3, 1) and capsys.readouterr().err == ""
    with pytest.raises(
        UserError,
        match=re.escape(
            "--small-crop-epochs 6: must be a whole number of epochs below "
            "--epochs (2): the last ones train at full size (at most 1)"
        ),
    ):
        preset_config("fast-cpu", epochs=2, small_crop_epochs=6)
    assert "--small-crop-epochs" not in capsys.readouterr().err  # (its --stem-bias-epochs followed)
    with pytest.raises(
        UserError,
        match=re.escape(
            "--small-crop-epochs 6: must be a whole number of epochs below "
            "--epochs (2): the last ones train at full size (at most 1); the "
            "fast-cpu preset sets --small-crop-epochs 6: give your own, or "
            "--small-crop 0 --small-crop-epochs 0"
        ),
    ):
        preset_config("fast-cpu", epochs=2, small_crop=0)  # windows off by the user: the preset's 6 is not moved
    capsys.readouterr()
    cfg = preset_config("fast", epochs=2, limit_train=10_000, pct_start=0.05)
    assert cfg.pct_start == 0.05 and capsys.readouterr().err == ""
    with pytest.raises(
        UserError,
        match=re.escape(
            "--pct-start 0.05 of 20 steps (2 epoch(s) x 10 steps) puts the lr "
            "peak on the first step, which OneCycleLR cannot schedule: use "
            "--pct-start 0.1 (the smallest share that peaks after it)"
        ),
    ):
        check_schedule(cfg, steps_per_epoch=10)


def test_a_preset_at_its_own_length_is_exactly_the_preset(capsys):
    from cifarkit.config.train_config import PRESETS

    for name, recipe in PRESETS.items():
        exact = TrainConfig.from_dict({"preset": name, **recipe})
        assert preset_config(name) == exact
        assert preset_config(name, epochs=exact.epochs) == exact
        assert preset_config(name, limit_train=50_000) == TrainConfig.from_dict(
            {**exact.to_dict(), "limit_train": 50_000}
        )
    assert capsys.readouterr().err == ""
    # a saved config.json is the user's own: nothing in it follows --epochs
    from cifarkit.config.train_config import build_config

    saved = preset_config("fast-cpu").to_dict()
    with pytest.raises(UserError, match="--small-crop-epochs 6: must be a whole number of epochs below --epochs"):
        TrainConfig.from_dict({**saved, "epochs": 2}).validate()
    assert build_config(None, None, {"epochs": 30}).pct_start == 5 / 24  # a share already: s10 peaks at 5/24 of any run


def test_evaluates_tta_help_gives_each_presets_own_from_the_presets(capsys):
    from cifarkit.config import PRESETS, preset_config

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in PRESETS:  # each preset named once, beside the tta it sets
        tta = preset_config(name).tta
        assert re.search(rf"[(;] ?[\w, -]*\b{re.escape(name)}\b[\w, -]*: {tta}\b", help_text), (name, tta)
