"""The recognisers and speaker verifiers behind dv evaluate, on tiny local inputs (no downloads)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dvcli.audio import load_audio
from dvcli.checkpoint import save_checkpoint
from dvcli.errors import UserError
from dvcli.evaluation.asr import FasterWhisper, Whisper, load_asr, score_transcript
from dvcli.evaluation.verifiers import (
    CampplusVerifier,
    cosine,
    load_verifier,
    register_verifier,
)
from dvcli.testing import SPEAKER_VOICES, voice

DATA = Path(__file__).resolve().parents[1] / "data"
#: espeak-ng (voice en-us+f3, 140 wpm) saying this, resampled to 16 kHz, 16-bit FLAC.
SPOKEN = "Please call me back tomorrow morning."


def test_pocketsphinx_recognises_the_shipped_speech_clip() -> None:
    pytest.importorskip("pocketsphinx")
    asr = load_asr("pocketsphinx")
    assert load_asr("pocketsphinx") is asr  # loaded once per process
    heard = asr.transcribe(load_audio(DATA / "please_call_me_back.flac").numpy())
    assert score_transcript(SPOKEN, heard).cer < 0.5
    # The same words score far worse against another sentence: the CER measures the speech.
    assert score_transcript("The birch canoe slid on the smooth planks.", heard).cer > 0.6
    assert asr.transcribe(np.zeros(8000, np.float32)) == ""


@pytest.fixture(scope="module")
def whisper_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged Whisper base, assembled into a cache of the test's own."""
    from dvcli import whisper_base

    if not whisper_base.is_installed():
        pytest.skip("the eval extra (Whisper base packages) is not installed")
    cache = tmp_path_factory.mktemp("dv-cache")
    whisper_base.whisper_base_folder(cache)
    return cache


def test_whisper_base_is_the_default_and_reads_the_shipped_clip(
    whisper_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DV_CACHE", str(whisper_cache))
    load_asr.cache_clear()
    asr = load_asr("auto")
    assert asr.name == "whisper-base" and isinstance(asr, FasterWhisper)
    heard = asr.transcribe(load_audio(DATA / "please_call_me_back.flac").numpy())
    assert score_transcript(SPOKEN, heard).cer <= 0.05, heard  # pocketsphinx: < 0.5
    assert score_transcript("The birch canoe slid on the smooth planks.", heard).cer > 0.6
    assert asr.transcribe(np.zeros(16000, np.float32)) == ""
    assert asr.transcribe(load_audio(DATA / "please_call_me_back.flac").numpy()) == heard  # repeatable
    # The same model as a folder: a CTranslate2 folder goes to faster-whisper, not transformers.
    folder = load_asr(str(whisper_cache / "whisper-base-ct2"))
    assert isinstance(folder, FasterWhisper) and folder.name == "whisper-ct2:whisper-base-ct2"
    load_asr.cache_clear()


def test_auto_falls_back_to_pocketsphinx_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("pocketsphinx")
    from dvcli import whisper_base

    monkeypatch.setattr(whisper_base, "is_installed", lambda: False)
    load_asr.cache_clear()
    with caplog.at_level(logging.WARNING, logger="dvcli"):
        assert load_asr("auto").name == "pocketsphinx"
    assert "much weaker" in caplog.text and "[eval]" in caplog.text
    load_asr.cache_clear()


def _tiny_whisper(folder: Path) -> None:
    """A random 2-layer Whisper with a byte-level tokenizer, saved like a Hugging Face checkpoint."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    folder.mkdir()
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    codes = printable + [256 + i for i in range(256 - len(printable))]  # GPT-2's byte -> unicode map
    vocab = {chr(c): i for i, c in enumerate(codes)}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    for s in specials:
        vocab[s] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    eot = "<|endoftext|>"
    tok = WhisperTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        unk_token=eot,
        bos_token=eot,
        eos_token=eot,
        pad_token=eot,
    )
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok).save_pretrained(folder)
    config = WhisperConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_target_positions=32,
        decoder_start_token_id=vocab["<|startoftranscript|>"],
        eos_token_id=vocab[eot],
        pad_token_id=vocab[eot],
        bos_token_id=vocab[eot],
    )
    WhisperForConditionalGeneration(config).save_pretrained(folder)


def test_whisper_loads_from_a_local_folder_and_returns_plain_text(tmp_path: Path) -> None:
    _tiny_whisper(tmp_path / "whisper")
    asr = Whisper(tmp_path / "whisper", torch.device("cpu"), max_new_tokens=6)
    text = asr.transcribe(voice(1.0))
    assert isinstance(text, str) and "<|" not in text  # special tokens stripped
    with pytest.raises(UserError, match="not a Whisper checkpoint folder"):
        Whisper(tmp_path, torch.device("cpu"))
    with pytest.raises(UserError, match="neither 'auto', 'whisper-base', 'pocketsphinx' nor a local Whisper"):
        load_asr(str(tmp_path / "missing"))


def _speaker(s: int, seed: int, seconds: float = 2.0) -> np.ndarray:
    pitch, formants = SPEAKER_VOICES[s]
    return voice(seconds, pitch=pitch, formants=formants, seed=seed)


def test_resemblyzer_tells_synthetic_speakers_apart() -> None:
    pytest.importorskip("resemblyzer")
    verifier = load_verifier("resemblyzer")
    e = verifier.embed([_speaker(0, 1), _speaker(0, 2), _speaker(1, 3), np.zeros(16000, np.float32)])
    assert e.shape == (4, 256)
    assert np.allclose(np.linalg.norm(e[:3], axis=1), 1.0, atol=1e-5)
    assert np.isnan(e[3]).all()  # silence: no embedding, so its SECS is left out
    same, different = cosine(e[0], e[1])[0], cosine(e[0], e[2])[0]
    assert same > different + 0.1


class _PitchVerifier:
    """A stand-in verifier: the normalised low-band spectrum (enough to tell these synthetic voices apart)."""

    name = "pitch"

    def embed(self, wavs: list[np.ndarray]) -> np.ndarray:
        rows = [np.abs(np.fft.rfft(w[:8000], 8000))[50:400] for w in wavs]
        return np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)


def test_checkpoint_kinds_plug_in_through_register_verifier(tmp_path: Path) -> None:
    register_verifier("test-pitch", lambda obj, path, device: _PitchVerifier())
    save_checkpoint({"weights": torch.zeros(1)}, tmp_path / "v.pt", kind="test-pitch")
    assert isinstance(load_verifier(str(tmp_path / "v.pt")), _PitchVerifier)
    save_checkpoint({"weights": torch.zeros(1)}, tmp_path / "other.pt", kind="t2u")
    with pytest.raises(UserError, match="holds no speaker encoder"):
        load_verifier(str(tmp_path / "other.pt"))


def test_campplus_checkpoints_plug_in_bare_or_nested(tmp_path: Path) -> None:
    from torchaudio.compliance.kaldi import fbank

    from dvcli.models import campplus

    torch.manual_seed(0)
    model = campplus.CAMPPlus(campplus.CAMPPlusConfig.tiny()).eval()
    state = model.state_dict()
    torch.save(state, tmp_path / "campplus_tiny.bin")  # 3D-Speaker's layout: a bare state dict
    nested = {
        "student": {f"encoder.{k}": v for k, v in state.items()},
        "teacher": {f"encoder.{k}": v * 0 for k, v in state.items()},
    }
    save_checkpoint(nested, tmp_path / "joint.pt", kind="joint")
    wav = _speaker(2, 0, 1.0)
    with torch.inference_mode():
        feats = fbank(torch.from_numpy(wav).unsqueeze(0), num_mel_bins=80, sample_frequency=16000, dither=0.0)
        expected = model((feats - feats.mean(0)).unsqueeze(0))[0].numpy()  # 3D-Speaker's front end
    expected /= np.linalg.norm(expected)
    for path in ("campplus_tiny.bin", "joint.pt"):
        verifier = load_verifier(str(tmp_path / path))
        assert isinstance(verifier, CampplusVerifier)
        assert np.allclose(verifier.embed([wav])[0], expected, atol=1e-5)  # the student, not the teacher
