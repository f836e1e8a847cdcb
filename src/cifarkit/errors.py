"""The one exception type for mistakes a user can fix (bad flag, missing file...).

The CLI prints its message and exits with code 2, without a traceback;
anything else is a bug and keeps its traceback (exit 1).
"""


class UserError(Exception):
    """An error caused by input the user controls; the message says what to do."""
