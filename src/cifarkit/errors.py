"""The one exception type for mistakes a user can fix (bad flag, missing file...).

The CLI prints its message and exits with code 2, without a traceback;
anything else is a bug and keeps its traceback (exit 1).
"""


class UserError(Exception):
    """An error caused by input the user controls; the message says what to do."""


class RecipeFailed(UserError):
    """The run's own settings failed on its data (the recipe's fault, not the program's): a sweep records the trial
    as failed and goes on."""


class Diverged(RecipeFailed):
    """The training loss became NaN or infinite."""


class Unschedulable(RecipeFailed):
    """One Cycle cannot be laid over the run's steps (its peak would fall on the first step)."""


class Stopped(UserError):
    """Ctrl-C or SIGTERM stopped training after writing a checkpoint (the message says how to continue)."""
