"""Shared fixtures: everything offline, small and seeded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Every test on one torch thread, restored afterwards (stages under test may set their own).

    Test models are tiny: one thread is faster than two fighting over the cores, and on a shared,
    busy two-core machine OpenMP barriers made two threads 5-20x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_sessionstart(session: pytest.Session) -> None:
    """A broken install stops the run with one line, not an import error in every test file."""
    from dvcli.entry import import_failure

    failure = import_failure()
    if failure is not None:
        pytest.exit(failure, returncode=3)
