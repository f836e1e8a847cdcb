"""RUN_DIR/report.html: one self-contained page a person reads (plots embedded), built from the run folder's
files alone, so `cifarkit report RUN_DIR` can rebuild it anywhere.

It opens with a summary in words and units (accuracy in %, time in minutes, what ran where), then what
`cifarkit evaluate` measured since, the curves and plots, the model, and every setting and result as stored.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..rundir.run_dir import COMMAND_PLOTS, CONFIG, LR_FIND_PLOT, METRICS, MODEL_SUMMARY, PLOTS, REPORT, RESULTS, RunDir
from .figures import plot_curves
from .sections import audit_section, evaluations, no_range_test, per_epoch
from .summary import fmt, summary

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
h2{margin-top:2em;border-bottom:1px solid #ddd}.lead{font-size:1.15em}.summary th{background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}"""


def _table(rows: dict[str, Any], css: str = "") -> str:
    return (
        f"<table class='{css}'>"
        + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(fmt(v))}</td></tr>" for k, v in rows.items())
        + "</table>"
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
    parts.append(audit_section(run))
    if history is not None:
        parts.append(per_epoch(history))
    for file, heading in (*PLOTS, *COMMAND_PLOTS):  # only regular files inside the folder: never a symlink out
        if (image := run.read_bytes(file)) is not None:
            data = base64.b64encode(image).decode()
            parts.append(
                f"<h2>{heading}</h2><img alt='{heading}' data-file='{file}' src='data:image/png;base64,{data}'>"
            )
        elif file == LR_FIND_PLOT:
            parts.append(no_range_test(config, results))
    if (model := run.read_bytes(MODEL_SUMMARY)) is not None:
        parts.append("<h2>Model</h2><pre>" + html.escape(model.decode(errors="replace")) + "</pre>")
    parts.append("<h2>Settings (config.json)</h2>" + _table(config))
    if results:
        parts.append("<h2>Every result (results.json)</h2>" + _table(results))
    parts.append("</body></html>\n")
    run.write_text(REPORT, "".join(parts))
    return run / REPORT
