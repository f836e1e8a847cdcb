"""One run's folder: its lock, every path checked, atomic writes, listing and clearing (the names: names.py).

The folder is the contract between train, resume, the range test, report and evaluate (DESIGN.md):
each of them finds a file through `RunDir`, so a path is spelled once, here, and checked once, here: every file a
command reads from or writes into a run folder lies inside it (no symlink leads out), is read through the checked
reader (files/reader.py), and is written only into a folder that is the run's own (its marker says so).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from ..config.train_config import TrainConfig
from ..errors import UserError
from ..files.atomic import WriteError, save_torch, write_bytes, write_json, write_text
from ..files.reader import MiB, read_bytes, read_json, read_text
from ..runtime.invoked import program
from ..version import __version__
from .folder_lock import lock_folder
from .names import (  # noqa: F401 (re-exported: the names every command imports from here)
    BEST_CONFIG,
    CHECKPOINT,
    COMMAND_PLOTS,
    CONFIG,
    ENDED,
    JUNK,
    LOCK,
    LR_FIND_JSON,
    LR_FIND_PLOT,
    MARKER,
    MARKER_FORMAT,
    METRIC_FIELDS,
    METRICS,
    MODEL_SUMMARY,
    PLOTS,
    REPORT,
    RESULT_TYPES,
    RESULTS,
    RUN_FILES,
    RUN_FOLDERS,
    RUN_PATTERNS,
    STUDY_DB,
    SWEEP_FILES,
    SWEEP_PLOTS,
    TYPE_CHECKS,
    WEIGHT_SUFFIXES,
)


class RunDir:
    """A run folder. `writes=False` (ranks other than 0 under torchrun) turns every write into a no-op, so
    callers need not ask which process they are."""

    def __init__(self, path: str | os.PathLike, writes: bool = True):
        self.path = Path(path)
        self.writes = writes
        self._lock: int | None = None
        self._owned = self._marked = False  # known once the folder's marker is found or written

    def lock(self) -> RunDir:
        """Hold the folder's lock while this process writes it (folder_lock.py): a second process gets a clear error."""
        if self.writes and self._lock is None:
            self._lock = lock_folder(self.path)
        return self

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- names: every path of the run's files comes from here ---------------------------------------------

    def inside(self, name: str) -> Path:
        """`name` in the folder; refused where a symlink (the file itself, or a folder on its way such as plots/)
        leads out of the run folder, so that no command reads a user's file elsewhere as the run's, or writes over
        one."""
        path = self.path / name
        real, root = Path(os.path.realpath(path)), Path(os.path.realpath(self.path))
        if not real.is_relative_to(root):
            raise UserError(
                f"{path}: a symlink out of the run folder (to {real}); cifarkit reads and writes only "
                "files inside a run folder: replace the link by the file itself, or remove it"
            )
        return path

    def __truediv__(self, name: str) -> Path:
        return self.inside(name)

    @property
    def checkpoint(self) -> Path:
        return self.inside(CHECKPOINT)

    def plot(self, name: str) -> Path:
        """Where plots/NAME.png is written (see output)."""
        return self.output(f"plots/{name}.png") if self.writes else self.inside(f"plots/{name}.png")

    def output(self, name: str) -> Path:
        """`name` in the folder, to be written: inside it, into a folder that is the run's own. The first write into
        a folder that holds nothing (or only what a failed start leaves) marks it as the run's; a folder of other
        files (a user's project, a dataset) is refused, so no command mixes its files into one."""
        path = self.inside(name)
        if self.writes and not self._marked:
            others = self.foreign_files()  # none in a folder that is the run's own
            if others:
                raise UserError(
                    f"{self.path}: a folder of other files ({_some(others)}), not a cifarkit run; "
                    "cifarkit writes only into a new or empty folder, or a run's own"
                )
            if self.regular_file(MARKER) is None:  # also a run from before markers: marked from now on
                write_json(self.inside(MARKER), {"format": MARKER_FORMAT, "cifarkit": __version__})
            self._owned = self._marked = True
        return path

    # -- whose folder: listing and clearing ----------------------------------------------------------------

    def owned(self) -> bool:
        """Whether the folder's files say it is a run's (or a range test's): its marker, or, for a run from before
        markers, a config.json that parses as a cifarkit config beside a checkpoint."""
        if not self._owned and self.path.is_dir():
            self._owned = self._holds(MARKER, lambda v: isinstance(v, dict) and v.get("format") == MARKER_FORMAT) or (
                self.regular_file(CHECKPOINT) is not None and self._holds(CONFIG, _is_config)
            )
        return self._owned

    def _holds(self, name: str, check: Any) -> bool:
        path = self.regular_file(name)
        try:
            return path is not None and bool(check(read_json(path, name)))
        except UserError:
            return False

    def existing(self) -> list[str]:
        """The run files present in a folder that is a run's (owned), in RUN_FILES order, then those matching
        RUN_PATTERNS; none in any other folder (a user's config.json or plots/confusion.png is theirs, not a run's).
        Only names whose folder lies inside the run: a file reached through a symlinked folder is not the run's."""
        if not self.owned():
            return []
        root = Path(os.path.realpath(self.path))

        def present(name: str) -> bool:
            path = self.path / name
            return os.path.lexists(path) and Path(os.path.realpath(path.parent)).is_relative_to(root)

        listed = [name for name in RUN_FILES if present(name)]
        return listed + sorted(p.name for pattern in RUN_PATTERNS for p in self.path.glob(pattern) if present(p.name))

    def foreign_files(self) -> list[str]:
        """What a folder that holds no run has in it: a user's files, which a new run never joins. The lock, a
        desktop's or notebook's JUNK and what a start that failed leaves (an --overwrite's emptied checkpoints/ and
        plots/, the tb/ of event files that --tensorboard makes before the data loads) do not count."""
        if not self.path.is_dir() or self.owned():
            return []

        def left_by_a_run(p: Path) -> bool:
            if p.name in (LOCK, *JUNK):
                return True
            if p.name not in RUN_FOLDERS or p.is_symlink() or not p.is_dir():
                return False
            return all(p.name == "tb" and f.name.startswith("events.out.tfevents.") for f in p.iterdir())

        return sorted(p.name for p in self.path.iterdir() if not left_by_a_run(p))

    def discard_if_unused(self) -> None:
        """Remove the folder again if it holds nothing but its lock (a run that failed before writing anything, in a
        folder it made). Called while the lock is held, so no other process is writing there."""
        if self.writes and self._lock is not None and [p.name for p in self.path.iterdir()] == [LOCK]:
            with contextlib.suppress(OSError):
                (self.path / LOCK).unlink()
                self.path.rmdir()

    def clear(self) -> None:
        """Remove the run files of a run's folder (and nothing else a user may keep in it; nothing at all in a folder
        that is not a run's)."""
        if self.writes:
            for name in self.existing():
                (self.path / name).unlink()  # a symlink named as a run file: the link goes, never its target

    # -- reading (through reader.py: regular files of bounded size, checked JSON) ---------------------------

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON file of the run (an object of name: value), or None when absent."""
        path = self.inside(name)
        if not os.path.lexists(path):
            return None
        value = read_json(path, f"cifarkit {name}", advice="; restore it or start the run again")
        if not isinstance(value, dict):  # `null`, a list: not what any run writes
            raise UserError(
                f"{path}: not a cifarkit {name} (expected an object of name: value, found "
                f"{type(value).__name__}); restore it or start the run again"
            )
        return value

    def read_results(self) -> dict[str, Any] | None:
        """results.json, each field a run writes checked for its type (so no command formats or compares a list
        where a number belongs), or None when absent. Fields it does not know are returned as they are."""
        results = self.read_json(RESULTS)
        for key, value in (results or {}).items():
            expected = RESULT_TYPES.get(key)
            if expected is not None and not TYPE_CHECKS[expected](value):
                raise UserError(
                    f"{self.path / RESULTS}: {key} is {json.dumps(value)[:60]}, not {expected}; restore "
                    "the file, or delete it and write the run's ending again with --resume"
                )
        return results

    def read_metrics(self) -> list[dict[str, float]]:
        """metrics.csv's rows as numbers; a damaged file is named with the line."""
        path = self.inside(METRICS)
        reader = csv.DictReader(io.StringIO(read_text(path, "cifarkit metrics.csv", errors="replace"), newline=""))
        needed = {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"}
        rows = []
        try:
            if reader.fieldnames is None or not needed <= set(reader.fieldnames):
                raise UserError(f"{path}: line 1: not a cifarkit metrics header (expected {', '.join(METRIC_FIELDS)})")
            for row in reader:
                rows.append({k: float(v) for k, v in row.items()})
        except (TypeError, ValueError, csv.Error) as e:  # csv.Error: e.g. a field over csv's 128 KB limit
            # csv counts the line it failed in only once it has read it whole
            line, reason = (reader.line_num + 1, f" ({e})") if isinstance(e, csv.Error) else (reader.line_num, "")
            raise UserError(
                f"{path}: line {line}: not a row of numbers{reason}; restore the file or delete it "
                "(report.html then leaves the table out)"
            ) from None
        return rows

    def regular_file(self, name: str) -> Path | None:
        """`name` in the run folder if it is a regular file there (not a symlink, nothing outside the folder)."""
        path = self.path / name
        if path.is_symlink() or not path.is_file():
            return None
        try:
            return self.inside(name)
        except UserError:
            return None

    def read_bytes(self, name: str, limit: int = 64 * MiB) -> bytes | None:
        """A regular file of the run (a plot, model.txt) through the checked reader; None where there is none."""
        path = self.regular_file(name)
        return None if path is None else read_bytes(path, f"cifarkit {name}", limit)

    # -- writing (atomic: a file is the old one or the new one, never torn) --------------------------------

    def write_json(self, name: str, obj: Any) -> None:
        if self.writes:
            write_json(self.output(name), obj)

    def write_text(self, name: str, text: str) -> None:
        if self.writes:
            write_text(self.output(name), text)

    def write_bytes(self, name: str, data: bytes) -> None:
        if self.writes:
            write_bytes(self.output(name), data)

    def write_metrics(self, rows: list[dict[str, float]]) -> None:
        buf = io.StringIO()
        present = {key for row in rows for key in row}
        writer = csv.DictWriter(buf, fieldnames=[f for f in METRIC_FIELDS if f in present], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self.write_text(METRICS, buf.getvalue())

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> Path:
        if self.writes:
            try:
                save_torch(self.output(CHECKPOINT), checkpoint)
            except WriteError as e:  # a full disk, a read-only folder...: the previous checkpoint is untouched
                raise UserError(
                    f"{self.checkpoint}: could not write the checkpoint ({e.reason}); the previous "
                    f"one is intact. Fix the cause, then continue with: {program()} train --resume "
                    f"{self.path}"
                ) from None
        return self.checkpoint


def _is_config(value: Any) -> bool:
    try:
        TrainConfig.from_dict(value)
    except UserError:
        return False
    return True


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def run_of(checkpoint: str | os.PathLike) -> RunDir:
    """The run folder (read only) of a checkpoint named as RUN_DIR or as RUN_DIR/checkpoints/last.pt."""
    path = Path(checkpoint)
    return RunDir(path if path.is_dir() else path.parent.parent, writes=False)
