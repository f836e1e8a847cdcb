"""The ending of a finished run: what it adds to its folder after the last epoch (plots that need the model,
model.txt, results.json, report.html); a resumed run completes what an interrupted ending left missing.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..models.nets import build_model, summary
from ..report.figures import plot_results
from ..report.page import write_report
from ..rundir.run_dir import MODEL_SUMMARY, REPORT, RESULTS, RunDir
from .trainer import Trainer

# What a finished run adds to its folder after the last epoch (write_ending); a resume completes what is missing.
FINAL_FILES = (RESULTS, MODEL_SUMMARY, REPORT)


def write_ending(run: RunDir, trainer: Trainer, results: dict[str, Any]) -> None:
    """What a finished run adds to its folder: the plots that need the model, model.txt, results.json and
    report.html."""
    data = trainer.data
    probs = trainer.final_test_logits().softmax(1)  # once: without the last evaluation's logits, a TTA pass
    plot_results(run, data, trainer.batches.augment, probs, trainer.config.seed)
    run.write_text(MODEL_SUMMARY, summary(build_model(trainer.config.model, len(data.classes))))
    run.write_json(RESULTS, results)
    from ..report.gradcam import plot_mistakes_gradcam  # without captum: one line saying how to get it, no plot

    plot_mistakes_gradcam(run, data.test_images, data.test_labels, probs)
    write_report(run)


def complete_ending(run: RunDir, trainer: Trainer) -> dict[str, Any]:
    """A resumed run that trained all its epochs: write what its ending lacks, or refuse if nothing is left."""
    if all((run / name).exists() for name in FINAL_FILES):
        raise UserError(f"--resume {run.path}: the run already finished all {trainer.config.epochs} epochs")
    results = {**trainer.results(), "run_dir": str(run.path)}
    write_ending(run, trainer, results)
    return results
