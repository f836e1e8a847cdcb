"""The data audit: probable label errors, duplicates (within a split and between the training and test splits)
and outliers, found by cleanlab from out-of-sample probabilities and the model's features (its embeddings for
outliers, a middle layer's appearance for duplicates); shown in audit.html, listed in audit.csv, and taken back by
`cifarkit train --exclude` (exclude.txt).

    from cifarkit.audit import audit
    summary = audit("runs/fast-1", split="all", folds=5)    # RUN_DIR/audit/{audit.csv,audit.json,audit.html,...}

Modules: run (the audit top to bottom), folds (K-fold run folders), predict (probabilities, embeddings, appearance),
issues (Datalab and train/test duplicates), outputs (the files), page (audit.html); exclude lists are read by
config/exclude_list.py and applied by data/exclude.py.
`cifarkit.audit(...)` is `cifarkit.audit.audit(...)`: the package is callable, as the design's public API names it.
Importing this package loads neither torch nor cleanlab: `audit` loads them when first used.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ..config.exclude_list import parse_exclude_text, read_exclude_file

__all__ = ["audit", "exclude_images", "parse_exclude_text", "read_exclude_file"]


def __getattr__(name: str) -> Any:
    if name == "audit":
        from .run import audit

        return audit
    if name == "exclude_images":  # data/ loads torch
        from ..data.exclude import exclude_images

        return exclude_images
    raise AttributeError(f"module 'cifarkit.audit' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """This package, callable as its `audit` function (`cifarkit.audit(run_dir, ...)`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
