"""What a person looks at: a run's figures, report.html, GradCAM grids, and several runs compared
(`cifarkit compare`: report/compare.py's `compare`, not named here so that the module keeps its name).
"""

from .compare import load_runs
from .figures import plot_results, plot_schedule
from .gradcam import gradcam_command
from .page import write_report

__all__ = ["gradcam_command", "load_runs", "plot_results", "plot_schedule", "write_report"]
