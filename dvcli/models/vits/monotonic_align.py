"""Monotonic alignment search (MAS; Glow-TTS / VITS): the most likely monotonic, surjective
alignment of ``T_y`` spectrogram frames to ``T_x`` tokens under a per-(frame, token) score.

Dynamic programme, per example with ``t_y`` frames and ``t_x`` tokens::

    Q[y, x] = score[y, x] + max(Q[y-1, x], Q[y-1, x-1])      (stay on token x, or advance to it)

then backtrack from ``(t_y - 1, t_x - 1)``. Two implementations give bit-identical paths:

- :func:`maximum_path_numba`: compiled with numba, examples in parallel (the default on CPU and
  GPU alike: one transfer of the score matrix beats thousands of tiny GPU kernels);
- :func:`maximum_path_torch`: pure torch, vectorised over batch and tokens with a loop over frames
  (the fallback when numba is missing; runs on any device).

``tests/models/vits/test_monotonic_align.py`` keeps the textbook double loop and checks both
against it; ``bench/mas.py`` times them.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch

log = logging.getLogger(__name__)

NEG_INF = -1e9  # the "impossible" score of the original implementation
_numba_kernel: Any = None  # compiled lazily: importing numba costs ~0.3 s that inference never needs


def maximum_path(
    scores: torch.Tensor, mask: torch.Tensor, backend: Literal["auto", "numba", "torch"] = "auto"
) -> torch.Tensor:
    """Best monotonic alignment path.

    Args:
        scores: ``(B, T_y, T_x)`` log-likelihood of frame ``y`` under token ``x``.
        mask: ``(B, T_y, T_x)``, 1 where both frame and token are valid (an outer product of
            the frame and token masks). Each example needs ``t_x <= t_y``.
        backend: ``numba`` (compiled, CPU), ``torch`` (vectorised, any device), or ``auto``
            (numba when importable).

    Returns:
        ``(B, T_y, T_x)`` 0/1 path in ``scores.dtype`` on ``scores.device``: each valid frame
        maps to exactly one token, tokens in order, every valid token used at least once.

    Raises:
        ImportError: ``backend="numba"`` without numba installed.
    """
    if backend == "auto":
        backend = "numba" if _load_numba_kernel(required=False) is not None else "torch"
    if backend == "numba":
        return maximum_path_numba(scores, mask)
    return maximum_path_torch(scores, mask)


def _lengths(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames and tokens per example from the outer-product mask."""
    return mask[:, :, 0].sum(1).long(), mask[:, 0, :].sum(1).long()


def maximum_path_torch(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`maximum_path` in torch: a loop over frames, vectorised over the batch and tokens.

    Entries outside each example's reachable band are updated too, but neither the band's values
    nor the backtrack ever read them, so the path equals the textbook algorithm's bit for bit.
    """
    b, t_y, t_x = scores.shape
    value = (scores * mask).float()  # (B, T_y, T_x), accumulated in place row by row
    y_len, x_len = _lengths(mask)
    neg = value.new_full((b, 1), NEG_INF)
    for y in range(1, t_y):
        prev = value[:, y - 1]  # (B, T_x)
        stay = prev.clone()
        if y < t_x:
            stay[:, y] = NEG_INF  # token y cannot have been reached at frame y - 1
        advance = torch.cat([neg, prev[:, :-1]], dim=1)  # from token x - 1
        value[:, y] += torch.maximum(stay, advance)

    path = torch.zeros_like(value)
    index = x_len - 1  # (B,) current token, starting at the last one
    for y in range(t_y - 1, -1, -1):
        active = y < y_len
        path[:, y].scatter_(1, index[:, None], active.to(path.dtype)[:, None])
        if y == 0:
            break
        stay = value[:, y - 1].gather(1, index[:, None])[:, 0]
        advance = value[:, y - 1].gather(1, (index - 1).clamp(min=0)[:, None])[:, 0]
        move = active & (index != 0) & ((index == y) | (stay < advance))
        index = index - move.long()
    return path.to(scores.dtype)


def maximum_path_numba(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`maximum_path` with the numba kernel (examples in parallel over the CPU's threads)."""
    kernel = _load_numba_kernel(required=True)
    value = (scores * mask).detach().float().cpu().numpy()  # (B, T_y, T_x) float32, modified in place
    y_len, x_len = _lengths(mask)
    path = np.zeros(value.shape, dtype=np.float32)
    y_np, x_np = (t.cpu().numpy().astype(np.int64) for t in (y_len, x_len))
    kernel(path, value, y_np, x_np, torch.get_num_threads())
    return torch.from_numpy(path).to(device=scores.device, dtype=scores.dtype)


def _load_numba_kernel(required: bool) -> Any:
    """Compile (once) and return the numba kernel; None (or ImportError if ``required``) without numba."""
    global _numba_kernel
    if _numba_kernel is not None:
        return _numba_kernel
    try:
        from dvcli.models.vits._mas_numba import maximum_path as kernel
    except ImportError:
        if required:
            raise
        log.info("numba is not installed: monotonic alignment search uses the slower torch loop")
        return None
    _numba_kernel = kernel
    return _numba_kernel
