"""Monotonic alignment search: the fast versions equal the textbook dynamic programme."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dvcli.models.vits.monotonic_align import maximum_path, maximum_path_numba, maximum_path_torch

NEG = -1e9


def reference_maximum_path(scores: np.ndarray, t_y: int, t_x: int) -> np.ndarray:
    """Textbook MAS for one example (the double loop of Glow-TTS' Cython code), in float32."""
    value = scores.astype(np.float32).copy()
    path = np.zeros_like(value)
    for y in range(t_y):
        for x in range(max(0, t_x + y - t_y), min(t_x, y + 1)):
            stay = NEG if x == y else value[y - 1, x]
            advance = (0.0 if y == 0 else NEG) if x == 0 else value[y - 1, x - 1]
            value[y, x] = np.float32(value[y, x] + np.float32(max(stay, advance)))
    index = t_x - 1
    for y in range(t_y - 1, -1, -1):
        path[y, index] = 1
        if index != 0 and (index == y or value[y - 1, index] < value[y - 1, index - 1]):
            index -= 1
    return path


def random_batch(seed: int, batch: int, max_y: int, max_x: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    y_len = rng.integers(max_y // 2, max_y + 1, batch)
    y_len[0] = max_y
    x_len = np.array([rng.integers(1, min(max_x, y) + 1) for y in y_len])
    x_len[-1] = min(max_x, y_len[-1])
    scores = torch.from_numpy(rng.normal(size=(batch, max_y, max_x)).astype(np.float32) * 3)
    mask = torch.zeros(batch, max_y, max_x)
    for i, (ty, tx) in enumerate(zip(y_len, x_len)):
        mask[i, :ty, :tx] = 1
    return scores, mask


@pytest.mark.parametrize("seed,batch,max_y,max_x", [(0, 6, 40, 17), (1, 5, 31, 31), (2, 3, 64, 9), (3, 1, 7, 1)])
def test_fast_implementations_equal_reference(seed: int, batch: int, max_y: int, max_x: int) -> None:
    scores, mask = random_batch(seed, batch, max_y, max_x)
    expected = np.zeros(scores.shape, dtype=np.float32)
    for i in range(batch):
        t_y, t_x = int(mask[i, :, 0].sum()), int(mask[i, 0].sum())
        masked = (scores[i] * mask[i]).numpy()
        expected[i] = reference_maximum_path(masked, t_y, t_x)
    expected_t = torch.from_numpy(expected)
    assert torch.equal(maximum_path_torch(scores, mask), expected_t)
    assert torch.equal(maximum_path_numba(scores, mask), expected_t)
    assert torch.equal(maximum_path(scores, mask), expected_t)


def test_path_is_the_best_monotonic_alignment() -> None:
    """Brute force over every monotonic surjective alignment of 7 frames to 3 tokens."""
    torch.manual_seed(0)
    t_y, t_x = 7, 3
    scores = torch.randn(1, t_y, t_x)
    mask = torch.ones(1, t_y, t_x)
    path = maximum_path(scores, mask)[0]
    best = -float("inf")
    for cuts in itertools.combinations(range(1, t_y), t_x - 1):  # token boundaries
        bounds = (0, *cuts, t_y)
        total = sum(float(scores[0, bounds[k] : bounds[k + 1], k].sum()) for k in range(t_x))
        best = max(best, total)
    assert float((scores[0] * path).sum()) == pytest.approx(best, abs=1e-5)


def test_path_is_monotonic_and_covers_every_token() -> None:
    scores, mask = random_batch(4, 4, 50, 20)
    path = maximum_path(scores, mask)
    for i in range(4):
        t_y, t_x = int(mask[i, :, 0].sum()), int(mask[i, 0].sum())
        assert torch.all(path[i, :t_y].sum(1) == 1)  # each valid frame on exactly one token
        assert path[i, t_y:].sum() == 0 and path[i, :, t_x:].sum() == 0
        tokens = path[i, :t_y].argmax(1)
        steps = tokens[1:] - tokens[:-1]
        assert torch.all((steps == 0) | (steps == 1))
        assert tokens[0] == 0 and tokens[-1] == t_x - 1


def test_numba_threads_give_the_same_paths() -> None:
    scores, mask = random_batch(5, 7, 30, 12)
    single = maximum_path_numba(scores, mask)
    torch.set_num_threads(2)  # the conftest fixture restores the count
    assert torch.equal(maximum_path_numba(scores, mask), single)
