"""dv cluster: units for every utterance, dedup files, imported centroids, and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans

from dvcli.errors import UserError
from dvcli.features.store import FeatureStore
from dvcli.manifest import read_units
from dvcli.testing import make_manifest
from stages.cluster import ClusterConfig, run
from stages.extract_units import ExtractUnitsConfig
from stages.extract_units import run as extract


@pytest.fixture(scope="module")
def feats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cluster")
    manifest = make_manifest(root / "corpus", speakers=3, utterances=3, seconds=(0.8, 1.5))
    return extract(ExtractUnitsConfig(manifest=manifest, out=root / "feats", features="mfcc")).out


def test_units_for_every_utterance(feats: Path, tmp_path: Path) -> None:
    result = run(ClusterConfig(features=[feats], out=tmp_path / "km", k=12, sample=0.5, dedup=True, seed=3))
    store = FeatureStore(feats)
    units = read_units(result.out / "units.tsv")
    assert list(units) == store.ids
    centroids = np.load(result.out / "centroids.npy")
    assert centroids.shape == (12, 39) and centroids.dtype == np.float32
    for uid, seq in units.items():
        x = store.get(uid).astype(np.float32)
        brute = ((x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)  # nearest centroid, by hand
        assert seq == brute.tolist()
    meta = json.loads((result.out / "meta.json").read_text())
    assert (meta["k"], meta["frame_rate"], meta["dim"], meta["features"]["kind"]) == (12, 50.0, 39, "mfcc")
    dedup, durations = read_units(result.out / "units.dedup.tsv"), read_units(result.out / "durations.tsv")
    for uid, seq in units.items():
        assert np.repeat(dedup[uid], durations[uid]).tolist() == seq
    again = run(ClusterConfig(features=[feats], out=tmp_path / "km2", k=12, sample=0.5, seed=3))
    assert read_units(again.out) == units  # seeded


def test_centroids_from_a_scikit_learn_km_bin(feats: Path, tmp_path: Path) -> None:
    x = np.concatenate([a for _, a in FeatureStore(feats)]).astype(np.float32)
    km = MiniBatchKMeans(n_clusters=5, n_init=1, random_state=0).fit(x)
    joblib.dump(km, tmp_path / "km.bin")
    result = run(ClusterConfig(features=[feats], out=tmp_path / "km", kmeans=tmp_path / "km.bin"))
    units = read_units(result.out)
    assert (
        result.k == 5 and np.concatenate([units[i] for i in FeatureStore(feats).ids]).tolist() == km.predict(x).tolist()
    )


def test_bad_inputs(feats: Path, tmp_path: Path) -> None:
    frames = FeatureStore(feats).total_frames
    with pytest.raises(UserError, match=f"--k {frames + 1} is more than the {frames} frames"):
        run(ClusterConfig(features=[feats], out=tmp_path / "o", k=frames + 1))
    with pytest.raises(UserError, match="frames sampled"):
        run(ClusterConfig(features=[feats], out=tmp_path / "o", k=frames // 2, sample=0.1))
    np.save(tmp_path / "c.npy", np.zeros((4, 7), np.float32))
    with pytest.raises(UserError, match="centroids have dimension 7, the features 39"):
        run(ClusterConfig(features=[feats], out=tmp_path / "o", kmeans=tmp_path / "c.npy"))
    broken = tmp_path / "broken"
    shutil.copytree(feats, broken)
    (broken / "feats-00000.npy").unlink()
    with pytest.raises(UserError, match="feature shard is missing"):
        run(ClusterConfig(features=[broken], out=tmp_path / "o"))
    with pytest.raises(UserError, match="feature folder not found"):
        run(ClusterConfig(features=[tmp_path / "nope"], out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()
