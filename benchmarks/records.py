"""Benchmark records: one JSON file per measured sitting in benchmarks/results/, and the docs' tables made from them.

A record says what was measured, when, on what and how, and holds the per-seed (or per-row) numbers, never a
summary: the means and spreads in the docs are computed here from those numbers.

    {"title": "...", "questions": ["accuracy", "time_to_94", "gpu", ...], "date": "2026-11-26", "commit": "2998f34",
     "machine": "the machine line the benchmark printed", "hardware": "short label", "precision": "bf16",
     "command": "python benchmarks/time_to_accuracy.py ...", "config": {"preset": "fast", ...},
     "runs": [{"seed": 0, "test_accuracy": 93.91, "final_s": 455.1, "train_images_per_s": 1004}, ...],
     "baseline": {"config": {"preset": "fast-v1"}, "runs": [...]},            (optional)
     "rows": [{"pipeline": "...", "images_per_s": 343.3, "tflops": 0.78, "share_of_peak": 0.71}, ...],  (throughput)
     "note": "..."}

test_accuracy is in percent; final_s is the wall time from the data on disk to the final test number.
`python benchmarks/records.py [QUESTION]` prints the tables. time_to_accuracy.py --record FILE writes a record.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
QUESTIONS = {
    "accuracy": "Accuracy of the presets on a CPU",
    "time_to_94": "Time to 94 % (or to the preset's target) against the baseline, in the same sitting",
    "gpu": "On a GPU",
    "throughput": "Training throughput and share of the measured peak",
    "history": "Earlier recipes and checks",
}
REQUIRED = ("title", "questions", "date", "commit", "machine", "hardware", "command")


def load(folder: Path = RESULTS) -> list[dict[str, Any]]:
    """Every record in `folder`, checked, oldest first (then by file name)."""
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        missing = [k for k in REQUIRED if k not in record]
        unknown = [q for q in record.get("questions", []) if q not in QUESTIONS]
        if missing or unknown or not (record.get("runs") or record.get("rows")):
            raise ValueError(
                f"{path}: a benchmark record needs {', '.join(REQUIRED)} and runs or rows "
                f"(missing: {missing or 'none'}; unknown questions: {unknown or 'none'})"
            )
        found.append({**record, "file": path.name})
    return sorted(found, key=lambda r: (r["date"], r["file"]))


def seed_runs(rows: list[dict]) -> list[dict]:
    """time_to_accuracy.py's per-seed rows as a record's runs (accuracy in percent)."""
    return [
        {
            "seed": r["seed"],
            "test_accuracy": round(r["test_accuracy"] * 100, 2),
            "final_s": round(r["final_s"], 1),
            "train_images_per_s": round(r["results"]["train_images_per_second"], 1),
        }
        for r in rows
    ]


def settings_given(config: dict, preset_config: dict) -> dict:
    """The preset and the settings that differ from it, the machine's own (data folder, threads) left out."""
    machine = {"data_dir", "threads", "seed", "preset"}
    return {
        "preset": config["preset"],
        **{k: v for k, v in config.items() if k not in machine and preset_config.get(k) != v},
    }


def hardware_of(info: dict) -> str:
    """A short label for the tables: the GPU's name, else the CPU's kind and count."""
    if info.get("gpu"):
        return info["gpu"]
    limited = " (kernels limited)" if info.get("kernel_limits") else ""
    return f"{info.get('cpu_count')}-CPU {info.get('cpu_kind')}{limited}"


def git_commit(folder: Path) -> str:
    """The checkout's short commit, with "+changes" when files differ from it; "unknown" outside a git checkout."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_record(
    *,
    title: str,
    command: str,
    machine_line: str,
    info: dict,
    precision: str,
    config: dict,
    runs: list[dict],
    baseline: dict | None,
    date: str,
    commit: str,
) -> dict:
    """A record of one sitting, as load() reads it."""
    record = {
        "title": title,
        "questions": ["accuracy"] + (["time_to_94"] if baseline else []),
        "date": date,
        "commit": commit,
        "machine": machine_line,
        "hardware": hardware_of(info),
        "precision": precision,
        "command": command,
        "config": config,
        "runs": runs,
    }
    if info.get("gpu"):
        record["questions"].append("gpu")
    if baseline:
        record["baseline"] = baseline
    return record


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def spread(values: list[float], digits: int = 2, unit: str = "") -> str:
    if not values:
        return ""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}{unit}" if len(values) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}{unit}"


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:,.0f} s ({seconds / 60:.1f} min)"


def duration_spread(values: list[float]) -> str:
    """Mean ± std of seconds, with minutes beside long ones: "451 ± 5 s (7.5 min)"."""
    mean, std = mean_std(values)
    digits = 1 if mean < 100 else 0
    text = f"{mean:,.{digits}f}" + (f" ± {std:,.{digits}f}" if len(values) > 1 else "") + " s"
    return text + (f" ({mean / 60:.1f} min)" if mean >= 100 else "")


def _range(values: list[float]) -> str:
    if not values:
        return ""
    return f"{min(values):,.0f}" if min(values) == max(values) else f"{min(values):,.0f}-{max(values):,.0f}"


def _runs(runs: list[dict], key: str) -> list[float]:
    return [r[key] for r in runs if r.get(key) is not None]


def what(record: dict) -> str:
    """The run's recipe: its preset and the settings given beside it."""
    config = dict(record.get("config", {}))
    preset = config.pop("preset", "")
    extra = " ".join(f"{k}={v}" for k, v in config.items())
    return f"`{preset}`" + (f" ({extra})" if extra else "")


def _link(record: dict) -> str:
    return f"[{record['date']}, {record['commit']}](#{record['file'][:-5]})"


def accuracy_table(records: list[dict]) -> str:
    lines = [
        (
            "| recipe | hardware | precision | seeds | test accuracy, % (min) | to the final number | "
            "train img/s | measured |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        acc, final = _runs(r["runs"], "test_accuracy"), _runs(r["runs"], "final_s")
        ips = _runs(r["runs"], "train_images_per_s")
        seconds = duration_spread(final) if final else r.get("time_note", "")
        lines.append(
            f"| {what(r)} | {r['hardware']} | {r.get('precision', '')} | {len(acc)} | "
            f"**{spread(acc)}**"
            + (f" ({min(acc):.2f})" if len(acc) > 1 else "")
            + f" | {seconds} | {_range(ips)} | {_link(r)} |"
        )
    return "\n".join(lines)


def time_to_94_table(records: list[dict]) -> str:
    lines = [
        (
            "| recipe | baseline | hardware | test accuracy, % | baseline's, % | to the final number | "
            "baseline's | ratio | measured |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        base = r["baseline"]
        final, base_final = _runs(r["runs"], "final_s"), _runs(base["runs"], "final_s")
        ratio = mean_std(final)[0] / mean_std(base_final)[0]
        lines.append(
            f"| {what(r)} | {what(base)} | {r['hardware']} | {spread(_runs(r['runs'], 'test_accuracy'))} | "
            f"{spread(_runs(base['runs'], 'test_accuracy'))} | {duration(mean_std(final)[0])} | "
            f"{duration(mean_std(base_final)[0])} | **{ratio:.2f}×** | {_link(r)} |"
        )
    return "\n".join(lines)


def throughput_tables(records: list[dict]) -> str:
    parts = []
    for r in records:
        first = r["rows"][0]["images_per_s"]
        lines = [
            f"**{r['title']}** ({r['hardware']}; {_link(r)})",
            "",
            "| pipeline | img/s | vs the first row | TFLOP/s | share of the measured peak |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in r["rows"]:
            tflops, share = row.get("tflops"), row.get("share_of_peak")
            lines.append(
                f"| {row['pipeline']} | {row['images_per_s']:,.1f} | {row['images_per_s'] / first:.2f}× | "
                f"{'' if tflops is None else f'{tflops:.3g}'} | "
                f"{'' if share is None else f'{share:.0%}'} |"
            )
        if r.get("note"):
            lines += ["", r["note"]]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def markdown_table(records: list[dict], question: str) -> str:
    """The docs' table for one question, from the records that answer it."""
    if question not in QUESTIONS:
        raise ValueError(f"results table {question!r}: choose one of {', '.join(QUESTIONS)}")
    chosen = [r for r in records if question in r["questions"]]
    if question == "throughput":
        return throughput_tables(chosen)
    if question == "time_to_94":
        return time_to_94_table([r for r in chosen if r.get("baseline")])
    return accuracy_table([r for r in chosen if r.get("runs")])


def markdown_list(records: list[dict]) -> str:
    """Each record's date, commit, machine line and exact command, with an anchor the tables link to."""
    parts = []
    for r in records:
        parts.append(
            "\n".join(
                [
                    f"### {r['date']} ({r['commit']}): {r['title']} {{#{r['file'][:-5]}}}",
                    "",
                    f"- machine: {r['machine']}",
                    f"- record: `benchmarks/results/{r['file']}`",
                    "",
                    "```bash",
                    r["command"],
                    "```",
                    *([r["note"]] if r.get("note") else []),
                ]
            )
        )
    return "\n\n".join(parts)


if __name__ == "__main__":
    every = load()
    for q in sys.argv[1:] or list(QUESTIONS):
        print(f"## {QUESTIONS.get(q, q)}\n\n{markdown_table(every, q)}\n")
