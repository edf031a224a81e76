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
import io
import logging
import math
import pickle
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvcli.errors import UserError, path_error

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


# -- centroids from files ---------------------------------------------------------------------------


def load_centroids(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Centroids from a ``dv cluster`` folder, a ``.npy`` file or a scikit-learn ``km.bin`` (joblib).

    Returns:
        ``(k, D)`` float32 centroids and what is known about the features they were fitted on
        (``meta.json`` of a dv folder; empty otherwise).

    Raises:
        UserError: missing or unreadable file, not a k-means model.
    """
    import json

    path = Path(path)
    if path.is_dir():
        file = path / "centroids.npy"
        if not file.is_file():
            raise path_error(path, "has no centroids.npy: not a `dv cluster` output")
        meta: dict[str, Any] = {}
        if (path / "meta.json").is_file():
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        return _read_npy(file), meta.get("features", {}) if isinstance(meta.get("features"), dict) else {}
    if not path.is_file():
        raise path_error(path, "k-means model not found", "pass a `dv cluster` folder, a .npy or a km.bin")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic == b"\x93NUMPY":
        return _read_npy(path), {}
    return read_sklearn_kmeans(path), {}


def check_same_features(path: str | Path, trained_on: dict[str, Any], features: dict[str, Any]) -> None:
    """Refuse centroids fitted on another feature kind or layer, when the k-means folder records them.

    Raises:
        UserError: the kinds or layers differ.
    """
    for key in ("kind", "layer"):
        if trained_on.get(key) is not None and trained_on.get(key) != features.get(key):
            raise path_error(
                path,
                f"was fitted on {key}={trained_on[key]} features, these are {key}={features.get(key)}",
                "extract the features the k-means model expects",
            )


def _read_npy(path: Path) -> np.ndarray:
    try:
        centroids = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise path_error(path, f"is not a readable .npy array ({err})") from None
    if centroids.ndim != 2 or not np.issubdtype(centroids.dtype, np.floating):
        raise path_error(path, f"holds a {centroids.dtype} array of shape {centroids.shape}, expected (k, dim) floats")
    return np.ascontiguousarray(centroids, dtype=np.float32)


class _EstimatorState:
    """Stands in for a scikit-learn estimator while unpickling: keeps its attributes, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state if isinstance(state, dict) else {}


class _Inert:
    """Stands in for numpy random-state objects an estimator may carry; ignores everything."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


_SKLEARN_MODULES = ("sklearn.cluster._kmeans", "sklearn.cluster.k_means_", "sklearn.cluster._k_means")
_INERT_GLOBALS = {
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random.mtrand", "RandomState"),
    ("numpy.random._mt19937", "MT19937"),
}


class _Refused(pickle.UnpicklingError):
    """A pickle asked for something outside the allow-list."""


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 pickles), limited to the stand-ins above."""
    from joblib.numpy_pickle import NumpyArrayWrapper

    if not (isinstance(cls, type) and issubclass(cls, (_EstimatorState, _Inert, NumpyArrayWrapper))):
        raise _Refused(f"{cls!r} rebuilt by copyreg")
    return cls.__new__(cls)


def _numpy_names() -> dict[tuple[str, str], Any]:
    core = getattr(np, "_core", None) or np.core
    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        names[(module, "_reconstruct")] = core.multiarray._reconstruct
        names[(module, "scalar")] = core.multiarray.scalar
    for name in dir(np.dtypes):
        if name.endswith("DType"):
            names[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return names


def read_sklearn_kmeans(path: str | Path) -> np.ndarray:
    """``cluster_centers_`` of a joblib-pickled scikit-learn (MiniBatch)KMeans, as fairseq/textlesslib save.

    joblib pickles can run code, so they are read with an unpickler that builds only numpy arrays
    and scalars, plus inert stand-ins for the estimator and its random state; any other global is
    refused. Arrays of Python objects are refused too.

    Raises:
        UserError: not a joblib k-means pickle, or one that would need anything else.
    """
    path = Path(path)
    try:
        from joblib import numpy_pickle as jp
    except ImportError:
        raise path_error(path, "reading a scikit-learn km.bin needs joblib", "pip install joblib") from None
    allowed = _numpy_names()
    allowed[("joblib.numpy_pickle", "NumpyArrayWrapper")] = jp.NumpyArrayWrapper
    for module in ("copyreg", "copy_reg"):  # protocol 0/1 pickles (Python 2 module name too)
        allowed[(module, "_reconstructor")] = _safe_reconstructor
    for module in ("builtins", "__builtin__"):
        allowed[(module, "object")] = object  # only ever an argument of _safe_reconstructor

    class SafeUnpickler(jp.NumpyUnpickler):  # type: ignore[misc, name-defined]
        dispatch = jp.NumpyUnpickler.dispatch.copy()

        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in allowed:
                return allowed[(module, name)]
            if module in _SKLEARN_MODULES and name in ("MiniBatchKMeans", "KMeans"):
                return _EstimatorState
            if (module, name) in _INERT_GLOBALS:
                return _Inert
            raise _Refused(f"{module}.{name}")

        def load_build(self) -> None:
            wrapper = self.stack[-2] if len(self.stack) > 1 else None
            if isinstance(wrapper, jp.NumpyArrayWrapper):
                state = self.stack[-1]
                dtype = state.get("dtype") if isinstance(state, dict) else None
                if dtype is None or not isinstance(dtype, np.dtype) or dtype.hasobject:
                    raise _Refused("a numpy array of Python objects")
            jp.NumpyUnpickler.load_build(self)

        dispatch[pickle.BUILD[0]] = load_build

    try:
        with open(path, "rb") as raw:
            data = raw.read()
        obj = SafeUnpickler(str(path), _decompressed(data, path), ensure_native_byte_order=True).load()
    except _Refused as err:
        raise path_error(
            path,
            f"refused to load: it needs {err}, which is not part of a k-means model",
            "dv never runs code from pickles; save the centroids with numpy.save instead",
        ) from None
    except (
        pickle.UnpicklingError,
        struct.error,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OSError,
    ) as err:
        raise path_error(path, f"is not a readable joblib k-means file ({type(err).__name__}: {err})") from None
    state = obj.state if isinstance(obj, _EstimatorState) else None
    centres = state.get("cluster_centers_") if state else None
    if not isinstance(centres, np.ndarray) or centres.ndim != 2 or not np.issubdtype(centres.dtype, np.floating):
        raise path_error(path, "is not a fitted scikit-learn KMeans/MiniBatchKMeans (no cluster_centers_)")
    return np.ascontiguousarray(centres, dtype=np.float32)


def _decompressed(data: bytes, path: Path) -> io.BytesIO:
    """joblib's optional compressions (fairseq writes uncompressed files)."""
    import bz2
    import gzip
    import lzma
    import zlib

    if data[:1] == b"x":  # joblib's zlib
        return io.BytesIO(zlib.decompress(data))
    if data[:2] == b"\x1f\x8b":
        return io.BytesIO(gzip.decompress(data))
    if data[:3] == b"BZh":
        return io.BytesIO(bz2.decompress(data))
    if data[:6] == b"\xfd7zXZ\x00":
        return io.BytesIO(lzma.decompress(data))
    return io.BytesIO(data)
