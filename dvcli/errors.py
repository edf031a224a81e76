"""The one exception type for mistakes a user can fix.

Library code raises :class:`UserError` with a message that names the file (or setting) at fault and
says what to do about it. The CLI prints the message on one line of stderr and exits with status 2;
anything else that escapes is a bug in dv and keeps its traceback under ``--verbose``.
"""

from __future__ import annotations

from pathlib import Path

#: Exit status for a user's mistake (bad input, bad option, missing file).
EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix; its message is shown as one line, without a traceback."""

    def __init__(self, message: str) -> None:
        # One line only: a multi-line message would read like a traceback in a terminal.
        super().__init__(" ".join(str(message).split()))


def path_error(path: str | Path, problem: str, fix: str = "") -> UserError:
    """Build a :class:`UserError` of the form ``PATH: problem (fix)``."""
    message = f"{path}: {problem}"
    if fix:
        message += f" ({fix})"
    return UserError(message)
