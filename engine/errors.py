"""User-facing errors that the command line prints as one line and exits 2 for.

They live at the bottom of the package so every layer (settings, assembly, the CLI) can raise them
without importing the CLI; anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class UsageError(Exception):
    """A bad command, setting or file the user can fix: printed as one line, exit code 2."""
