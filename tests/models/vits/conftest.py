"""VITS tests run on one thread: OpenMP barriers with two threads on a shared, busy two-core
machine made steps 5-20x slower than with one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
