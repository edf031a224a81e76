"""MFCC features, the feature store and unit run-lengths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from dvcli.errors import UserError
from dvcli.features import num_frames
from dvcli.features.mfcc import MfccFeatures
from dvcli.features.store import FeatureStore, FeatureWriter, open_stores
from dvcli.units import deduplicate


def test_mfcc_frames_follow_hubert_and_fairseq_framing() -> None:
    g = torch.Generator().manual_seed(0)
    wavs = [0.1 * torch.randn(n, generator=g) for n in (16000, 4321, 400, 719, 720)]
    mfcc = MfccFeatures()
    batch, frames = mfcc(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), torch.tensor([len(w) for w in wavs]))
    assert frames.tolist() == [(len(w) - 400) // 320 + 1 for w in wavs] == [49, 13, 1, 1, 2]
    assert batch.shape[-1] == 39
    for row, wav in enumerate(wavs):
        alone, _ = mfcc(wav[None], torch.tensor([len(wav)]))
        torch.testing.assert_close(batch[row, : frames[row]], alone[0])
    # Frame i covers the same 25 ms as frame 2i of fairseq's 100 Hz MFCC recipe.
    fairseq = kaldi.mfcc(wavs[0][None], sample_frequency=16000, use_energy=False)  # 10 ms hop
    torch.testing.assert_close(batch[0, :, :13], fairseq[::2][: frames[0]], atol=1e-4, rtol=1e-4)


def test_num_frames() -> None:
    assert [num_frames(t) for t in (0, 399, 400, 719, 720, 16000)] == [0, 0, 1, 1, 2, 49]
    assert num_frames(torch.tensor([399, 16000])).tolist() == [0, 49]


def _store(folder: Path, feats: dict[str, np.ndarray], shard_frames: int = 10, **meta: object) -> Path:
    folder.mkdir()
    writer = FeatureWriter(folder, 3, shard_frames=shard_frames)
    for uid, f in feats.items():
        writer.add(uid, f)
    writer.close(order=sorted(feats))
    info = {"stage": "extract-units", "dim": 3, "frame_rate": 50.0, "kind": "mfcc", "layer": None, **meta}
    (folder / "meta.json").write_text(json.dumps(info))
    return folder


def test_store_round_trip_across_shards(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    feats = {f"u{i}": rng.standard_normal((n, 3)).astype(np.float32) for i, n in enumerate([4, 7, 12, 1, 5])}
    store = FeatureStore(_store(tmp_path / "f", feats))
    assert store.ids == sorted(feats) and store.total_frames == 29
    assert len({r.shard for r in store.rows}) == 4  # a new file every 10 frames (a longer utterance alone)
    for uid, f in feats.items():
        np.testing.assert_array_equal(store.get(uid), f.astype(np.float16))
    for shard in {r.shard for r in store.rows}:  # plain .npy files
        assert np.load(tmp_path / "f" / shard).dtype == np.float16


def test_store_errors(tmp_path: Path) -> None:
    feats = {"a": np.ones((6, 3), np.float32), "b": np.ones((8, 3), np.float32)}
    folder = _store(tmp_path / "f", feats)
    (folder / "feats-00001.npy").unlink()
    with pytest.raises(UserError, match="feats-00001.npy: feature shard is missing"):
        FeatureStore(folder)
    folder = _store(tmp_path / "g", feats, shard_frames=100)
    data = (folder / "feats-00000.npy").read_bytes()
    header_says_14 = data[:128]
    (folder / "feats-00000.npy").write_bytes(header_says_14 + data[128 : 128 + 6 * 3 * 2])  # cut after "a"
    with pytest.raises(UserError, match="feats-00000.npy|truncated"):
        FeatureStore(folder)
    with pytest.raises(UserError, match="not a finished `dv extract-units` output"):
        FeatureStore(tmp_path)
    a = _store(tmp_path / "a", {"x": np.ones((2, 3), np.float32)})
    b = _store(tmp_path / "b", {"x": np.ones((2, 3), np.float32)})
    with pytest.raises(UserError, match="'x' is also in"):
        open_stores([a, b])
    c = _store(tmp_path / "c", {"y": np.ones((2, 3), np.float32)}, kind="hubert", layer=6)
    with pytest.raises(UserError, match="holds different features"):
        open_stores([a, c])


def test_deduplicate() -> None:
    assert deduplicate([5, 5, 7, 5, 5, 5]) == ([5, 7, 5], [2, 1, 3])
    assert deduplicate([]) == ([], [])
    units = np.random.default_rng(0).integers(0, 3, 50)
    collapsed, durations = deduplicate(units)
    np.testing.assert_array_equal(np.repeat(collapsed, durations), units)
    assert all(a != b for a, b in zip(collapsed, collapsed[1:]))
