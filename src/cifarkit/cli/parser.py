"""The `cifarkit` parser: argparse with its sub-commands' parsers (and one-line helps) kept by name as each is
added, so that the code that needs a command's own parser (its --config defaults, its usage line in an error,
the documentation's command pages) finds it through argparse's public API alone.
"""

from __future__ import annotations

import argparse
from typing import Any


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-commands are added through `add_commands()`: `commands` maps each command's
    name to its parser and `command_help` to its one-line help, in the order of `--help`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}
        self.command_help: dict[str, str] = {}

    def add_commands(self, **kwargs: Any) -> Commands:
        """add_subparsers(**kwargs), each parser added to it recorded here."""
        return Commands(self.add_subparsers(**kwargs), self)


class Commands:
    """The sub-commands of a CommandParser: what add_subparsers() returned, recording each parser it adds."""

    def __init__(self, subparsers: Any, parser: CommandParser):
        self.subparsers, self.parser = subparsers, parser

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """The parser of command `name` (add_subparsers' add_parser), recorded in the CommandParser."""
        command = self.subparsers.add_parser(name, **kwargs)
        self.parser.commands[name] = command
        self.parser.command_help[name] = kwargs.get("help") or ""
        return command


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser that parsed the command's own flags: `cifarkit train`'s for `cifarkit train ...`; `parser` itself
    for a parser without commands (a benchmark's, made with add_train_flags)."""
    commands = getattr(parser, "commands", {})
    return commands.get(getattr(args, "command", None), parser)
