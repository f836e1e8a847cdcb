import re

import pytest

from cifarkit.cli import main
from cifarkit.config import TrainConfig, preset_config
from cifarkit.errors import UserError
from cifarkit.models import build_model, count_parameters


def test_s10_preset_is_the_seed_recipe():
    cfg = preset_config("s10")
    assert (cfg.model, cfg.optimizer, cfg.weight_decay, cfg.batch_size, cfg.epochs) == ("s10", "adam", 1e-4, 512, 24)
    assert (cfg.pct_start, cfg.div_factor, cfg.final_div_factor, cfg.three_phase, cfg.anneal_strategy) == (
        5 / 24, 100, 100, False, "linear")
    assert (cfg.pad_crop, cfg.flip, cfg.cutout_size, cfg.cutout_prob) == (4, True, 8, 0.5)
    assert cfg.max_lr == 4.51e-2


def test_json_round_trip(tmp_path):
    cfg = preset_config("s10", epochs=3, seed=5)
    path = tmp_path / "c.json"
    path.write_text(__import__("json").dumps(cfg.to_dict()))
    assert TrainConfig.from_json(path) == cfg


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": -1}, "--epochs -1: must be a whole number >= 1"),
    ({"batch_size": 0}, "--batch-size 0"),
    ({"max_lr": -0.1}, "--max-lr"),
    ({"max_lr": "soon"}, "--max-lr 'soon'"),
    ({"pct_start": 1.2}, "--pct-start 1.2: the peak must fall strictly inside"),
    ({"device": "tpu"}, "--device 'tpu': unknown device"),
    ({"model": "vgg"}, "--model 'vgg': unknown model"),
    ({"limit_train": 0}, "--limit-train 0"),
    ({"ema_decay": 1.5}, "--ema-decay 1.5: must be in [0, 1)"),
    ({"tta": "rotate"}, "--tta 'rotate': choose one of none, flip, flip-translate"),
    ({"norm_lr_scale": 0}, "--norm-lr-scale 0: must be a positive number"),
    ({"eval_every": -1}, "--eval-every -1: must be a whole number of epochs >= 0"),
    ({"lookahead_decay": 1.0}, "--lookahead-decay 1.0: must be in [0, 1)"),
    ({"lookahead_every": 0}, "--lookahead-every 0: must be a whole number of steps >= 1"),
])
def test_invalid_values_are_refused_with_the_flag_named(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        preset_config("s10", **overrides)


def test_unknown_preset_and_unknown_keys():
    with pytest.raises(UserError, match="unknown preset; choose one of s10, s10-best, fast, fast-cpu"):
        preset_config("s11")
    with pytest.raises(UserError, match="unknown setting"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "-2"], "--epochs -2"),
    (["train", "--batch-size", "0"], "--batch-size 0"),
    (["train", "--preset", "nope"], "unknown preset"),
    (["train", "--device", "quantum"], "unknown device"),
    (["train", "--device", "cuda"], "no CUDA GPU"),
])
def test_cli_refuses_bad_flags_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code = main(argv + ["--data-dir", str(tmp_path / "absent"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_s10_best_changes_the_recipe_not_the_network_or_the_length():
    best, seed = preset_config("s10-best"), preset_config("s10")
    assert (best.epochs, best.batch_size) == (seed.epochs, seed.batch_size)
    # the same network and parameters; only the logits are scaled (x0.125, no parameter)
    assert count_parameters(build_model(best.model)) == count_parameters(build_model(seed.model)) == 6_573_120
    assert build_model(best.model).logit_scale == 0.125
    assert (best.optimizer, best.nesterov, best.cycle_momentum) == ("sgd", True, False)
    assert best.label_smoothing > 0 and 0.99 <= best.ema_decay < 1 and best.tta == "flip"


@pytest.mark.parametrize("name, model", [("fast", "fast"), ("fast-cpu", "fast-small")])
def test_fast_presets_are_the_whitened_net_tested_once_with_tta(name, model):
    cfg = preset_config(name)
    assert cfg.model == model and cfg.optimizer == "sgd" and cfg.nesterov and cfg.batch_size == 1024
    assert cfg.norm_lr_scale > 1 and cfg.eval_every == 0 and cfg.tta == "flip-translate"
    assert (cfg.pad_crop, cfg.cutout_size) == (2, 0)
    assert cfg.lookahead_decay == pytest.approx(0.95**5) and cfg.lookahead_every == 5 and cfg.alternate_flip


def test_every_preset_validates_and_round_trips_through_json(tmp_path):
    from cifarkit.config import PRESETS

    for name in PRESETS:
        cfg = preset_config(name)
        path = tmp_path / f"{name}.json"
        path.write_text(__import__("json").dumps(cfg.to_dict()))
        assert TrainConfig.from_json(path) == cfg


def test_cli_flags_reach_the_config_over_the_preset():
    from cifarkit.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--preset", "fast", "--norm-lr-scale", "8", "--eval-every", "2",
                                      "--epochs", "3", "--lookahead-decay", "0.5", "--lookahead-every", "7",
                                      "--alternate-flip"])
    cfg = config_from_args(args)
    assert (cfg.preset, cfg.model, cfg.norm_lr_scale, cfg.eval_every, cfg.epochs) == ("fast", "fast", 8.0, 2, 3)
    assert (cfg.lookahead_decay, cfg.lookahead_every, cfg.alternate_flip) == (0.5, 7, True)

    # a preset's switch can be turned off, and an absent flag keeps the preset's value
    assert config_from_args(build_parser().parse_args(["train", "--preset", "fast", "--no-alternate-flip"])
                            ).alternate_flip is False
    assert config_from_args(build_parser().parse_args(["train", "--preset", "fast"])).alternate_flip is True
    assert config_from_args(build_parser().parse_args(["train", "--preset", "s10"])).alternate_flip is False


@pytest.mark.parametrize("flag, field", [("nesterov", "nesterov"), ("alternate-flip", "alternate_flip"),
                                         ("channels-last", "channels_last"), ("sync-bn", "sync_bn")])
def test_every_switch_has_an_off_flag_that_overrides_the_preset(flag, field):
    from cifarkit.cli import build_parser, config_from_args

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
    assert "with --epochs --no-nesterov --max-lr:" in err and "keeps the settings it was started with" in err
    assert main(["train", "--resume", str(run), "--out", str(root / "elsewhere")]) == 2
    assert "--out" in capsys.readouterr().err
    # where the data is and the thread count may differ between sessions: past the check (this run is finished)
    assert main(["train", "--resume", str(run), "--data-dir", str(root / "data"), "--threads", "1", "--quiet",
                 "--checkpoint-every", "3", "--dist-timeout", "60"]) == 2
    assert "already finished" in capsys.readouterr().err
