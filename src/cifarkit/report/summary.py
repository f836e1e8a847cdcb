"""A run's numbers in words and units, for report.html: the summary sentence and table, and the formatting of a
number read from a run's files (which may hold anything: a field of the wrong type shows as "-" or is left out).
"""

from __future__ import annotations

import math
from typing import Any

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def number(value: Any) -> float | None:
    """`value` if it is a finite number (results.json read from disk may hold anything), else None."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:,.0f} s)" if seconds >= 60 else f"{seconds:.1f} s"


def percent(value: Any) -> str:
    value_or_none = number(value)
    return "-" if value_or_none is None else f"{value_or_none:.2%}"


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else "-"
    return str(v)


def summary(config: dict[str, Any], results: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(one sentence, {what: value}) of a finished run, in words and units; a field the run did not write (or
    wrote with the wrong type) is left out."""
    get = {**config, **results}.get
    dataset = str(get("dataset", "cifar10"))
    name = DATASET_NAMES.get(dataset, dataset) + (
        f" ({config['labels']} labels)" if dataset == "cifar100" and "labels" in config else ""
    )
    rows: dict[str, str] = {}
    if (acc := number(results.get("test_accuracy"))) is not None:
        views = f", test-time augmentation {get('tta')}" if get("tta") not in (None, "none") else ""
        images = f" of {int(n):,} test images" if (n := number(results.get("n_test"))) is not None else ""
        loss = f" (loss {loss:.4f})" if (loss := number(results.get("test_loss"))) is not None else ""
        rows["Test accuracy"] = f"{acc:.2%}{images}{loss}{views}"
    if (acc := number(results.get("val_accuracy"))) is not None:
        rows["Validation accuracy"] = f"{acc:.2%}" + (
            f" of {int(n):,} images held out of training" if (n := number(results.get("n_val"))) is not None else ""
        )
    if (acc := number(results.get("train_accuracy"))) is not None:
        rows["Training accuracy"] = f"{acc:.2%} in the last epoch (on augmented images)"
    wall, steps = number(results.get("wall_time_s")), number(results.get("train_seconds"))
    if wall is not None:
        rows["Training time"] = duration(wall) + (
            f", of which {duration(steps)} training steps" if steps is not None else ""
        )
    if (speed := number(results.get("train_images_per_second"))) is not None:
        seen = number(results.get("train_images_seen"))
        rows["Speed"] = f"{speed:,.0f} training images/s" + (f" ({int(seen):,} images seen)" if seen else "")
    counts = [
        f"{int(n):,} {what}"
        for key, what in (
            ("classes", "classes"),
            ("n_train", "training images"),
            ("n_val", "validation images"),
            ("n_test", "test images"),
        )
        if (n := number(results.get(key))) is not None
    ]
    rows["Dataset"] = (
        name
        + (f": {', '.join(counts)}" if counts else "")
        + (f", read from {results['data']}" if isinstance(results.get("data"), str) else "")
    )
    params = number(results.get("params"))
    rows["Model"] = str(get("model", "?")) + (f", {int(params):,} parameters" if params is not None else "")
    lr, source = number(results.get("max_lr")), results.get("max_lr_source")
    plan = [
        f"{get('epochs')} epochs" if number(get("epochs")) is not None else "",
        f"batch size {get('batch_size')}" if number(get("batch_size")) is not None else "",
        f"max lr {lr:.3g}" + (" (found by the LR range test)" if source == "lr-find" else "") if lr is not None else "",
    ]
    rows["Preset"] = str(get("preset", "?")) + (f": {', '.join(p for p in plan if p)}" if any(plan) else "")
    device = str(results.get("gpu") or results.get("device") or "")
    cpu = (
        f"{results['cpu']}" + (f" ({results['cpu_kind']})" if results.get("cpu_kind") else "")
        if results.get("cpu")
        else ""
    )
    threads = number(results.get("torch_threads"))
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
    epochs = f" after {get('epochs')} epochs" if number(get("epochs")) is not None else ""
    took = f" in {duration(wall)}" if wall is not None else ""
    reached = (
        f"reached {percent(results.get('test_accuracy'))} test accuracy" if "Test accuracy" in rows else "finished"
    )
    return f"{get('model', 'The model')} on {name} {reached}{epochs}{took}.", rows
