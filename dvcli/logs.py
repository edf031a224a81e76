"""Logging and progress bars.

Library code logs through ``logging.getLogger(__name__)`` and shows progress through :func:`track`
or :func:`progress`; the CLI calls :func:`setup_logging` once to decide how loud both are. Progress
bars go to stderr and disappear under ``--quiet``; with stderr not a terminal rich prints nothing
animated, so logs stay clean in batch jobs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

#: The console all of dv's human-facing output goes to (stderr: stdout stays for data).
console = Console(stderr=True)
_state = {"quiet": False}


def setup_logging(verbosity: int = 0) -> None:
    """Configure the ``dv`` loggers: -1 quiet (warnings only, no bars), 0 info, 1 debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    _state["quiet"] = verbosity < 0
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(console=console, show_path=verbosity > 0, show_time=verbosity > 0, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        # Batch jobs and pipes: one unwrapped line per record, easy to grep.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    for name in ("dvcli", "stages"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def progress_enabled() -> bool:
    """False under ``--quiet``."""
    return not _state["quiet"]


@contextlib.contextmanager
def progress(*extra_columns: object) -> Iterator[Progress]:
    """A rich :class:`Progress` with dv's standard columns (plus ``extra_columns``).

    Example::

        with progress() as bar:
            task = bar.add_task("extracting", total=n)
            ...
            bar.advance(task)
    """
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
    ]
    bar = Progress(*columns, console=console, disable=not progress_enabled(), transient=False)
    with bar:
        yield bar


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress() as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
