"""Atomic writes: a file or a folder appears complete under its final name, or not at all.

A stage killed half-way must never leave an output that a later stage could mistake for a finished
one. Files are written to a temporary name in the same folder and renamed (``os.replace`` is atomic
on POSIX within one file system); output folders are filled under a temporary name and renamed into
place at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dvcli.errors import UserError

#: Name of the file that marks a folder as a finished dv output (written last).
META_FILE = "meta.json"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process's umask, read once (``os.umask`` can only be read by setting it, which is not thread-safe).
_UMASK = _read_umask()


def publish_mode(path: Path, *, folder: bool = False) -> None:
    """Give a temporary file or folder the mode a plain ``open``/``mkdir`` would have (0666 or 0777
    under the user's umask): ``mkstemp``/``mkdtemp`` make them private (0600/0700)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_UMASK)


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on output folder ``out`` for a whole run (``filelock``: ``fcntl`` on POSIX).

    The lock file is ``.OUT.lock`` beside ``OUT``. Under ``torchrun`` only rank 0 takes it (the other
    ranks write nothing of their own there).

    Raises:
        UserError: another dv run holds the lock on ``out``.
    """
    from filelock import FileLock, Timeout

    out = Path(out)
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_name(f".{out.name}.lock")
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(
            f"{out}: another dv run is writing this output folder (wait for it to end, or choose another -o)"
        ) from None
    try:
        yield
    finally:
        # Removed while still held, so a run leaves no lock file behind. A run that opened the old
        # file meanwhile finds it unlinked once it gets the lock, and filelock (4.x) retries on a
        # new one: never two holders.
        with contextlib.suppress(OSError):
            path.unlink()
        lock.release()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, else delete it.

    Use it with libraries that write to a filename themselves (``torch.save``, ``soundfile.write``)::

        with atomic_path(out) as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():
            publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def is_dv_output(path: Path) -> bool:
    """True when ``path`` is a folder that a dv stage finished (it holds ``meta.json``)."""
    return (path / META_FILE).is_file()


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``path`` in one rename.

    An existing ``path`` is replaced only when ``replace`` is true and it is empty or a finished dv
    output (it has ``meta.json``), so a mistyped ``-o ~`` never deletes a user's files. The old folder
    is removed only after the new one is complete. On any exception the temporary folder is deleted
    and ``path`` is left as it was.

    Raises:
        UserError: ``path`` exists and may not be replaced.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{path}: exists and is not a folder (choose another output path)")
        if not replace:
            raise UserError(f"{path}: already exists (remove it or pass --force)")
        if any(path.iterdir()) and not is_dv_output(path):
            raise UserError(f"{path}: exists and is not a dv output folder; refusing to replace it (choose another -o)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        publish_mode(tmp, folder=True)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
