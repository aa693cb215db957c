"""The one user-error type: every command turns it into ``bench: error: ...`` and exit status 2.

A user error is something the user can fix by changing the command, the config or the files: an
unknown name, a value out of range, a missing or malformed dataset, an unwritable results folder.
Each part of the harness derives its own error kinds from it (``ConfigError``, ``DataError``,
``TokenizerError``, ...), so callers catch one type.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; shown as one line, never as a traceback."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line for a one-line error: its first non-empty line, at most
    ``limit`` characters; its type's name when the message is empty."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:limit]
