"""The documentation pages written from the code when the site is built (hooks.py), so they cannot drift from it.

- one page per command: every flag of `cifarkit.cli.main.build_parser()`, its group, default and each preset's value
  (the settings' declarations in cifarkit.config.train_config);
- the run folder's files (cifarkit.rundir.run_dir's names), the checkpoint's keys (read from checkpoint_of's source);
- the package map (each module's docstring);
- the results tables (benchmarks/results/*.json, see results.py beside this file).

tests/test_docs.py checks the command pages against the parser.
"""

from __future__ import annotations

import argparse
import ast
import html
import importlib.util
import inspect
import pkgutil
from pathlib import Path
from typing import Any

COMMANDS_DIR = "reference/commands"


def cell(text: Any) -> str:
    """Text for a Markdown table cell: no line breaks, `|` escaped, no HTML parsed."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def code(text: Any) -> str:
    return f"`{text}`" if str(text) else ""


def shown(value: Any) -> str:
    """A value as a user types it: on/off for switches, 4 significant digits for floats."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "unset"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def commands() -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Every sub-command of `cifarkit`: name -> (its one-line help, its parser), in the order of `cifarkit --help`."""
    from cifarkit.cli.main import build_parser

    parser = build_parser()
    return {name: (parser.command_help[name], p) for name, p in parser.commands.items()}


def groups(parser: argparse.ArgumentParser) -> list[tuple[str, list[argparse.Action]]]:
    """(group title, its actions) as `--help` shows them, without --help itself and empty groups."""
    shown_groups = []
    # argparse has no public list of a parser's groups and their actions: --help reads these same two
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if "--help" not in a.option_strings]
        if actions:
            shown_groups.append((group.title or "", actions))
    return shown_groups


def flag_names(action: argparse.Action) -> list[str]:
    """What a user types for this action: its option strings, or the positional's metavar."""
    if action.option_strings:
        return list(action.option_strings)
    return [str(action.metavar or action.dest).upper()]


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    try:  # argparse's own expansion of %(default)s and friends
        return text % {**vars(action), "prog": prog}
    except (KeyError, TypeError, ValueError):
        return text.replace("%%", "%")


def preset_values(name: str) -> str:
    """Each preset's value of setting `name`, presets with the same value together: "s10, s10-best: 24; fast: 9"."""
    from cifarkit.config.train_config import PRESETS, TrainConfig

    defaults = TrainConfig().to_dict()
    by_value: dict[str, list[str]] = {}
    for preset, changes in PRESETS.items():
        by_value.setdefault(shown({**defaults, **changes}[name]), []).append(preset)
    if len(by_value) == 1:
        return f"all: {next(iter(by_value))}"
    return "; ".join(", ".join(presets) + f": {value}" for value, presets in by_value.items())


def command_page(name: str, summary: str, parser: argparse.ArgumentParser) -> str:
    from cifarkit.config.train_config import SETTINGS, TrainConfig

    defaults = TrainConfig().to_dict()
    lines = [
        f"# cifarkit {name}",
        "",
        cell(summary[:1].upper() + summary[1:]) + ".",
        "",
        (
            "Generated from `cifarkit.cli.main.build_parser()` and the settings declared in "
            "`cifarkit.config.train_config` when this site was built. A setting's flag left out keeps the preset's "
            "value (or `--config FILE`'s); [the usage line](#usage) is at the end."
        ),
        "",
    ]
    # the command's own arguments first, then the settings' groups, then argparse's catch-all "options"
    ordered = sorted(groups(parser), key=lambda g: {"positional arguments": 0, "options": 2}.get(g[0], 1))
    for title, actions in ordered:
        title = "other options" if title == "options" and len(ordered) > 1 else title
        lines += [
            f"## {title[:1].upper() + title[1:]}",
            "",
            "| flag | what it does | default | presets |",
            "| --- | --- | --- | --- |",
        ]
        for action in actions:
            names = ", ".join(code(n) for n in flag_names(action))
            setting = SETTINGS.get(action.dest) if action.dest in SETTINGS and action.default is None else None
            setting = setting if setting is not None and setting.cli else None  # --preset is not a preset's value
            if setting is not None:  # a TrainConfig field: default and presets from the declaration
                what, default, presets = setting.help, shown(defaults[action.dest]), preset_values(action.dest)
            else:
                what, presets = _help(action, parser.prog), ""
                default = (
                    ""
                    if action.default in (None, argparse.SUPPRESS, False) or not action.option_strings
                    else shown(action.default)
                )
            if action.choices:  # a command's parser has no sub-commands: its choices are values
                what += " Choices: " + ", ".join(str(c) for c in action.choices) + "."
            lines.append(f"| {names} | {cell(what)} | {cell(default)} | {cell(presets)} |")
        lines.append("")
    lines += ["## Usage", "", "```text", parser.format_usage().strip(), "```", ""]
    return "\n".join(lines)


def presets_table() -> str:
    """Settings × presets: every setting some preset changes, with each preset's value."""
    from cifarkit.config.train_config import PRESETS, SETTINGS, TrainConfig

    defaults = TrainConfig().to_dict()
    changed = [n for n in SETTINGS if n != "preset" and any(n in changes for changes in PRESETS.values())]
    lines = [
        "| setting | flag | " + " | ".join(code(p) for p in PRESETS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in PRESETS) + " |",
    ]
    for name in changed:
        values = [shown({**defaults, **changes}[name]) for changes in PRESETS.values()]
        lines.append(f"| {name} | {code(SETTINGS[name].flag)} | " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(lines)


def commands_index() -> str:
    lines = ["| command | what it does |", "| --- | --- |"]
    for name, (summary, _) in commands().items():
        lines.append(f"| [`cifarkit {name}`](commands/{name}.md) | {cell(summary)} |")
    return "\n".join(lines)


def run_folder_files() -> str:
    """The files a run folder may hold, by cifarkit.rundir.run_dir's names."""
    from cifarkit.rundir import run_dir as rundir

    described = {
        rundir.CONFIG: "every setting of the run; `cifarkit train --config RUN_DIR/config.json` repeats it",
        rundir.METRICS: "one row per epoch: " + ", ".join(getattr(rundir, "METRIC_FIELDS", ())),
        rundir.RESULTS: "the final numbers (test accuracy and loss at the end of training, never a best epoch), "
        "timing, max lr and its source, dtype, device, machine, seed, versions",
        rundir.ENDED: "only in a run stopped for good before its last epoch: why (`diverged`, `pruned`) and the "
        "message",
        rundir.CHECKPOINT: "model, optimiser, schedule and run state ([the checkpoint](checkpoint.md)); "
        "written atomically every epoch",
        rundir.LR_FIND_JSON: "with `--max-lr find` or `cifarkit lr-find`: the range test's curve and suggestion",
        rundir.MODEL_SUMMARY: "the per-layer summary (torchinfo)",
        rundir.REPORT: "one self-contained page (every image embedded): results, per-epoch table, plots, model, "
        "config, machine",
    }
    lines = ["| file | what it holds |", "| --- | --- |"]
    for name in rundir.RUN_FILES:
        plots = dict(rundir.PLOTS)
        lines.append(f"| `{name}` | {cell(described.get(name) or plots.get(name, ''))} |")
    for pattern in rundir.RUN_PATTERNS:
        lines.append(f"| `{pattern}` | written into the run by `cifarkit evaluate` / `cifarkit gradcam` |")
    lines.append(f"| `{rundir.LOCK}` | the OS lock (`flock`) held by the process writing the run |")
    if hasattr(rundir, "MARKER"):
        lines.append(f"| `{rundir.MARKER}` | what makes the folder a run's own (format `{rundir.MARKER_FORMAT}`) |")
    lines.append("| `tb/` | with `--tensorboard`: TensorBoard's event files |")
    sweep = [rundir.STUDY_DB, rundir.BEST_CONFIG, *rundir.SWEEP_PLOTS]
    lines += [
        "",
        "A sweep's `--out` folder holds `trial-N/` run folders beside " + ", ".join(code(n) for n in sweep) + ".",
    ]
    return "\n".join(lines)


def checkpoint_keys() -> list[str]:
    """The keys of the dict that training.resume.checkpoint_of() returns, read from its source."""
    from cifarkit.training.resume import checkpoint_of

    tree = ast.parse(inspect.getsource(checkpoint_of))
    keys: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys += [
                k.value
                for k in node.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str) and k.value not in keys
            ]
    return keys


def checkpoint_table() -> str:
    import dataclasses

    from cifarkit.rundir.checkpoint import CHECKPOINT_FORMAT, RunState

    optional = {
        "training_weights": "with `--ema-decay`",
        "ema_n_averaged": "with `--ema-decay`",
        "lookahead": "with `--lookahead-decay`",
        "pruning": "with `--prune-easy`",
    }
    lines = [
        (
            f"Checkpoint format **{CHECKPOINT_FORMAT}** (`cifarkit.rundir.checkpoint.CHECKPOINT_FORMAT`). Keys, in the "
            "order `cifarkit.training.resume.checkpoint_of` writes them:"
        ),
        "",
        "| key | present |",
        "| --- | --- |",
    ]
    lines += [f"| `{k}` | {optional.get(k, 'always')} |" for k in checkpoint_keys()]
    lines += ["", "`state` is a `RunState`: " + ", ".join(f"`{f.name}`" for f in dataclasses.fields(RunState)) + "."]
    return "\n".join(lines)


def package_map() -> str:
    """Every module of cifarkit with the first paragraph of its docstring (read without importing it)."""
    import cifarkit

    lines = ["| module | what it is for |", "| --- | --- |"]
    for info in sorted(pkgutil.walk_packages(cifarkit.__path__, "cifarkit."), key=lambda m: m.name):
        spec = importlib.util.find_spec(info.name)
        source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
        doc = ast.get_docstring(ast.parse(source)) or (
            "`python -m cifarkit`: the `cifarkit` command" if info.name.endswith(".__main__") else "(no docstring)"
        )
        lines.append(f"| `{info.name}` | {cell(doc.split(chr(10) + chr(10))[0])} |")
    return "\n".join(lines)
