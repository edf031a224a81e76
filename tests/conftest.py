"""Shared fixtures: everything offline, small and seeded."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores on CI: keep each test process from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
