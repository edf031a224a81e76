"""Random draws of the augmentation, always on the generator's device, then moved: reproducible on any device."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _rand(shape: Sequence[int], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=gen, device=gen.device).to(device)


def _randn(shape: Sequence[int], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen, device=gen.device).to(device)


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * _rand((n,), gen, device)


def _randint(high: int, n: int, gen: torch.Generator) -> list[int]:
    return torch.randint(high, (n,), generator=gen, device=gen.device).tolist()
