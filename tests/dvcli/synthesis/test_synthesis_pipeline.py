"""Synthesis library: the reference clip, text chunking, the split VITS pipeline, ONNX parity."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dvcli.audio import SAMPLE_RATE
from dvcli.errors import UserError
from dvcli.features.fbank import KaldiFbank
from dvcli.joint.model import JointModel, load_joint
from dvcli.reference import ReferenceOptions, frame_energies_db, load_reference, prepare_reference
from dvcli.synthesis.pipeline import SynthesisControls, Synthesizer, join_with_pauses, text_chunks
from dvcli.testing import make_joint_model, voice

#: ONNX Runtime vs PyTorch on the same inputs and noise: largest absolute difference allowed
#: (float32 graphs; observed ~1e-7 on waveforms in [-1, 1] and ~1e-8 on embeddings).
ONNX_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def joint(tmp_path_factory: pytest.TempPathFactory) -> JointModel:
    return load_joint(make_joint_model(tmp_path_factory.mktemp("joint")))


def _speech(seconds: float = 2.0, lead: float = 0.5, tail: float = 0.5, seed: int = 0) -> torch.Tensor:
    """A synthetic voice with ``lead`` and ``tail`` seconds of faint noise around it."""
    rng = np.random.default_rng(seed)
    body = voice(seconds, SAMPLE_RATE, seed=seed)
    wav = np.concatenate([np.zeros(int(lead * SAMPLE_RATE)), body, np.zeros(int(tail * SAMPLE_RATE))])
    wav = wav + 1e-4 * rng.standard_normal(wav.shape[0])
    return torch.from_numpy(wav.astype(np.float32))


# -- the reference clip ---------------------------------------------------------------------------


def test_reference_is_trimmed_to_the_speech_and_levelled() -> None:
    ref = prepare_reference(_speech(2.0, lead=0.6, tail=0.8) * 0.01, ReferenceOptions())
    # Edges trimmed to within the detector's 100 ms context (plus a frame) of the 2 s of speech.
    assert 2.0 <= ref.seconds <= 2.0 + 0.25, ref.seconds
    assert ref.trimmed_seconds == pytest.approx(3.4 - ref.seconds, abs=1e-3)
    energies = frame_energies_db(ref.wav)
    loud = energies[energies > np.percentile(energies, 95) - 40]
    level = 10 * np.log10(np.mean(10 ** (loud / 10)))
    assert level == pytest.approx(-20.0, abs=0.5)  # quiet input brought to the target level
    assert float(ref.wav.abs().max()) < 1.0 and not ref.noise_only
    untrimmed = prepare_reference(_speech(2.0, lead=0.6, tail=0.8), ReferenceOptions(vad=False))
    assert untrimmed.seconds == pytest.approx(3.4, abs=1e-3)


def test_reference_crop_and_refusals(caplog: pytest.LogCaptureFixture) -> None:
    assert prepare_reference(_speech(5.0), ReferenceOptions(max_seconds=3.0)).seconds == pytest.approx(3.0)
    with pytest.raises(UserError, match=r"clip.wav: reference is 0.30 s long; at least 0.5 s"):
        prepare_reference(torch.from_numpy(voice(0.3, SAMPLE_RATE)), ReferenceOptions(), name="clip.wav")
    with pytest.raises(UserError, match="reference is silent"):
        prepare_reference(torch.zeros(SAMPLE_RATE * 2), ReferenceOptions())
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(SAMPLE_RATE * 2).astype(np.float32)) * 0.1
    # Steady noise holds no speech: refused with the detector on, a warning with it off.
    with pytest.raises(UserError, match=r"noise.wav: no speech found in 2.0 s of audio"):
        prepare_reference(noise, ReferenceOptions(), name="noise.wav")
    with caplog.at_level(logging.WARNING):
        ref = prepare_reference(noise, ReferenceOptions(vad=False))
    assert ref.noise_only and "steady noise with no speech" in caplog.text
    # Speech under loud noise (5 dB SNR) still counts as speech.
    noisy = _speech(2.0, lead=0.0, tail=0.0) + 0.5 * noise[: SAMPLE_RATE * 2] * float(_speech(2.0, 0, 0).std() / 0.1)
    assert not prepare_reference(noisy, ReferenceOptions()).noise_only


def test_reference_reads_any_rate_and_channel_count(tmp_path: Path) -> None:
    import soundfile as sf

    mono = _speech(1.5).numpy()
    from dvcli.audio import resample

    at_44k = resample(torch.from_numpy(mono), SAMPLE_RATE, 44100).numpy()
    sf.write(tmp_path / "stereo.flac", np.stack([at_44k, 0.5 * at_44k], axis=1), 44100)
    ref = load_reference(tmp_path / "stereo.flac", ReferenceOptions(vad=False))
    assert ref.source_seconds == pytest.approx(mono.shape[0] / SAMPLE_RATE, abs=1e-3)


# -- references from real life (issue 15, kind 7) -------------------------------------------------

REAL_SPEECH = Path(__file__).resolve().parents[3] / "tests" / "data" / "please_call_me_back.flac"


def _embed(wav: torch.Tensor) -> torch.Tensor:
    from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
    from dvcli.speaker.encoder import SpeakerFrontend

    torch.manual_seed(0)
    frontend = SpeakerFrontend(CAMPPlus(CAMPPlusConfig.tiny())).eval()
    with torch.no_grad():
        return frontend(wav[None])[0]


@pytest.mark.parametrize("surround", ["silence", "noise -60 dBFS", "noise -40 dBFS", "hum and DC"])
def test_a_short_utterance_inside_long_silence_or_quiet_noise_is_found(surround: str) -> None:
    from dvcli.audio import load_audio

    speech = load_audio(REAL_SPEECH, SAMPLE_RATE)  # 2.8 s of a real voice, -20 dBFS RMS
    rng = np.random.default_rng(1)
    pad = np.zeros(20 * SAMPLE_RATE)
    if surround.startswith("noise"):
        pad = rng.standard_normal(pad.shape[0]) * 10 ** (int(surround.split()[1]) / 20)
    clip = torch.from_numpy(np.concatenate([pad, speech.numpy(), pad[::-1]]).astype(np.float32))
    if surround == "hum and DC":  # a cheap phone line: 50 Hz hum at -40 dBFS and a DC offset of 0.2
        t = torch.arange(clip.shape[0]) / SAMPLE_RATE
        clip = clip + 0.01 * torch.sin(2 * torch.pi * 50 * t) + 0.2
    clean = prepare_reference(speech, ReferenceOptions())
    ref = prepare_reference(clip, ReferenceOptions(max_seconds=3.0), name="voicemail.wav")
    # The 40 s of surround are gone (the old energy rule called these clips noise and kept them all).
    assert ref.seconds <= speech.shape[0] / SAMPLE_RATE + 0.3 and ref.trimmed_seconds > 39.0, ref
    assert ref.speech_seconds is not None and ref.speech_seconds > 1.5
    assert abs(float(ref.wav.mean())) < 0.01  # DC removed
    cosine = torch.nn.functional.cosine_similarity(_embed(ref.wav), _embed(clean.wav), dim=0)
    assert cosine > 0.95, cosine  # was -0.22 with the whole clip embedded


def test_a_reference_without_enough_speech_is_refused_also_after_the_crop() -> None:
    speech = torch.from_numpy(voice(0.3, SAMPLE_RATE))
    clip = torch.cat([torch.zeros(5 * SAMPLE_RATE), speech, torch.zeros(5 * SAMPLE_RATE)])
    with pytest.raises(UserError, match=r"short.wav: no speech found in 10.3 s of audio.*--no-vad"):
        prepare_reference(clip + 1e-4 * torch.randn(clip.shape[0]), ReferenceOptions(), name="short.wav")
    # 0.3 s of speech, then a pause the trim keeps (0.15 s), then more: a 0.4 s crop holds too little.
    two = torch.cat([speech, torch.zeros(int(0.15 * SAMPLE_RATE)), torch.from_numpy(voice(2.0, SAMPLE_RATE))])
    with pytest.raises(UserError, match=r"no speech found in the 0.6 s kept"):
        prepare_reference(two + 1e-4 * torch.randn(two.shape[0]), ReferenceOptions(max_seconds=0.6, min_seconds=0.5))


def test_channels_in_opposite_polarity_are_not_averaged_away(tmp_path: Path) -> None:
    import soundfile as sf

    from dvcli.audio import downmix, load_audio

    speech = load_audio(REAL_SPEECH, SAMPLE_RATE)
    inverted = torch.stack([speech, -speech])
    assert torch.equal(downmix(inverted), speech)  # the mean would be silence
    one_silent = torch.stack([speech, torch.zeros_like(speech)])
    assert torch.allclose(downmix(one_silent), speech / 2)  # the mean: level normalisation restores it
    # As a call recorder writes it: 8 kHz stereo, opposite polarity, a DC offset, silence around.
    at_8k = load_audio(REAL_SPEECH, 8000).numpy()
    pad = np.zeros(8000 * 5)
    left = np.concatenate([pad, at_8k, pad]) + 0.1
    sf.write(tmp_path / "call.wav", np.stack([left, -left], axis=1), 8000, subtype="PCM_16")
    ref = load_reference(tmp_path / "call.wav", ReferenceOptions())
    assert ref.seconds < 3.2 and ref.speech_seconds is not None and ref.speech_seconds > 1.5


# -- text -----------------------------------------------------------------------------------------


def test_text_chunks_keep_every_word_in_order_and_bound_the_length() -> None:
    long_sentence = ", ".join(f"word{i} and more" for i in range(40)) + "."
    text = f"Short one. {long_sentence} " + " ".join(f"w{i}" for i in range(95)) + "! Last?"
    chunks = text_chunks(text, max_words=20)
    assert chunks[0] == "Short one." and chunks[-1] == "Last?"
    assert all(len(c.split()) <= 20 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    assert text_chunks("   ") == []


def test_join_with_pauses() -> None:
    out = join_with_pauses([torch.ones(3), torch.ones(2) * 2], 4)
    assert out.tolist() == [1, 1, 1, 0, 0, 0, 0, 2, 2]


# -- the split pipeline -----------------------------------------------------------------------------


def test_split_pipeline_equals_generator_infer(joint: JointModel) -> None:
    synth = Synthesizer(joint)
    speaker = synth.embed(_speech(1.0))
    sequences = [[3, 1, 4, 1, 5, 9, 2, 6], [5, 3, 5]]
    controls = SynthesisControls(noise_scale=0.5, noise_scale_w=0.7, length_scale=1.3)
    ours = synth.infer(sequences, speaker, controls, torch.Generator().manual_seed(7))
    units = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [5, 3, 5, 50, 50, 50, 50, 50]])
    wav, lengths = joint.generator.infer(
        units,
        torch.tensor([8, 3]),
        speaker.expand(2, -1),
        noise_scale=0.5,
        noise_scale_w=0.7,
        length_scale=1.3,
        rng=torch.Generator().manual_seed(7),
    )
    assert float(wav.abs().max()) > 1e-3  # far above the tolerance below
    for i in range(2):
        assert ours[i].shape[0] == int(lengths[i])
        torch.testing.assert_close(ours[i], wav[i, : int(lengths[i])], rtol=0, atol=1e-6)
    # Speaker embedding: the frontend's own forward.
    torch.testing.assert_close(speaker, joint.speaker.embed([_speech(1.0)])[0])


def test_synthesize_joins_sentences_with_pauses_and_is_seeded(joint: JointModel) -> None:
    synth = Synthesizer(joint)
    speaker = synth.embed(_speech(1.0))
    controls = SynthesisControls(pause=0.25, batch_size=2)
    sequences = [[1, 2, 3, 4], [5, 6, 7, 8, 9, 10], [11, 12]]
    a = synth.synthesize(sequences, speaker, controls, torch.Generator().manual_seed(1))
    b = synth.synthesize(sequences, speaker, controls, torch.Generator().manual_seed(1))
    c = synth.synthesize(sequences, speaker, controls, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    zero_runs = _zero_runs(a.numpy())
    assert sum(run >= int(0.25 * SAMPLE_RATE) for run in zero_runs) == 2  # two pauses between three sentences


def _zero_runs(x: np.ndarray) -> list[int]:
    runs, n = [], 0
    for v in x:
        if v == 0.0:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs + ([n] if n else [])


# -- ONNX -------------------------------------------------------------------------------------------


def test_exportable_fbank_equals_kaldi_fbank() -> None:
    from dvcli.synthesis.onnx_backend import ExportableFbank

    fbank = KaldiFbank(80)
    wav = torch.stack([_speech(1.0, seed=1), _speech(1.0, seed=2)])
    expected, _ = fbank(wav)
    torch.testing.assert_close(ExportableFbank(fbank)(wav), expected, rtol=0, atol=2e-3)


def test_onnx_graphs_match_pytorch_at_other_lengths(
    joint: JointModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    from dvcli.synthesis.onnx_backend import GRAPHS, OnnxBackend, cache_folder
    from dvcli.synthesis.pipeline import TorchBackend

    monkeypatch.setenv("DV_CACHE", str(tmp_path))
    onnx = OnnxBackend.cached(joint, threads=1)  # exports into the cache ...
    folder = cache_folder(joint.path)
    assert folder.parent == tmp_path / "onnx"
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{g}.onnx" for g in GRAPHS] + ["onnx.json"])
    stamp = (folder / "vits_decoder.onnx").stat().st_mtime_ns
    onnx = OnnxBackend.cached(joint, threads=1)  # ... and loads from it the next time
    assert (folder / "vits_decoder.onnx").stat().st_mtime_ns == stamp
    torch_backend = TorchBackend(joint)
    ref = _speech(1.7, seed=3).reshape(1, -1)  # not the export example's length
    torch.testing.assert_close(onnx.embed(ref), torch_backend.embed(ref), rtol=0, atol=ONNX_TOLERANCE)

    gen = torch.Generator().manual_seed(0)
    units = torch.randint(0, 50, (3, 31), generator=gen)  # batch and length both unlike the example
    lengths = torch.tensor([31, 20, 7])
    speaker = torch.randn(3, 16, generator=gen)
    noise = torch.randn(3, 2, 31, generator=gen)
    expected = torch_backend.prior(units, lengths, speaker, noise)
    for got, want in zip(onnx.prior(units, lengths, speaker, noise), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=ONNX_TOLERANCE)
    z_p, mask = torch.randn(3, 16, 57, generator=gen), (torch.arange(57) < torch.tensor([[57], [40], [9]])).float()
    torch.testing.assert_close(
        onnx.decode(z_p, mask[:, None], speaker),
        torch_backend.decode(z_p, mask[:, None], speaker),
        rtol=0,
        atol=ONNX_TOLERANCE,
    )

    # End to end with the same seed: the same audio from both backends.
    synth_onnx, synth_torch = Synthesizer(joint, onnx), Synthesizer(joint, torch_backend)
    sequences = [list(range(1, 40)), [4, 8, 15, 16, 23, 42]]
    a, b = (
        s.synthesize(sequences, s.embed(ref[0]), SynthesisControls(), torch.Generator().manual_seed(5))
        for s in (synth_onnx, synth_torch)
    )
    assert a.shape == b.shape and float(b.abs().max()) > 100 * ONNX_TOLERANCE
    torch.testing.assert_close(a, b, rtol=0, atol=ONNX_TOLERANCE)


def test_onnx_with_a_deterministic_duration_predictor_and_blanks(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from dvcli.joint.model import UnitInfo, save_joint
    from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
    from dvcli.models.vits import VitsConfig, VitsGenerator
    from dvcli.synthesis.onnx_backend import OnnxBackend

    config = VitsConfig.tiny(n_units=20, speaker_embedding_dim=16, stochastic_duration=False, add_blank=True)
    save_joint(
        tmp_path / "model.pt", VitsGenerator(config), CAMPPlus(CAMPPlusConfig.tiny(embedding_size=16)), UnitInfo(k=20)
    )
    joint = load_joint(tmp_path)
    speaker = torch.randn(16)
    a, b = (
        Synthesizer(joint, backend).infer(
            [[1, 2, 3, 4, 5]], speaker, SynthesisControls(), torch.Generator().manual_seed(0)
        )[0]
        for backend in (OnnxBackend.from_joint(joint, threads=1), None)
    )
    torch.testing.assert_close(a, b, rtol=0, atol=ONNX_TOLERANCE)
    wav, _ = joint.generator.infer(
        torch.tensor([[1, 2, 3, 4, 5]]), torch.tensor([5]), speaker[None], rng=torch.Generator().manual_seed(0)
    )
    assert float(wav.abs().max()) > 1e-3
    torch.testing.assert_close(b, wav[0], rtol=0, atol=1e-6)


def test_a_byol_a_conditioned_model_exports_its_speaker_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from dvcli.models.byola import ByolaEncoder
    from dvcli.synthesis.onnx_backend import OnnxBackend
    from dvcli.synthesis.pipeline import TorchBackend

    monkeypatch.setenv("DV_CACHE", str(tmp_path / "cache"))
    joint = load_joint(make_joint_model(tmp_path / "byola", speaker="byol-a"))
    assert isinstance(joint.speaker.encoder, ByolaEncoder)
    onnx, torch_backend = OnnxBackend.cached(joint, threads=1), TorchBackend(joint)
    for seconds in (1.3, 2.05):  # neither the export example's length
        ref = _speech(seconds, seed=4).reshape(1, -1)
        expected = torch_backend.embed(ref)
        assert float(expected.abs().max()) > 100 * ONNX_TOLERANCE
        torch.testing.assert_close(onnx.embed(ref), expected, rtol=0, atol=ONNX_TOLERANCE)
