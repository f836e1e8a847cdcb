"""RUN_DIR/report.html: one self-contained page a person reads (plots embedded), built from the run folder's
files alone, so `cifarkit report RUN_DIR` can rebuild it anywhere.

It opens with a summary in words and units (accuracy in %, time in minutes, what ran where), then what
`cifarkit evaluate` measured since, the curves and plots, the model, and every setting and result as stored.
"""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..rundir.run_dir import (
    COMMAND_PLOTS,
    CONFIG,
    LR_FIND_PLOT,
    METRICS,
    MODEL_SUMMARY,
    PLOTS,
    REPORT,
    RESULTS,
    RunDir,
)
from .figures import plot_curves

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
h2{margin-top:2em;border-bottom:1px solid #ddd}.lead{font-size:1.15em}.summary th{background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}"""
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
EVALUATIONS = "evaluate-*.json"  # what `cifarkit evaluate` writes into a run folder by default


def _number(value: Any) -> float | None:
    """`value` if it is a finite number (results.json read from disk may hold anything), else None."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:,.0f} s)" if seconds >= 60 else f"{seconds:.1f} s"


def _percent(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.2%}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else "-"
    return str(v)


def _table(rows: dict[str, Any], css: str = "") -> str:
    return (
        f"<table class='{css}'>"
        + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items())
        + "</table>"
    )


def summary(config: dict[str, Any], results: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(one sentence, {what: value}) of a finished run, in words and units; a field the run did not write (or
    wrote with the wrong type) is left out."""
    get = {**config, **results}.get
    dataset = str(get("dataset", "cifar10"))
    name = DATASET_NAMES.get(dataset, dataset) + (
        f" ({config['labels']} labels)" if dataset == "cifar100" and "labels" in config else ""
    )
    rows: dict[str, str] = {}
    if (acc := _number(results.get("test_accuracy"))) is not None:
        views = f", test-time augmentation {get('tta')}" if get("tta") not in (None, "none") else ""
        images = f" of {int(n):,} test images" if (n := _number(results.get("n_test"))) is not None else ""
        loss = f" (loss {loss:.4f})" if (loss := _number(results.get("test_loss"))) is not None else ""
        rows["Test accuracy"] = f"{acc:.2%}{images}{loss}{views}"
    if (acc := _number(results.get("val_accuracy"))) is not None:
        rows["Validation accuracy"] = f"{acc:.2%}" + (
            f" of {int(n):,} images held out of training" if (n := _number(results.get("n_val"))) is not None else ""
        )
    if (acc := _number(results.get("train_accuracy"))) is not None:
        rows["Training accuracy"] = f"{acc:.2%} in the last epoch (on augmented images)"
    wall, steps = _number(results.get("wall_time_s")), _number(results.get("train_seconds"))
    if wall is not None:
        rows["Training time"] = _duration(wall) + (
            f", of which {_duration(steps)} training steps" if steps is not None else ""
        )
    if (speed := _number(results.get("train_images_per_second"))) is not None:
        seen = _number(results.get("train_images_seen"))
        rows["Speed"] = f"{speed:,.0f} training images/s" + (f" ({int(seen):,} images seen)" if seen else "")
    counts = [
        f"{int(n):,} {what}"
        for key, what in (
            ("classes", "classes"),
            ("n_train", "training images"),
            ("n_val", "validation images"),
            ("n_test", "test images"),
        )
        if (n := _number(results.get(key))) is not None
    ]
    rows["Dataset"] = (
        name
        + (f": {', '.join(counts)}" if counts else "")
        + (f", read from {results['data']}" if isinstance(results.get("data"), str) else "")
    )
    params = _number(results.get("params"))
    rows["Model"] = str(get("model", "?")) + (f", {int(params):,} parameters" if params is not None else "")
    lr, source = _number(results.get("max_lr")), results.get("max_lr_source")
    plan = [
        f"{get('epochs')} epochs" if _number(get("epochs")) is not None else "",
        f"batch size {get('batch_size')}" if _number(get("batch_size")) is not None else "",
        f"max lr {lr:.3g}" + (" (found by the LR range test)" if source == "lr-find" else "") if lr is not None else "",
    ]
    rows["Preset"] = str(get("preset", "?")) + (f": {', '.join(p for p in plan if p)}" if any(plan) else "")
    device = str(results.get("gpu") or results.get("device") or "")
    cpu = (
        f"{results['cpu']}" + (f" ({results['cpu_kind']})" if results.get("cpu_kind") else "")
        if results.get("cpu")
        else ""
    )
    threads = _number(results.get("torch_threads"))
    machine = [
        device and f"device {device}",
        cpu,
        f"{int(threads)} torch threads" if threads is not None else "",
        f"precision {results['dtype']}" if results.get("dtype") else "",
    ]
    if any(machine):
        rows["Machine"] = ", ".join(m for m in machine if m)
    versions = [f"{k} {results[k]}" for k in ("cifarkit", "torch", "python") if results.get(k)]
    if versions:
        rows["Software"] = ", ".join(versions)
    epochs = f" after {get('epochs')} epochs" if _number(get("epochs")) is not None else ""
    took = f" in {_duration(wall)}" if wall is not None else ""
    reached = (
        f"reached {_percent(results.get('test_accuracy'))} test accuracy" if "Test accuracy" in rows else "finished"
    )
    return f"{get('model', 'The model')} on {name} {reached}{epochs}{took}.", rows


def evaluations(run: RunDir) -> str:
    """The evaluate-*.json files the run folder holds (what `cifarkit evaluate` measured since), as HTML: one row
    each, then the accuracy of every class by file; a file that cannot be read says why in its row."""
    rows, per_class, names = [], {}, []
    for path in sorted(run.path.glob(EVALUATIONS)):
        if run.regular_file(path.name) is None:  # a symlink out of the folder, a folder: not the run's
            continue
        try:
            result = run.read_json(path.name) or {}
        except UserError as e:
            rows.append(
                f"<tr><td>{html.escape(path.name)}</td><td colspan='5'>not shown: {html.escape(str(e))}</td></tr>"
            )
            continue
        n = _number(result.get("n_test"))
        loss = _number(result.get("test_loss"))
        cells = [
            path.name,
            str(result.get("tta", "-")),
            f"{int(n):,}" if n is not None else "-",
            _percent(result.get("test_accuracy")),
            f"{loss:.4f}" if loss is not None else "-",
            " ".join(str(result[k]) for k in ("device", "dtype") if k in result),
        ]
        rows.append(
            "<tr>"
            + "".join(
                f"<td class='num'>{html.escape(c)}</td>" if i in (2, 3, 4) else f"<td>{html.escape(c)}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
        if isinstance(result.get("per_class_accuracy"), dict):
            names.append(path.name)
            for cls, acc in result["per_class_accuracy"].items():
                per_class.setdefault(str(cls), {})[path.name] = _percent(acc)
    if not rows:
        return ""
    parts = [
        (
            "<h2>Evaluations after the run</h2><p>What <code>cifarkit evaluate RUN_DIR</code> measured with "
            "the run's final weights (one file per test-time augmentation).</p><table><tr><th>file</th>"
            "<th>test-time augmentation</th><th>test images</th><th>test accuracy</th><th>test loss</th>"
            "<th>device, precision</th></tr>"
        ),
        *rows,
        "</table>",
    ]
    if per_class:
        parts.append(
            f"<details><summary>Accuracy per class ({len(per_class)} classes)</summary><table><tr>"
            "<th>class</th>"
            + "".join(f"<th>{html.escape(n)}</th>" for n in names)
            + "</tr>"
            + "".join(
                f"<tr><td>{html.escape(cls)}</td>"
                + "".join(f"<td class='num'>{html.escape(accs.get(n, '-'))}</td>" for n in names)
                + "</tr>"
                for cls, accs in per_class.items()
            )
            + "</table></details>"
        )
    return "".join(parts)


# metrics.csv's columns as the per-epoch table heads them and writes their values (a column not named here: as is)
COLUMNS = {
    "epoch": ("epoch", "{:.0f}"),
    "lr": ("lr (end of epoch)", "{:.3g}"),
    "train_loss": ("train loss", "{:.4f}"),
    "train_acc": ("train accuracy", "{:.2%}"),
    "val_loss": ("validation loss", "{:.4f}"),
    "val_acc": ("validation accuracy", "{:.2%}"),
    "test_loss": ("test loss", "{:.4f}"),
    "test_acc": ("test accuracy", "{:.2%}"),
    "images_per_s": ("training images/s", "{:,.0f}"),
    "seconds": ("time in training steps", "{:,.1f} s"),
}


def per_epoch(history: list[dict[str, float]]) -> str:
    """metrics.csv as a table in words and units; an epoch not evaluated (eval_every) shows "-"."""
    head = list(history[0]) if history else []

    def cell(key: str, value: float) -> str:
        number = _number(value)
        return "-" if number is None else COLUMNS[key][1].format(number) if key in COLUMNS else _fmt(value)

    return (
        "<h2>Per epoch</h2><table><tr>"
        + "".join(f"<th>{html.escape(COLUMNS.get(h, (h,))[0])}</th>" for h in head)
        + "</tr>"
        + "".join(
            "<tr>" + "".join(f"<td class='num'>{html.escape(cell(h, r[h]))}</td>" for h in head) + "</tr>"
            for r in history
        )
        + "</table>"
    )


def _no_range_test(config: dict[str, Any], results: dict[str, Any]) -> str:
    """What stands where the LR range test's plot would be, in a run that had none."""
    lr = _number(results.get("max_lr"))
    if config.get("max_lr") == "find":  # the run began with one, whose plot is gone
        had = f"This run's LR range test left no <code>{LR_FIND_PLOT}</code> in the folder. "
    else:
        given = f" {lr:.3g}" if lr is not None else ""
        had = f"This run had no LR range test: its max lr{given} was set in its settings. "
    return (
        "<h2>LR range test</h2><p>"
        + had
        + "A range test's plot stands here (<code>lr_find.png</code>) when a run starts with one: "
        "<code>cifarkit train --max-lr find</code>. To test this run's settings alone: "
        f"<code>cifarkit lr-find --config {html.escape(str(Path('RUN_DIR') / CONFIG))} --out DIR</code> "
        "writes <code>DIR/lr_find.png</code>, and suggests a <code>--max-lr</code>.</p>"
    )


def write_report(run_dir: str | os.PathLike | RunDir) -> Path:
    """RUN_DIR/report.html: one self-contained page (plots embedded) built from the run folder's files."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    config = run.read_json(CONFIG)
    if config is None:
        raise UserError(f"{run.path}: no config.json; not a cifarkit run folder")
    results = run.read_results() or {}
    for name, value in ((CONFIG, config), (RESULTS, results)):
        if not isinstance(value, dict):
            raise UserError(f"{run / name}: not a cifarkit {name} (expected an object of name: value)")
    history = run.read_metrics() if (run / METRICS).exists() else None
    if history is not None:
        plot_curves(history, run.plot("curves"))
    name = html.escape(run.path.name)
    parts = [
        (
            f"<!doctype html><html><head><meta charset='utf-8'><title>cifarkit run {name}</title>"
            f"<style>{STYLE}</style></head><body><h1>cifarkit run <code>{name}</code></h1>"
        )
    ]
    if results:
        sentence, rows = summary(config, results)
        parts.append(f"<p class='lead'>{html.escape(sentence)}</p><h2>Summary</h2>" + _table(rows, "summary"))
    else:
        parts.append("<p><b>This run has not finished</b>: no results.json yet.</p>")
    parts.append(evaluations(run))
    if history is not None:
        parts.append(per_epoch(history))
    for file, heading in (*PLOTS, *COMMAND_PLOTS):  # only regular files inside the folder: never a symlink out
        if (image := run.read_bytes(file)) is not None:
            data = base64.b64encode(image).decode()
            parts.append(
                f"<h2>{heading}</h2><img alt='{heading}' data-file='{file}' src='data:image/png;base64,{data}'>"
            )
        elif file == LR_FIND_PLOT:
            parts.append(_no_range_test(config, results))
    if (model := run.read_bytes(MODEL_SUMMARY)) is not None:
        parts.append("<h2>Model</h2><pre>" + html.escape(model.decode(errors="replace")) + "</pre>")
    parts.append("<h2>Settings (config.json)</h2>" + _table(config))
    if results:
        parts.append("<h2>Every result (results.json)</h2>" + _table(results))
    parts.append("</body></html>\n")
    run.write_text(REPORT, "".join(parts))
    return run / REPORT
