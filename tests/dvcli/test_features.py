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
from dvcli.units.sequences import deduplicate


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


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dvcli import whisper_base

    if not whisper_base.is_installed():
        pytest.skip("the eval extra (Whisper base packages) is not installed")
    return whisper_base.whisper_base_folder(tmp_path_factory.mktemp("dv-cache"))


def test_whisper_features_follow_hubert_framing_and_whispers_own_front_end(whisper_folder: Path) -> None:
    """Frame counts are HuBERT's; the 30 s window equals transformers' Whisper front end + the encoder."""
    import ctranslate2
    from transformers import WhisperFeatureExtractor

    from dvcli.features.whisper import WhisperEncoderFeatures

    extractor = WhisperEncoderFeatures(whisper_folder, window="full", compute_type="float32")
    assert (extractor.dim, extractor.frame_rate, extractor.max_frames) == (512, 50.0, 1499)
    rng = np.random.default_rng(0)
    lengths = [400, 401, 16000, 37_123]
    wavs = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wavs[i, :n] = torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1)
    feats, frames = extractor(wavs, torch.tensor(lengths))
    assert frames.tolist() == [num_frames(n) for n in lengths] == [1, 1, 49, 115]
    assert feats.shape == (4, 115, 512) and not feats[2, 49:].any()
    # Reference: Hugging Face's Whisper log-mel (its own implementation), the same encoder.
    mel = WhisperFeatureExtractor(feature_size=80)(
        wavs[3, :37_123].numpy(), sampling_rate=16000, return_tensors="np"
    ).input_features  # (1, 80, 3000)
    reference = np.asarray(extractor.model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))
    np.testing.assert_allclose(feats[3, :115].numpy(), reference[0, :115], atol=2e-3)
    # A batch equals one-by-one extraction (every piece has its own 30 s window).
    one, _ = extractor(wavs[2:3, :16000], torch.tensor([16000]))
    np.testing.assert_allclose(feats[2:3, :49].numpy(), one.numpy(), atol=1e-5)


def test_whisper_trim_window_batches_equal_lengths_only(whisper_folder: Path) -> None:
    from dvcli.features.whisper import WhisperEncoderFeatures

    extractor = WhisperEncoderFeatures(whisper_folder, window="trim")
    rng = np.random.default_rng(1)
    lengths = [16000, 24_000, 16000]
    wavs = torch.zeros(3, 24_000)
    for i, n in enumerate(lengths):
        wavs[i, :n] = torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1)
    feats, frames = extractor(wavs, torch.tensor(lengths))
    assert frames.tolist() == [49, 74, 49]
    for i, n in enumerate(lengths):
        one, _ = extractor(wavs[i : i + 1, :n], torch.tensor([n]))
        np.testing.assert_allclose(feats[i : i + 1, : int(frames[i])].numpy(), one.numpy(), atol=1e-5)
    with pytest.raises(UserError, match="not a CTranslate2 Whisper folder"):
        WhisperEncoderFeatures(whisper_folder.parent)
    with pytest.raises(ValueError, match="longer than Whisper's 30 s"):
        extractor(torch.zeros(1, 30 * 16000 + 1), torch.tensor([30 * 16000 + 1]))
