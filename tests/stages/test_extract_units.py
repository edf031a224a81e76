"""dv extract-units on small synthetic corpora: MFCC and a tiny fairseq HuBERT, batching, chunking,
sharding, labelling with k-means, and every bad input the issue lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dvcli.audio import load_audio
from dvcli.errors import UserError
from dvcli.features.hubert import load_hubert
from dvcli.features.mfcc import MfccFeatures
from dvcli.features.store import FeatureStore
from dvcli.manifest import read_manifest, read_units
from dvcli.testing import make_manifest
from stages.cluster import ClusterConfig
from stages.cluster import run as cluster
from stages.extract_units import ExtractUnitsConfig, default_max_batch, pieces, run, select_shard

HUBERT = Path(__file__).resolve().parents[1] / "data" / "fairseq_hubert_base.pt"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("corpus"), speakers=3, utterances=2, seconds=(0.6, 1.6))


def test_mfcc_features_for_every_utterance(manifest: Path, tmp_path: Path) -> None:
    result = run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "f", features="mfcc", batch_seconds=2.0))
    store = FeatureStore(result.out)
    utts = read_manifest(manifest)
    assert store.ids == [u.id for u in utts] and result.utterances == 6 and not result.skipped
    meta = json.loads((result.out / "meta.json").read_text())
    assert (meta["kind"], meta["dim"], meta["frame_rate"], meta["frames"]) == ("mfcc", 39, 50.0, store.total_frames)
    mfcc = MfccFeatures()
    for u in utts:
        wav = load_audio(u.audio)
        ref, n = mfcc(wav[None], torch.tensor([len(wav)]))
        assert store.get(u.id).shape == (int(n), 39) == ((len(wav) - 400) // 320 + 1, 39)
        np.testing.assert_allclose(store.get(u.id), ref[0].numpy().astype(np.float16), rtol=1e-3, atol=1e-2)


def test_hubert_batched_and_chunked_equal_one_by_one(manifest: Path, tmp_path: Path) -> None:
    cfg = dict(manifest=manifest, features="hubert", checkpoint=HUBERT, layer=2, device="cpu")
    batched = FeatureStore(run(ExtractUnitsConfig(out=tmp_path / "b", batch_seconds=5.0, max_batch=8, **cfg)).out)
    chunked = FeatureStore(run(ExtractUnitsConfig(out=tmp_path / "c", chunk_seconds=0.3, **cfg)).out)
    extractor = load_hubert(HUBERT, 2)
    for u in read_manifest(manifest):
        wav = load_audio(u.audio)
        ref, n = extractor(wav[None], torch.tensor([len(wav)]))
        np.testing.assert_allclose(batched.get(u.id), ref[0].numpy(), rtol=2e-3, atol=2e-3)  # float16 on disk
        assert chunked.get(u.id).shape == batched.get(u.id).shape  # chunks add up to the same frames
    assert FeatureStore(tmp_path / "b").meta["layer"] == 2


def test_batch_size_is_chosen_per_device(manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_max_batch(torch.device("cpu")) == 1 and default_max_batch(torch.device("cuda")) == 32
    sizes: list[int] = []
    forward = MfccFeatures.__call__

    def spy(self: MfccFeatures, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sizes.append(len(wavs))
        return forward(self, wavs, lengths)

    monkeypatch.setattr(MfccFeatures, "__call__", spy)
    run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "auto", features="mfcc"))
    assert sizes == [1] * 6  # CPU: one file per forward
    sizes.clear()
    run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "four", features="mfcc", max_batch=4))
    assert sizes == [4, 2]
    with pytest.raises(UserError, match="max_batch must be positive"):
        run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "zero", features="mfcc", max_batch=0))


def test_pieces_cover_the_frames_of_the_whole_file() -> None:
    for samples in (400, 719, 720, 5000, 16000, 16399):
        wav = torch.arange(samples, dtype=torch.float32)
        chunks = pieces(wav, chunk_frames=7)
        assert sum((len(c) - 400) // 320 + 1 for c in chunks) == (samples - 400) // 320 + 1
        assert all(torch.equal(c[:10], wav[i * 7 * 320 : i * 7 * 320 + 10]) for i, c in enumerate(chunks))


def test_shards_split_the_manifest_and_cluster_reads_them_all(manifest: Path, tmp_path: Path) -> None:
    outs = [
        run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / f"s{i}", features="mfcc", shard=i, num_shards=2)).out
        for i in range(2)
    ]
    ids = [FeatureStore(o).ids for o in outs]
    assert ids[0] + ids[1] == [u.id for u in read_manifest(manifest)] and ids[0] and ids[1]
    km = cluster(ClusterConfig(features=outs, out=tmp_path / "km", k=8, sample=1.0))
    assert list(read_units(km.out)) == ids[0] + ids[1]
    with pytest.raises(UserError, match="need 0 <= shard < num-shards"):
        select_shard([], 2, 2)


def test_kmeans_labels_new_audio_like_cluster(manifest: Path, tmp_path: Path) -> None:
    feats = run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "f", features="mfcc")).out
    km = cluster(ClusterConfig(features=[feats], out=tmp_path / "km", k=8, sample=1.0)).out
    direct = run(
        ExtractUnitsConfig(
            manifest=manifest, out=tmp_path / "u", features="mfcc", kmeans=km, dedup=True, keep_features=False
        )
    )
    assert read_units(direct.out) == read_units(km)
    assert {p.name for p in direct.out.iterdir()} >= {"units.tsv", "units.dedup.tsv", "durations.tsv"}
    assert not list(direct.out.glob("feats-*.npy"))


def test_decode_failure_mid_run_is_skipped_and_counted(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "c", speakers=2, utterances=2)
    broken = read_manifest(manifest)[1]
    broken.audio.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # corrupted after `dv prepare` read its header
    result = run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "f", features="mfcc"))
    assert [uid for uid, _ in result.skipped] == [broken.id] and result.utterances == 3
    assert broken.id not in FeatureStore(result.out).ids
    assert broken.id in (result.out / "skipped.tsv").read_text()
    assert json.loads((result.out / "meta.json").read_text())["skipped"] == 1
    for u in read_manifest(manifest):
        u.audio.write_bytes(b"")
    with pytest.raises(UserError, match="none of the 4 files could be read"):
        run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "g", features="mfcc"))
    assert not (tmp_path / "g").exists()


def test_bad_inputs(manifest: Path, tmp_path: Path) -> None:
    feats = run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "f", features="mfcc")).out
    km = cluster(ClusterConfig(features=[feats], out=tmp_path / "km", k=4, sample=1.0)).out
    with pytest.raises(UserError, match="centroids have dimension 39, the hubert features 24"):
        run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "x", checkpoint=HUBERT, layer=2, kmeans=km))
    with pytest.raises(UserError, match="needs --checkpoint"):
        run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "x"))
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "notahubert.pt")
    with pytest.raises(UserError, match="notahubert.pt: has weights but no fairseq config"):
        run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "x", checkpoint=tmp_path / "notahubert.pt"))
    with pytest.raises(UserError, match="--layer 7 is outside 1..3"):
        run(ExtractUnitsConfig(manifest=manifest, out=tmp_path / "x", checkpoint=HUBERT, layer=7))
    assert not (tmp_path / "x").exists()


def test_whisper_features_cut_long_files_into_30_second_pieces(tmp_path: Path) -> None:
    """A 65 s file is cut into pieces Whisper can read, and its frames still follow HuBERT's count."""
    from dvcli import whisper_base
    from dvcli.manifest import Utterance, write_manifest
    from dvcli.testing import voice

    if not whisper_base.is_installed():
        pytest.skip("the eval extra (Whisper base packages) is not installed")
    import soundfile as sf

    lengths = {"long": 65 * 16000 + 123, "short": 8000}
    rows = []
    for uid, samples in lengths.items():
        sf.write(tmp_path / f"{uid}.wav", voice(samples / 16000)[:samples], 16000)
        rows.append(Utterance(uid, tmp_path / f"{uid}.wav", "s", samples / 16000, ""))
    write_manifest(tmp_path / "manifest.tsv", rows)
    result = run(
        ExtractUnitsConfig(
            manifest=tmp_path / "manifest.tsv",
            out=tmp_path / "f",
            features="whisper",
            whisper_window="trim",
            device="cpu",
        )
    )
    store = FeatureStore(result.out)
    for uid, samples in lengths.items():
        assert store.get(uid).shape == ((samples - 400) // 320 + 1, 512)
    assert (store.meta["kind"], store.meta["checkpoint"], store.meta["whisper_window"]) == (
        "whisper",
        "whisper-base",
        "trim",
    )
