"""k-means for content units: greedy k-means++ seeding, FAISS Lloyd iterations, batched labelling.

fairseq's recipe (``learn_kmeans.py``) fits scikit-learn's MiniBatchKMeans with k-means++ seeding
tried 20 times. Seeding decides the quality: FAISS's default (random points) lands well above it.
Here:

1. **Seeding**: greedy k-means++ (each step draws ``2 + ln k`` candidates by D^2 sampling and keeps
   the one that lowers the potential most, as scikit-learn does) of ``oversample * k`` centres, on a
   random subsample of ``seed_points_per_centroid`` points per centre; the candidates of a step are
   scored with one matrix product. Three Lloyd iterations turn these seeds into cluster means, and a
   size-weighted greedy k-means++ over the means picks the ``k`` starting centroids.
2. **Lloyd on a subsample**: ``niter`` FAISS iterations on ``points_per_centroid * k`` points
   (CPU, or GPU with faiss-gpu), which moves the seeds to cluster means.
3. **Full-data updates**: ``full_iterations`` assign-and-average passes over every training point,
   so the final centroids average all the data (a centroid estimated from few points sits off the
   true mean and costs inertia on every point).

Labelling (:func:`assign`) is an exact nearest-centroid search in batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from dvcli.errors import UserError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class KMeansFit:
    """A fitted k-means model and how the fit went."""

    centroids: np.ndarray  # (k, D) float32
    inertia: float  # mean squared distance of the training points to their centroid, before the last update
    seconds: float
    seed_seconds: float


def _faiss() -> Any:
    import faiss

    return faiss


def gpu_available() -> bool:
    """True when FAISS was built with CUDA and sees a GPU (the faiss-gpu package)."""
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def kmeans_plus_plus(
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    local_trials: int | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with scikit-learn's local trials).

    Args:
        x: ``(n, D)`` float32 points (any device); k: centres wanted (<= n).
        generator: a CPU generator for the draws.
        local_trials: candidates per step (default ``2 + int(ln k)``).
        weights: optional ``(n,)`` point weights (cluster sizes when seeding from centroids).

    Returns:
        ``(k,)`` long indices into ``x``.
    """
    with _one_thread_on_cpu(x.device):
        return _kmeans_plus_plus(x, k, generator, local_trials, weights)


@contextlib.contextmanager
def _one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    # A k-means++ step is a thin matrix product plus a dozen small ops, thousands of times in a row:
    # on CPU one thread beats several (no fork/join per op), by 2x or more on a busy machine.
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _kmeans_plus_plus(
    x: torch.Tensor, k: int, generator: torch.Generator, local_trials: int | None, weights: torch.Tensor | None
) -> torch.Tensor:
    n = x.shape[0]
    trials = local_trials or 2 + int(math.log(k))
    w = torch.ones(n, device=x.device) if weights is None else weights.to(x.device, torch.float32)
    sq = (x * x).sum(1)  # (n,)
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = int(torch.multinomial(w.cpu(), 1, generator=generator))
    closest = (sq + sq[chosen[0]] - 2 * (x @ x[chosen[0]])).clamp_(min=0)  # (n,) distance^2 to nearest centre
    potential = (w * closest).sum()
    for i in range(1, k):
        # D^2 sampling of `trials` candidates, then keep the one that lowers the potential most.
        draws = torch.rand(trials, generator=generator).to(x.device) * potential
        candidates = torch.searchsorted(torch.cumsum(w * closest, 0), draws).clamp_(max=n - 1)  # (t,)
        dist = torch.addmm(sq[None, :], x[candidates], x.T, alpha=-2).add_(sq[candidates][:, None])  # (t, n)
        dist = torch.minimum(dist.clamp_(min=0), closest[None, :])
        potentials = dist @ w  # (t,)
        best = int(torch.argmin(potentials))
        closest, potential = dist[best], potentials[best]
        chosen[i] = candidates[best].cpu()
    return chosen


def assign(
    x: np.ndarray, centroids: np.ndarray, *, device: str | torch.device = "cpu", batch: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of every row, exact, in batches.

    Args:
        x: ``(n, D)`` features (any float type; converted per batch).
        centroids: ``(k, D)``.

    Returns:
        ``(n,)`` int64 labels and ``(n,)`` float32 squared distances.

    Raises:
        UserError: the dimensions differ.
    """
    if x.ndim != 2 or centroids.ndim != 2 or x.shape[1] != centroids.shape[1]:
        raise UserError(
            f"features have dimension {x.shape[-1]} but the k-means centroids have {centroids.shape[-1]} "
            "(the k-means model was trained on other features)"
        )
    index = _flat_index(np.ascontiguousarray(centroids, dtype=np.float32), device)
    labels = np.empty(len(x), dtype=np.int64)
    dists = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), batch):
        chunk = np.ascontiguousarray(x[start : start + batch], dtype=np.float32)
        d, i = index.search(chunk, 1)
        labels[start : start + len(chunk)] = i[:, 0]
        dists[start : start + len(chunk)] = np.maximum(d[:, 0], 0)
    return labels, dists


def _flat_index(centroids: np.ndarray, device: str | torch.device) -> Any:
    faiss = _faiss()
    index = faiss.IndexFlatL2(centroids.shape[1])
    if torch.device(device).type == "cuda" and gpu_available():
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(centroids)
    return index


def fit_kmeans(
    x: np.ndarray,
    k: int,
    *,
    niter: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    init: str = "k-means++",
    oversample: float = 2.0,
    seed_points_per_centroid: int = 4,
    points_per_centroid: int = 64,
    full_iterations: int = 1,
) -> KMeansFit:
    """Fit k-means on ``(n, D)`` float32 points.

    Args:
        x: training points, ``n >= k``.
        k: clusters.
        niter: Lloyd iterations on the subsample of ``points_per_centroid * k`` points.
        seed: makes the fit reproducible.
        device: ``cpu`` or ``cuda`` (seeding in torch on that device; FAISS on GPU with faiss-gpu).
        init: ``k-means++`` (greedy, oversampled; default) or ``random`` (FAISS's own: random points).
        oversample: seed ``oversample * k`` centres, refine them, then pick ``k`` of those means
            (1 = plain greedy k-means++).
        seed_points_per_centroid: subsample size for seeding, in points per seeded centre.
        points_per_centroid: subsample size for the Lloyd iterations (FAISS's max_points_per_centroid).
        full_iterations: assign-and-average passes over all of ``x`` at the end.

    Raises:
        UserError: fewer points than clusters, an unknown init.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    if k > n:
        raise UserError(f"--k {k} is more than the {n} training frames (lower --k or raise --sample)")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)

    def subsample(size: int) -> np.ndarray:
        return x if size >= n else x[np.sort(rng.choice(n, size, replace=False))]

    if init == "k-means++":
        # Greedy k-means++ from raw points misses some clusters when noise is large next to the
        # distances between clusters (points of one cluster are then nearly as far apart as points
        # of two). So: seed more centres than needed, turn them into means with a few Lloyd
        # iterations (means are far less noisy than points), and pick k of those means with
        # k-means++ weighted by cluster size.
        k1 = min(n, max(k, math.ceil(oversample * k)))
        points = subsample(seed_points_per_centroid * k1)
        centroids = points[kmeans_plus_plus(torch.from_numpy(points).to(device), k1, generator).numpy()]
        if k1 > k:
            points = subsample(_PRE_POINTS_PER_CENTROID * k1)
            centroids = _lloyd(points, centroids, _PRE_ITERATIONS, seed, device)
            sizes = np.bincount(assign(points, centroids, device=device)[0], minlength=k1)
            centroids, sizes = centroids[sizes > 0], sizes[sizes > 0]
            if len(centroids) < k:
                raise UserError(f"--k {k}: the training frames hold fewer than {k} distinct points")
            chosen = kmeans_plus_plus(
                torch.from_numpy(centroids).to(device), k, generator, weights=torch.from_numpy(sizes.astype(np.float32))
            )
            centroids = centroids[chosen.numpy()]
    elif init == "random":
        centroids = x[rng.choice(n, k, replace=False)]
    else:
        raise UserError(f"unknown k-means init '{init}' (use k-means++ or random)")
    seed_seconds = time.perf_counter() - start
    log.debug("k-means seeding: %.1f s", seed_seconds)
    if niter > 0:
        centroids = _lloyd(subsample(points_per_centroid * k), centroids, niter, seed, device)
    inertia = float("nan")
    for _ in range(full_iterations):
        labels, dists = assign(x, centroids, device=device)
        inertia = float(dists.mean())
        centroids = _means(x, labels, centroids)
    return KMeansFit(
        np.ascontiguousarray(centroids, dtype=np.float32), inertia, time.perf_counter() - start, seed_seconds
    )


#: The refinement of oversampled seeds: this many points per seed, this many Lloyd iterations.
_PRE_POINTS_PER_CENTROID = 16
_PRE_ITERATIONS = 3


def _lloyd(x: np.ndarray, init: np.ndarray, niter: int, seed: int, device: torch.device) -> np.ndarray:
    """``niter`` FAISS Lloyd iterations over all of ``x`` from ``init`` (FAISS re-seeds empty clusters)."""
    faiss = _faiss()
    kmeans = faiss.Kmeans(
        x.shape[1],
        init.shape[0],
        niter=niter,
        seed=seed,
        max_points_per_centroid=max(1, -(-len(x) // init.shape[0])),  # no further subsampling
        min_points_per_centroid=1,
        gpu=device.type == "cuda" and gpu_available(),
        verbose=False,
    )
    kmeans.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
    return kmeans.centroids


def _means(x: np.ndarray, labels: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Cluster means; an empty cluster keeps its previous centroid."""
    k = previous.shape[0]
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64)
    sums.index_add_(0, torch.from_numpy(labels), torch.from_numpy(x).double())
    counts = np.bincount(labels, minlength=k)
    means = previous.astype(np.float64).copy()
    filled = counts > 0
    means[filled] = sums.numpy()[filled] / counts[filled, None]
    return means.astype(np.float32)
