"""What a person looks at: a run's figures, report.html, GradCAM grids, and several runs compared."""

from .compare import compare, load_runs
from .figures import plot_results, plot_schedule
from .gradcam import gradcam_command
from .page import write_report

__all__ = ["compare", "gradcam_command", "load_runs", "plot_results", "plot_schedule", "write_report"]
