"""Numba kernels of monotonic alignment search (imported lazily by :mod:`monotonic_align`).

A separate module so that numba's on-disk cache can key the compiled code by this file, and so
that importing the model does not import numba.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

NEG_INF = -1e9  # same constant as monotonic_align.NEG_INF


@numba.njit(cache=True, nogil=True)
def maximum_path_single(path: np.ndarray, value: np.ndarray, t_y: int, t_x: int) -> None:  # pragma: no cover
    """One example: accumulate ``value`` (T_y, T_x) float32 in place, write the 0/1 path."""
    for y in range(t_y):
        for x in range(max(0, t_x + y - t_y), min(t_x, y + 1)):
            stay = NEG_INF if x == y else value[y - 1, x]
            if x == 0:
                advance = 0.0 if y == 0 else NEG_INF
            else:
                advance = value[y - 1, x - 1]
            value[y, x] += max(stay, advance)
    index = t_x - 1
    for y in range(t_y - 1, -1, -1):
        path[y, index] = 1.0
        if index != 0 and (index == y or value[y - 1, index] < value[y - 1, index - 1]):
            index -= 1


def maximum_path(path: np.ndarray, value: np.ndarray, y_len: np.ndarray, x_len: np.ndarray, threads: int) -> None:
    """All examples of a batch, split over up to ``threads`` Python threads.

    The kernel releases the GIL, so plain threads run it in parallel. (numba's own ``parallel=True``
    is avoided on purpose: its OpenMP layer left spinning threads that slowed torch's next CPU
    operations by 10-50x in the same process.)
    """
    batch = value.shape[0]
    workers = max(1, min(threads, batch))
    if workers == 1:
        for i in range(batch):
            maximum_path_single(path[i], value[i], y_len[i], x_len[i])
        return
    chunks = [range(start, batch, workers) for start in range(workers)]

    def run(rows: range) -> None:
        for i in rows:
            maximum_path_single(path[i], value[i], y_len[i], x_len[i])

    list(_executor(workers).map(run, chunks))


_POOL: tuple[ThreadPoolExecutor, int] | None = None  # (pool, its size), grown on demand


def _executor(workers: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL[1] < workers:
        _POOL = (ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mas"), workers)
    return _POOL[0]
