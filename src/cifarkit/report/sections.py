"""The parts of report.html read from files other commands add to a run folder, or that say what is missing:
`cifarkit evaluate`'s results, metrics.csv as a table, the LR range test a run did not have, and the data audit.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..rundir.checkpoint import checkpoint_changed
from ..rundir.names import AUDIT_CSV, AUDIT_FOLDER, AUDIT_HTML, AUDIT_JSON, EXCLUDE_TXT
from ..rundir.run_dir import CONFIG, LR_FIND_PLOT, RunDir
from .summary import fmt, number, percent

EVALUATIONS = "evaluate-*.json"  # what `cifarkit evaluate` writes into a run folder by default


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
        n = number(result.get("n_test"))
        loss = number(result.get("test_loss"))
        cells = [
            path.name,
            str(result.get("tta", "-")),
            f"{int(n):,}" if n is not None else "-",
            percent(result.get("test_accuracy")),
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
                per_class.setdefault(str(cls), {})[path.name] = percent(acc)
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
        value_or_none = number(value)
        return "-" if value_or_none is None else COLUMNS[key][1].format(value_or_none) if key in COLUMNS else fmt(value)

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


def no_range_test(config: dict[str, Any], results: dict[str, Any]) -> str:
    """What stands where the LR range test's plot would be, in a run that had none."""
    lr = number(results.get("max_lr"))
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


def audit_section(run: RunDir) -> str:
    """What `cifarkit audit RUN_DIR` found, linked: counts per split and issue from RUN_DIR/audit/audit.json, links to
    audit.html and exclude.txt; an audit begun but not finished says how to continue it; no audit, how to run one."""
    folder = f"{AUDIT_FOLDER}/"
    audit_dir = run.path / AUDIT_FOLDER
    try:
        found = run.read_json(folder + AUDIT_JSON)
    except UserError as e:
        return f"<h2>Data audit</h2><p>Not shown: {html.escape(str(e))}</p>"
    if found is None:
        if audit_dir.is_dir() and not audit_dir.is_symlink():
            return (
                "<h2>Data audit</h2><p>An audit of this run's data began in <code>audit/</code> but has not "
                "finished (no audit.json yet): the same <code>cifarkit audit RUN_DIR</code> command continues it, "
                "reusing the fold runs that finished.</p>"
            )
        return (
            "<h2>Data audit</h2><p>No audit of this run's data yet. <code>cifarkit audit RUN_DIR</code> finds "
            "probable label errors, duplicates (also between the training and test images) and outliers in the "
            "test split (<code>--split all</code>: the training split too), and links them here.</p>"
        )
    per_issue = found.get("counts", {}).get("per_issue", {}) if isinstance(found.get("counts"), dict) else {}
    images = found.get("images") if isinstance(found.get("images"), dict) else {}
    issues = sorted({issue for counts in per_issue.values() if isinstance(counts, dict) for issue in counts})
    rows = "".join(
        f"<tr><td>{html.escape(str(split))}</td><td class='num'>{html.escape(fmt(images.get(split, '-')))}</td>"
        + "".join(f"<td class='num'>{html.escape(fmt(counts.get(i, 0)))}</td>" for i in issues)
        + "</tr>"
        for split, counts in per_issue.items()
        if isinstance(counts, dict)
    )
    head = "".join(f"<th>{html.escape(i.replace('_', ' '))}</th>" for i in issues)
    excluded = number(found.get("excluded"))
    retrain = (
        f" <code>cifarkit train ... --exclude {html.escape(str(audit_dir / EXCLUDE_TXT))}</code> retrains without "
        f"the {int(excluded):,} training images it lists (probable label errors and duplicates of test images)."
        if excluded
        else ""
    )
    line = found.get("settings_line")
    stale = (
        "<p><b>This audit was made with an earlier model of this run</b> (its checkpoint has changed since): "
        "<code>cifarkit audit RUN_DIR</code> again audits the model the run has now.</p>"
        if checkpoint_changed(run, found.get("checkpoint_sha256"))
        else ""
    )
    return (
        "<h2>Data audit</h2>"
        + stale
        + "<p>What <code>cifarkit audit</code> found in this run's data"
        + (f" ({html.escape(line)})" if isinstance(line, str) else "")
        + f": <a href='{folder}{AUDIT_HTML}'>audit.html</a> shows the images, <a href='{folder}{AUDIT_CSV}'>"
        f"audit.csv</a> lists every flagged image, <a href='{folder}{EXCLUDE_TXT}'>exclude.txt</a> the training "
        f"images to leave out.{retrain}</p><table><tr><th>split</th><th>images audited</th>{head}</tr>{rows}</table>"
    )
