"""Reading a file that a user, or anyone who could write it, controls: one way in, checked before use.

A path given where a file belongs may be a folder, a FIFO (a plain open() waits for a writer for ever), a device
(/dev/zero never ends) or far larger than anything cifarkit writes; JSON may be nested deeper than Python's parser
can recurse, or hold integers of thousands of digits that Python refuses to convert. Each is refused here with a
UserError naming the file, before any of its content is used.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import UserError

MiB = 1 << 20
JSON_LIMIT = 64 * MiB  # config, results, lr_find, markers: a few KB each; lr_find.json of 100,000 steps ~5 MB
TEXT_LIMIT = 256 * MiB  # metrics.csv: one short row an epoch
MAX_JSON_DEPTH = 32  # what cifarkit writes nests 3 deep at most
MAX_INT_DIGITS = 30  # every whole number cifarkit writes fits in 20 digits (a seed, a step count)

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
# a JSON string (escapes included) and the brackets that nest: the depth is counted outside strings
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def size_text(n: int) -> str:
    return f"{n / MiB:.1f} MB" if n >= MiB else f"{n:,} bytes"


def open_regular(path: str | os.PathLike, what: str, limit: int) -> BinaryIO:
    """`path` opened for reading if it is a regular file of at most `limit` bytes. Opened with O_NONBLOCK, so a
    FIFO returns at once (to be refused) instead of waiting for a writer; its kind and size come from the open
    file itself (fstat), so nothing can be swapped in between the check and the read."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except OSError as e:  # no permission, a symlink loop, a name too long...
        raise UserError(f"{path}: cannot be read as a {what} ({e.strerror or e})") from None
    try:
        info = os.fstat(fd)
        kind = next((name for test, name in _KINDS if test(info.st_mode)), None)
        if kind is not None:
            raise UserError(f"{path}: cannot be read as a {what}: it is {kind}, not a file")
        if info.st_size > limit:
            raise UserError(
                f"{path}: {size_text(info.st_size)}, more than any {what} cifarkit writes "
                f"({size_text(limit)} at most); is it the right file?"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The content of a regular file of at most `limit` bytes (see open_regular)."""
    with open_regular(path, what, limit) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise UserError(f"{path}: cannot be read as a {what} ({e.strerror or e})") from None
    if len(data) > limit:  # it grew after the check
        raise UserError(
            f"{path}: more than any {what} cifarkit writes ({size_text(limit)} at most); is it the right file?"
        )
    return data


def read_text(path: str | os.PathLike, what: str, limit: int = TEXT_LIMIT, errors: str = "strict") -> str:
    """A UTF-8 text file (see read_bytes); with errors="strict" a file in another encoding is refused by name."""
    try:
        return read_bytes(path, what, limit).decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a {what}: not UTF-8 text ({e.reason} at byte {e.start})") from None


class _Refused(ValueError):
    pass


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"a whole number of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS} are read)")
    return int(text)


def json_depth_problem(text: str) -> str:
    """ "" if `text` nests brackets at most MAX_JSON_DEPTH deep (outside strings), else what is wrong."""
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return f"nested more than {MAX_JSON_DEPTH} deep"
    return ""


def parse_json(text: str) -> Any:
    """JSON text as Python values; raises ValueError (with the reason) for what json.loads refuses, for nesting
    deeper than MAX_JSON_DEPTH and for whole numbers longer than MAX_INT_DIGITS."""
    problem = json_depth_problem(text)
    if problem:
        raise _Refused(problem)
    return json.loads(text, parse_int=_whole_number)


def read_json(path: str | os.PathLike, what: str, advice: str = "", limit: int = JSON_LIMIT) -> Any:
    """A JSON file's value (any JSON type: the caller checks the one it expects). A file that is no regular file,
    too large, not UTF-8, not JSON, too deep or holding too long a number is refused naming it; `advice` ("; restore
    it ...") ends the message of a file that is there but damaged."""
    text = read_text(path, what, limit)
    try:
        return parse_json(text)
    except ValueError as e:  # json.JSONDecodeError is one
        raise UserError(f"{path}: not valid JSON ({e}){advice}") from None
