"""The flags of the commands that define a run: one per TrainConfig setting, generated from its declaration
(config/settings.py: help, group, flag, type, choices), so a new setting is declared there only; --config FILE's
settings as the flags' defaults; and the flags a resumed run refuses.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config.notes import presets_note
from ..config.settings import GROUPS, Setting
from ..config.train_config import MACHINE_SETTINGS, PRESETS, SETTINGS, TrainConfig, build_config
from ..errors import UserError
from .parser import command_parser


def add_data_flags(p: argparse.ArgumentParser) -> None:
    """--data-dir, with the help its setting declares."""
    p.add_argument(SETTINGS["data_dir"].flag, help=SETTINGS["data_dir"].help)


def _argument_type(s: Setting) -> Callable[[str], Any]:
    if s.parse is None:
        return s.type

    def parse(text: str) -> Any:
        try:
            return s.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _add_setting(group: argparse._ArgumentGroup, s: Setting) -> None:  # argparse names no public group type
    """One flag for one TrainConfig field; default None: keep the preset's (or --config's) value."""
    kwargs: dict[str, Any] = {
        "dest": s.name,
        "default": None,
        "help": (s.help + presets_note(s.name)).replace("%", "%%"),
    }
    if s.type is bool:
        kwargs["action"] = argparse.BooleanOptionalAction  # --x and --no-x
    else:
        kwargs.update(
            type=_argument_type(s),
            choices=s.choices,
            metavar=s.metavar or (None if s.choices else s.flag[2:].upper().replace("-", "_")),
        )
    group.add_argument(s.flag, **kwargs)


def _add_setting_flags(p: argparse.ArgumentParser, train: bool) -> None:
    recipe = p.add_argument_group(GROUPS["recipe"])
    recipe.add_argument("--preset", help=f"recipe to start from: {', '.join(PRESETS)} (default s10)")
    recipe.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a config.json (e.g. RUN_DIR/config.json) to start from instead of a preset: its "
        "settings become the flags' defaults",
    )
    for key, title in GROUPS.items():
        members = [s for s in SETTINGS.values() if s.group == key and s.cli and (train or not s.train_only)]
        if members:
            group = p.add_argument_group(title)
            for s in members:
                _add_setting(group, s)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """--preset, --config and a flag per TrainConfig setting but the train-only ones (lr-find)."""
    _add_setting_flags(p, train=False)


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """--preset, --config and a flag per TrainConfig setting: every flag that defines a training run (train,
    benchmarks/time_to_accuracy.py)."""
    _add_setting_flags(p, train=True)


def add_quiet_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def config_defaults(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """With --config FILE, parse `argv` again with the file's settings as the defaults (as timm's train.py does),
    so flags override a saved config the way they override a preset; else `args` as it is."""
    if getattr(args, "config", None) is None or args.preset is not None or getattr(args, "resume", None) is not None:
        return args  # nothing to load, or refused by name (config_from_args, refuse_run_changing_flags)
    saved = TrainConfig.from_json(args.config).to_dict()  # an unknown key is refused, naming the file and key
    command_parser(parser, args).set_defaults(**{name: v for name, v in saved.items() if SETTINGS[name].cli})
    return parser.parse_args(argv)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """parser.parse_args, with a --config FILE's settings as the defaults (config_defaults)."""
    return config_defaults(parser, parser.parse_args(argv), argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config: --config FILE or --preset (default s10), then every setting flag given. Not validated:
    run.train() validates what it is given, once; other users call validate()."""
    overrides = {name: getattr(args, name, None) for name, s in SETTINGS.items() if s.cli}
    return build_config(args.preset, args.config, overrides)


def _typed(s: Setting, value: object) -> str:
    """The flag as the user typed it: --max-lr, or --no-nesterov for a switch turned off."""
    return f"--no-{s.flag[2:]}" if value is False else s.flag


def refuse_run_changing_flags(args: argparse.Namespace) -> None:
    """With --resume, a flag that would change the run is refused by name rather than silently ignored."""
    given = [f"--{name}" for name in ("preset", "config") if getattr(args, name, None) is not None]
    given += [
        _typed(s, getattr(args, s.name))
        for s in SETTINGS.values()
        if s.cli and not s.machine and getattr(args, s.name, None) is not None
    ]
    given += [flag for flag, on in (("--out", args.out is not None), ("--overwrite", args.overwrite)) if on]
    if given:
        machine = ", ".join(SETTINGS[name].flag for name in MACHINE_SETTINGS)
        raise UserError(
            f"--resume {args.resume} with {' '.join(given)}: a resumed run keeps the settings it was "
            f"started with (from its checkpoint); only {machine}, --quiet, --tensorboard, "
            "--checkpoint-every and --dist-timeout may change. Drop those flags, or start a new run "
            "with --out"
        )
