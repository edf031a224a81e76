"""k-means: seeding, fitting, labelling against brute force, and safe import of scikit-learn km.bin files."""

from __future__ import annotations

import os
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.cluster import MiniBatchKMeans

from dvcli.errors import UserError
from dvcli.units.centroid_files import load_centroids, read_sklearn_kmeans
from dvcli.units.kmeans import assign, fit_kmeans, kmeans_plus_plus


def blobs(n_centres: int, per: int, dim: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32) * spread
    labels = np.repeat(np.arange(n_centres), per)
    return centres[labels] + rng.standard_normal((len(labels), dim)).astype(np.float32), labels


def test_greedy_kmeans_plus_plus_covers_more_blobs_than_plain() -> None:
    # High-dimensional noise puts points of one blob nearly as far apart as points of two: plain D^2
    # sampling often seeds a blob twice; the greedy local trials much less often.
    x, labels = blobs(40, 25, 64, spread=1.5)
    points = torch.from_numpy(x)

    def covered(trials: int | None) -> float:
        return np.mean(
            [
                len(set(labels[kmeans_plus_plus(points, 40, torch.Generator().manual_seed(s), trials).numpy()]))
                for s in range(3)
            ]
        )

    assert covered(None) >= covered(1) + 4


def test_weighted_kmeans_plus_plus_follows_weights() -> None:
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    heavy = torch.tensor([1e-6, 1e-6, 1.0, 1.0])
    first = [int(kmeans_plus_plus(x, 1, torch.Generator().manual_seed(s), weights=heavy)[0]) for s in range(20)]
    assert set(first) <= {2, 3}


@pytest.mark.parametrize("spread", [1.0, 2.0])
def test_fit_reaches_the_oracle_where_plain_seeding_does_not(spread: float) -> None:
    x, labels = blobs(30, 60, 32, spread=spread, seed=1)
    oracle = assign(x, np.stack([x[labels == c].mean(0) for c in range(30)]))[1].mean()
    fits = [fit_kmeans(x, 30, seed=s) for s in range(3)]
    assert max(assign(x, f.centroids)[1].mean() for f in fits) <= oracle * 1.02
    plain = [fit_kmeans(x, 30, seed=s, oversample=1.0) for s in range(3)]
    assert max(assign(x, f.centroids)[1].mean() for f in plain) > oracle * 1.03
    np.testing.assert_array_equal(fits[0].centroids, fit_kmeans(x, 30, seed=0).centroids)  # seeded


def test_assign_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 16)).astype(np.float16)  # stored features are float16
    c = rng.standard_normal((7, 16)).astype(np.float32)
    labels, dists = assign(x, c, batch=64)
    brute = ((x.astype(np.float32)[:, None, :] - c[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, brute.argmin(1))
    np.testing.assert_allclose(dists, brute.min(1), rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="dimension 16 but the k-means centroids have 8"):
        assign(x, c[:, :8])


def test_too_few_points() -> None:
    with pytest.raises(UserError, match="--k 10 is more than the 5 training frames"):
        fit_kmeans(np.zeros((5, 3), np.float32), 10)


def test_import_scikit_learn_km_bin(tmp_path: Path) -> None:
    x, _ = blobs(5, 40, 8, spread=3.0)
    km = MiniBatchKMeans(n_clusters=5, n_init=1, random_state=np.random.RandomState(0)).fit(x.astype(np.float64))
    joblib.dump(km, tmp_path / "km.bin")  # as fairseq's learn_kmeans.py writes it
    joblib.dump(km, tmp_path / "kmz.bin", compress=3)
    for name in ("km.bin", "kmz.bin"):
        centroids, meta = load_centroids(tmp_path / name)
        np.testing.assert_allclose(centroids, km.cluster_centers_, rtol=1e-6)
        np.testing.assert_array_equal(assign(x, centroids)[0], km.predict(x.astype(np.float64)))
        assert meta == {}
    np.save(tmp_path / "c.npy", km.cluster_centers_)
    np.testing.assert_allclose(load_centroids(tmp_path / "c.npy")[0], km.cluster_centers_, rtol=1e-6)


def test_km_bin_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    joblib.dump({"cluster_centers_": Evil()}, tmp_path / "evil.bin")
    with pytest.raises(UserError, match="refused to load.*system"):
        read_sklearn_kmeans(tmp_path / "evil.bin")
    km = MiniBatchKMeans(n_clusters=2, n_init=1).fit(np.random.default_rng(0).standard_normal((20, 2)))
    km.extra_ = np.array([Evil()], dtype=object)  # code hidden in an object array
    joblib.dump(km, tmp_path / "evil2.bin")
    with pytest.raises(UserError, match="array of Python objects"):
        read_sklearn_kmeans(tmp_path / "evil2.bin")
    assert not marker.exists()
    joblib.dump({"a": 1}, tmp_path / "notkm.bin")
    with pytest.raises(UserError, match="refused|not a fitted"):
        read_sklearn_kmeans(tmp_path / "notkm.bin")
    (tmp_path / "junk.bin").write_bytes(b"\x80\x04junk")
    with pytest.raises(UserError, match="not a readable joblib"):
        load_centroids(tmp_path / "junk.bin")
