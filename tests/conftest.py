"""Shared fixtures: everything offline, small and seeded."""

from __future__ import annotations

import pytest
import torch

# Test models are tiny: one thread is faster than two fighting over the cores (and than thread
# pools contending with other processes on a shared machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
