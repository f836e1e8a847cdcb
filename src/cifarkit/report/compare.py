"""`cifarkit compare`: several run folders side by side, as a terminal table and a self-contained HTML page.

Run folders are read only through RunDir (config.json, results.json, metrics.csv); a folder that holds run
folders (benchmarks/time_to_accuracy.py's OUT/seedN, a sweep's OUT/trial-N) stands for all of them. The table
shows only the settings that differ between the runs. Runs of different datasets (config "dataset", or a
different number of classes) are listed side by side, but their accuracies are not overlaid: the page and the
table carry a note saying why.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.train_config import SETTINGS
from ..errors import UserError
from ..rundir.outputs import check_output
from ..rundir.run_dir import CONFIG, ENDED, METRICS, RunDir

# Shown in columns of their own, or where a run is computed rather than what it is: never a "differing setting".
_NOT_COMPARED = {"preset", "dataset"} | {name for name, s in SETTINGS.items() if s.machine}


@dataclass
class Run:
    name: str
    config: dict[str, Any]
    results: dict[str, Any] | None  # None: unfinished
    history: list[dict[str, float]]
    ended: dict[str, Any] | None = None  # why an unfinished run will not go on (diverged, pruned by a sweep)

    @property
    def dataset(self) -> str:
        classes = self.results.get("classes") if self.results else None
        name = str(self.config.get("dataset", "cifar10"))
        if name == "cifar100":
            name += f"/{self.config.get('labels', 'fine')}"
        return name + (f" ({classes} classes)" if classes is not None else "")

    @property
    def status(self) -> str:
        if self.results is not None:
            return "finished"
        reason = (self.ended or {}).get("reason")
        state = reason if isinstance(reason, str) else "unfinished"
        return f"{state} ({len(self.history)}/{self.config.get('epochs', '?')} epochs)"


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _runs_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and (p / CONFIG).is_file()), key=_natural)


def expand(paths: list[str | os.PathLike]) -> list[Path]:
    """The run folders named: a run folder itself, or every run folder inside a folder (seed2 before seed10),
    then those one level further down (time_to_accuracy.py's baseline/seedN). Anything else is refused by name."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if (path / CONFIG).is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise UserError(f"{given}: no such folder; give run folders (holding config.json) or a folder of them")
        inner = _runs_in(path)
        inner += [
            run for sub in sorted(p for p in path.iterdir() if p.is_dir() and p not in inner) for run in _runs_in(sub)
        ]
        if not inner:
            raise UserError(
                f"{given}: not a cifarkit run folder (no config.json) and holds none; give run folders "
                "or a folder of them (e.g. a time_to_accuracy.py --out folder)"
            )
        found.extend(inner)
    if not found:
        raise UserError("compare needs at least one run folder")
    unique: dict[Path, Path] = {}
    for path in found:  # a run named twice (e.g. a folder and a run in it) once, where it first appears
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _label(parts: tuple[str, ...], every: list[tuple[str, ...]]) -> str:
    """A run folder's name (`parts`: its resolved path's parts), with as many of its parents' as make it unique
    among `every` run's (seed0 of two benchmarks: base/seed0 of two, bench1/base/seed0 and bench2/base/seed0)."""
    for depth in range(1, len(parts)):
        if sum(other[-depth:] == parts[-depth:] for other in every) == 1:
            return "/".join(parts[-depth:])
    return str(Path(*parts))


def load_runs(paths: list[str | os.PathLike]) -> list[Run]:
    folders = expand(paths)
    resolved = [path.resolve().parts for path in folders]
    runs = []
    for path, parts in zip(folders, resolved):
        run = RunDir(path)
        config, results, ended = run.read_json(CONFIG), run.read_results(), run.read_json(ENDED)
        history = run.read_metrics() if (run / METRICS).exists() else []
        runs.append(Run(_label(parts, resolved), config or {}, results, history, ended))
    return runs


def differing_settings(runs: list[Run]) -> list[str]:
    """The config keys whose values are not the same in every run (missing counts as different), in config order."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.config if k not in keys and k not in _NOT_COMPARED]
    return [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]


def mixed_datasets_note(runs: list[Run]) -> str | None:
    """None when every run is of one dataset, else why the accuracies are not overlaid."""
    kinds = sorted({r.dataset.split(" (")[0] for r in runs})
    classes = sorted({r.results["classes"] for r in runs if r.results and "classes" in r.results})
    if len(kinds) > 1 or len(classes) > 1:
        shown = ", ".join(kinds) + (f"; {', '.join(map(str, classes))} classes" if len(classes) > 1 else "")
        return (
            f"these runs are of different datasets ({shown}): their accuracies are not comparable, so the "
            "accuracy curves are not overlaid"
        )
    return None


def _pct(v: Any) -> str:
    return f"{v:.2%}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):  # --exclude's entries: how many, not thousands of them in one cell
        return f"{len(v)} images"
    return "-" if v is None else str(v)


def _setting(run: Run, name: str) -> str:
    """A setting as the run used it: a max lr left to the range test (max_lr find) is the one it found."""
    value = run.config.get(name)
    found = (run.results or {}).get("max_lr")
    if name == "max_lr" and value == "find" and isinstance(found, (int, float)):
        return f"{found:.4g} (find)"
    return _value(value)


def table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the comparison table, as strings."""
    differ = differing_settings(runs)
    header = ["run", "preset", "dataset", *differ, "test acc", "val acc", "wall s", "img/s", "status"]
    rows = []
    for r in runs:
        res = r.results or {}
        rows.append(
            [
                r.name,
                _value(r.config.get("preset")),
                r.dataset,
                *(_setting(r, k) for k in differ),
                _pct(res.get("test_accuracy")),
                _pct(res.get("val_accuracy")),
                f"{res['wall_time_s']:.0f}" if isinstance(res.get("wall_time_s"), (int, float)) else "-",
                f"{res['train_images_per_second']:.0f}"
                if isinstance(res.get("train_images_per_second"), (int, float))
                else "-",
                r.status,
            ]
        )
    return header, rows


def format_table(runs: list[Run]) -> str:
    header, rows = table(runs)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    if (note := mixed_datasets_note(runs)) is not None:
        lines.append(f"note: {note}")
    return "\n".join(lines)


# One colour per run from a qualitative palette; past its ten colours the marker changes too, so no two runs of
# up to 70 look alike. The split is the line's style and the marker's fill (a split evaluated once is one marker).
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
SPLITS = (("train", ":", "none"), ("val", "--", "bottom"), ("test", "-", "full"))  # (split, line style, fill)
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
CAPTION = (
    "Each run's loss and accuracy per epoch, and its lr at the end of each epoch: one colour per run (past "
    "ten runs, also a marker shape). Train: dotted line, hollow markers; validation: dashed line, half-filled "
    "markers; test: solid line, filled markers. A split evaluated once (e.g. the test set at the end of a run "
    "with a validation split, or a 1-epoch run) is a single marker."
)


def run_style(i: int) -> dict[str, Any]:
    """The colour and marker of the i-th run."""
    from matplotlib import colormaps

    return {"color": colormaps["tab10"](i % 10), "marker": MARKERS[(i // 10) % len(MARKERS)]}


def plot_compare(runs: list[Run]) -> bytes:
    """Accuracy (unless the datasets differ), loss and lr per epoch of every run, as PNG bytes; each panel has a
    legend naming every run (and, where splits are drawn, what each line style means)."""
    from matplotlib.lines import Line2D

    from .drawing import figure, png_bytes

    overlay_acc = mixed_datasets_note(runs) is None
    panels = (["acc"] if overlay_acc else []) + ["loss", "lr"]
    with figure(len(panels), 1, figsize=(9, 3.6 * len(panels)), sharex=True, squeeze=False) as (fig, axes):
        axes = {name: ax for name, ax in zip(panels, axes[:, 0])}
        for i, run in enumerate(runs):
            style, h = run_style(i), run.history
            if not h:
                continue
            epochs = [r["epoch"] for r in h]
            axes["lr"].plot(epochs, [r["lr"] for r in h], markersize=4, **style)
            for key in (["acc"] if overlay_acc else []) + ["loss"]:
                for split, line, fill in SPLITS:
                    # eval_every may skip epochs; with a validation split the test set is evaluated once, at the end
                    shown = [r for r in h if math.isfinite(r.get(f"{split}_{key}", math.nan))]
                    if shown:
                        axes[key].plot(
                            [r["epoch"] for r in shown],
                            [r[f"{split}_{key}"] for r in shown],
                            linestyle=line,
                            fillstyle=fill,
                            markersize=5,
                            **style,
                        )
        # the legend's handles and labels given outright: matplotlib leaves out a label starting with "_" (a run
        # folder named _a) when it collects them from the lines itself
        named = [(Line2D([], [], markersize=5, **run_style(i)), run.name) for i, run in enumerate(runs) if run.history]
        splits = [
            (Line2D([], [], color="0.35", marker="o", linestyle=line, fillstyle=fill, markersize=5), SPLIT_NAMES[split])
            for split, line, fill in SPLITS
            if any(math.isfinite(r.get(f"{split}_loss", math.nan)) for run in runs for r in run.history)
        ]
        titles = {"acc": "accuracy", "loss": "loss", "lr": "lr (end of epoch)"}
        for key, ax in axes.items():
            ax.set_ylabel(titles[key])
            ax.grid(True, alpha=0.3)
            entries = named + (splits if key != "lr" else [])
            ax.legend(
                [e[0] for e in entries],
                [e[1] for e in entries],
                title="run" if key == "lr" else "run, split",
                fontsize=8,
                loc="upper left",
                bbox_to_anchor=(1.01, 1),
                ncols=1 + len(entries) // 18,
            )
        axes["lr"].set_xlabel("epoch")
        axes[panels[0]].set_title("Per epoch: one colour per run; line style and marker fill: the split (legend)")
        return png_bytes(fig)


def compare_html(runs: list[Run]) -> str:
    from .page import STYLE

    header, rows = table(runs)
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>cifarkit compare</title><style>{STYLE}"
        f"</style></head><body><h1>cifarkit compare: {len(runs)} runs</h1>"
    ]
    if (note := mixed_datasets_note(runs)) is not None:
        parts.append(f"<p class='note'><b>Note</b>: {esc(note)}.</p>")
    parts.append(
        "<table><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in header)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        + "</table>"
    )
    if any(r.history for r in runs):
        png = base64.b64encode(plot_compare(runs)).decode()
        parts.append(f"<h2>Curves</h2><p>{esc(CAPTION)}</p><img alt='curves' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>\n")
    return "".join(parts)


def compare(paths: list[str | os.PathLike], out: str | os.PathLike | None = None) -> tuple[str, list[Run]]:
    """The terminal table; with `out`, also the HTML page there (atomically; never onto a run's file)."""
    if out is not None:
        check_output(out)
    runs = load_runs(paths)
    if out is not None:
        from ..files.atomic import write_text

        write_text(out, compare_html(runs))
    return format_table(runs), runs
