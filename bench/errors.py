"""The one user-error type: every command turns it into ``bench: error: ...`` and exit status 2.

A user error is something the user can fix by changing the command, the config or the files: an
unknown name, a value out of range, a missing or malformed dataset, an unwritable results folder.
Each part of the harness derives its own error kinds from it (``ConfigError``, ``DataError``,
``TokenizerError``, ...), so callers catch one type.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; shown as one line, never as a traceback."""
