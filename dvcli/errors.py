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


def check_file(path: Path, kind: str) -> None:
    """Refuse a path that is missing, a folder or 0 bytes, naming it as ``kind`` ("audio file", "checkpoint").

    Raises:
        UserError: ``PATH: audio file not found`` / ``is a folder, expected an audio file`` /
            ``audio file is empty (0 bytes)``.
    """
    if not path.exists():
        raise path_error(path, f"{kind} not found")
    if path.is_dir():
        article = "an" if kind[0] in "aeiou" else "a"
        raise path_error(path, f"is a folder, expected {article} {kind}")
    if path.stat().st_size == 0:
        raise path_error(path, f"{kind} is empty (0 bytes)")


#: errno values that describe the user's system, not a bug in dv.
_SYSTEM_ERRNOS = {
    "ENOSPC",
    "EDQUOT",
    "EACCES",
    "EPERM",
    "EROFS",
    "ENOTDIR",
    "EISDIR",
    "EMFILE",
    "ENAMETOOLONG",
    "EEXIST",
    "ENOENT",
}


def system_error(err: OSError) -> UserError | None:
    """The user's error an ``OSError`` stands for (no space, permission, read-only...), as one line
    naming the path and the cause; ``None`` for an OSError that is not about the user's system.

    ``not found`` is kept for paths that do not exist (``ENOENT``).
    """
    import errno as errno_module

    name = errno_module.errorcode.get(err.errno or 0, "")
    if name not in _SYSTEM_ERRNOS:
        return None
    cause = {
        "ENOSPC": "no space left on the device",
        "EDQUOT": "disk quota exceeded",
        "EROFS": "read-only file system",
        "EACCES": "permission denied",
        "EPERM": "operation not permitted",
        "ENOENT": "not found",
        "ENOTDIR": "a part of the path is a file, not a folder",
        "EISDIR": "is a folder, not a file",
    }.get(name, err.strerror or name)
    where = err.filename if err.filename is not None else "dv"
    if err.filename2 is not None:
        where = f"{where} -> {err.filename2}"
    return UserError(f"{where}: {cause} ({err.strerror or name})")
