"""The run folder, the contract between train, report, evaluate, resume, compare, app and audit: the
name of every file in it, where commands may write, and the checkpoint.
"""

from .checkpoint import RunState, load_checkpoint
from .outputs import check_output, default_output, refuse_inside_data
from .run_dir import RunDir, run_of

__all__ = ["RunDir", "RunState", "check_output", "default_output", "load_checkpoint", "refuse_inside_data", "run_of"]
