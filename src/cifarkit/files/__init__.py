"""Files a user controls: read through one checked reader (a regular file, bounded size and JSON
nesting) and written atomically (the old file or the new one, never a torn one).
"""

from .atomic import WriteError, atomic_open, save_torch, write_bytes, write_json, write_text
from .reader import open_regular, read_bytes, read_json, read_text

__all__ = [
    "WriteError",
    "atomic_open",
    "open_regular",
    "read_bytes",
    "read_json",
    "read_text",
    "save_torch",
    "write_bytes",
    "write_json",
    "write_text",
]
