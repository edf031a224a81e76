"""``dv cluster``: learn k-means on extracted features and write units for every utterance.

Reads one or more ``dv extract-units`` folders (the shards of one extraction), fits k-means on a
random sample of their frames (see :mod:`dvcli.units.kmeans`), then labels every frame. Writes:

- ``units.tsv``: frame-level units (50 Hz), one line per utterance, in the order of the inputs;
- with ``dedup``: ``units.dedup.tsv`` and ``durations.tsv`` too (see :mod:`dvcli.units.sequences`);
- ``centroids.npy``: ``(k, dim)`` float32, for ``dv extract-units --kmeans`` on new audio;
- ``meta.json``: ``k``, ``dim``, ``frame_rate``, the features' kind/checkpoint/layer, inertia.

With ``centroids`` (a ``.npy``, a fairseq/textlesslib scikit-learn ``km.bin``, or another cluster
folder) nothing is fitted: the given centroids label the frames.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np

from dvcli.config import StageConfig
from dvcli.errors import UserError, path_error
from dvcli.features.store import FeatureStore, open_stores
from dvcli.logs import progress
from dvcli.outputs import add_meta, stage_output
from dvcli.runtime import resolve_device
from dvcli.units.centroid_files import check_same_features, load_centroids
from dvcli.units.kmeans import assign, fit_kmeans
from dvcli.units.sequences import write_unit_files

log = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class ClusterConfig(StageConfig):
    """Settings of ``dv cluster``."""

    RENAMED = {"centroids": "kmeans"}

    features: list[Path]  # feature folders written by `dv extract-units` (all shards of one extraction)
    out: Path  # output folder: units.tsv, centroids.npy, meta.json
    k: int = 1000  # clusters = unit vocabulary size
    sample: float = 0.1  # fraction of all frames to fit on (fairseq's recipe uses 10%)
    max_frames: int = 0  # cap on training frames after sampling; 0 = no cap
    niter: int = 5  # Lloyd iterations on a subsample after seeding
    init: Literal["k-means++", "random"] = "k-means++"  # seeding: greedy k-means++, or FAISS's random points
    oversample: float = 2.0  # k-means++ seeds oversample*k centres, refines them, keeps k (1 = plain)
    seed_points_per_centroid: int = 4  # k-means++ runs on this many points per seeded centre
    points_per_centroid: int = 64  # the Lloyd iterations run on this many points per cluster
    full_iterations: int = 1  # final assign-and-average passes over all training frames
    kmeans: Path | None = None  # use these centroids (.npy, km.bin or a cluster folder) instead of fitting
    dedup: bool = False  # also write units.dedup.tsv + durations.tsv
    batch_frames: int = 65536  # frames labelled per batch


@dataclasses.dataclass
class ClusterResult:
    """What ``dv cluster`` wrote."""

    out: Path
    k: int
    utterances: int
    frames: int
    train_frames: int
    inertia: float
    fit_seconds: float
    files: list[str]

    def summary(self) -> dict[str, object]:
        """Rows for the end-of-stage table."""
        return {
            "output": self.out,
            "k": self.k,
            "utterances": self.utterances,
            "frames labelled": self.frames,
            "training frames": self.train_frames or "- (given centroids)",
            "inertia per frame": f"{self.inertia:.4g}",
            "fit time": f"{self.fit_seconds:.1f} s",
            "files": ", ".join(self.files),
        }


def sample_frames(stores: list[FeatureStore], fraction: float, max_frames: int, seed: int) -> np.ndarray:
    """A seeded random ``fraction`` of every store's frames, ``(m, dim)`` float32, read shard by shard."""
    rng = np.random.default_rng(seed)
    picked: list[np.ndarray] = []
    for store in stores:
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for row in store.rows:
            by_shard.setdefault(row.shard, []).append((row.offset, row.frames))
        for shard, spans in by_shard.items():
            array = store.shard(shard)
            used = np.zeros(len(array), dtype=bool)
            for offset, frames in spans:
                used[offset : offset + frames] = True
            mask = used & (rng.random(len(array)) < fraction)
            picked.append(np.asarray(array[mask], dtype=np.float32))
    x = np.concatenate(picked) if picked else np.zeros((0, stores[0].dim), np.float32)
    if max_frames and len(x) > max_frames:
        x = x[np.sort(rng.choice(len(x), max_frames, replace=False))]
    return x


def label_stores(
    stores: list[FeatureStore], centroids: np.ndarray, *, device: str, batch_frames: int
) -> tuple[dict[str, np.ndarray], float]:
    """Units of every utterance (in store order) and the mean squared distance per frame."""
    units: dict[str, np.ndarray] = {}
    total, frames = 0.0, 0
    pending: list[tuple[str, np.ndarray]] = []
    pending_frames = 0

    def flush() -> None:
        nonlocal total, frames, pending_frames
        if not pending:
            return
        labels, dists = assign(np.concatenate([f for _, f in pending]), centroids, device=device, batch=batch_frames)
        total += float(dists.sum(dtype=np.float64))
        frames += len(labels)
        start = 0
        for uid, feats in pending:
            units[uid] = labels[start : start + len(feats)]
            start += len(feats)
        pending.clear()
        pending_frames = 0

    with progress() as bar:
        task = bar.add_task("labelling frames", total=sum(s.total_frames for s in stores))
        for store in stores:
            for uid, feats in store:
                pending.append((uid, feats))
                pending_frames += len(feats)
                if pending_frames >= batch_frames:
                    n = pending_frames
                    flush()
                    bar.advance(task, n)
        n = pending_frames
        flush()
        bar.advance(task, n)
    return units, total / max(frames, 1)


def run(config: ClusterConfig) -> ClusterResult:
    """Fit (or load) centroids and write units for every utterance of ``config.features``.

    Raises:
        UserError: missing or inconsistent feature folders, ``k`` larger than the frames available,
            centroids of another dimension, bad settings.
    """
    if config.k < 2:
        raise UserError(f"--k {config.k}: need at least 2 clusters")
    if not 0 < config.sample <= 1:
        raise UserError(f"--sample {config.sample}: must be a fraction in (0, 1]")
    stores = open_stores(config.features)
    info = stores[0].describe()
    total_frames = sum(s.total_frames for s in stores)
    utterances = sum(len(s) for s in stores)
    device = str(resolve_device(config.device))
    if total_frames == 0:
        raise path_error(stores[0].folder, "holds no frames to cluster")

    train_frames, fit_seconds, fit_inertia = 0, 0.0, float("nan")
    if config.kmeans is not None:
        centroids, source = load_centroids(config.kmeans)
        if centroids.shape[1] != stores[0].dim:
            raise path_error(
                config.kmeans,
                f"centroids have dimension {centroids.shape[1]}, the features "
                f"{stores[0].dim} (k-means trained on other features?)",
            )
        check_same_features(config.kmeans, source, info)
        log.info("labelling with %d given centroids from %s", len(centroids), config.kmeans)
    else:
        if config.k > total_frames:
            raise UserError(
                f"--k {config.k} is more than the {total_frames} frames in {stores[0].folder} "
                "(lower --k or extract more audio)"
            )
        x = sample_frames(stores, config.sample, config.max_frames, config.seed)
        if config.k > len(x):
            raise UserError(
                f"--k {config.k} is more than the {len(x)} frames sampled (--sample {config.sample} "
                f"of {total_frames}); raise --sample or lower --k"
            )
        log.info("fitting k-means, k=%d, on %d frames of dimension %d (%s)", config.k, len(x), x.shape[1], device)
        start = time.perf_counter()
        fit = fit_kmeans(
            x,
            config.k,
            niter=config.niter,
            seed=config.seed,
            device=device,
            init=config.init,
            oversample=config.oversample,
            seed_points_per_centroid=config.seed_points_per_centroid,
            points_per_centroid=config.points_per_centroid,
            full_iterations=config.full_iterations,
        )
        fit_seconds = time.perf_counter() - start
        centroids, train_frames, fit_inertia = fit.centroids, len(x), fit.inertia
        del x

    units, inertia = label_stores(stores, centroids, device=device, batch_frames=config.batch_frames)
    out = Path(config.out)
    inputs = {f"features{i}": s.folder.resolve() for i, s in enumerate(stores)}
    if config.kmeans is not None:
        inputs["kmeans"] = Path(config.kmeans).resolve()
    with stage_output(out, stage="cluster", config=config, inputs=inputs) as tmp:
        np.save(tmp / "centroids.npy", centroids)
        files = write_unit_files(tmp, units, dedup=config.dedup)
        add_meta(
            tmp,
            k=int(len(centroids)),
            dim=int(centroids.shape[1]),
            frame_rate=stores[0].frame_rate,
            features=info,
            dedup=config.dedup,
            files=files + ["centroids.npy"],
            utterances=utterances,
            frames=total_frames,
            train_frames=train_frames,
            inertia=inertia,
            train_inertia=fit_inertia,
            fit_seconds=round(fit_seconds, 3),
        )
    return ClusterResult(out, int(len(centroids)), utterances, total_frames, train_frames, inertia, fit_seconds, files)
