"""Helpers that build synthetic audio and small corpora, for tests and examples.

Voices here are crude (a glottal-pulse-like harmonic source through a few formant resonances), but
each synthetic speaker has its own pitch and formants, so speaker models can tell them apart and
nothing needs downloading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from dvcli.audio import SAMPLE_RATE
from dvcli.manifest import Utterance, write_manifest


def sine(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A pure tone, ``(T,)`` float32."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def voice(
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    pitch: float = 120.0,
    formants: Sequence[float] = (700.0, 1200.0, 2600.0),
    seed: int = 0,
) -> np.ndarray:
    """A vowel-like synthetic voice with a wandering pitch and syllable-rate amplitude modulation.

    Returns ``(T,)`` float32 peaking near 0.5.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = pitch * (1 + 0.08 * np.sin(2 * math.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 6.28)))
    phase = 2 * math.pi * np.cumsum(f0) / sample_rate
    harmonics = np.zeros(n)
    for k in range(1, int(sample_rate / 2 / pitch)):
        freq = k * f0
        # Each harmonic weighted by the formant resonances it falls near.
        gain = sum(1.0 / (1 + ((freq - f) / (0.12 * f)) ** 2) for f in formants)
        harmonics += np.where(freq < sample_rate / 2, gain * np.sin(k * phase) / k**0.5, 0.0)
    envelope = 0.55 + 0.45 * np.sin(2 * math.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6.28))
    audio = harmonics * envelope + 0.01 * rng.standard_normal(n)
    return (0.5 * audio / (np.abs(audio).max() + 1e-9)).astype(np.float32)


#: Distinct (pitch, formants) per synthetic speaker.
SPEAKER_VOICES = [
    (95.0, (600.0, 1000.0, 2400.0)),
    (210.0, (850.0, 1600.0, 2900.0)),
    (130.0, (400.0, 2000.0, 2600.0)),
    (170.0, (700.0, 1300.0, 3100.0)),
    (115.0, (500.0, 1500.0, 2500.0)),
    (240.0, (950.0, 1900.0, 3300.0)),
    (150.0, (650.0, 1100.0, 2800.0)),
    (190.0, (450.0, 1700.0, 2700.0)),
]


def make_corpus(
    root: str | Path,
    speakers: int = 4,
    utterances: int = 3,
    *,
    sample_rate: int = SAMPLE_RATE,
    seconds: tuple[float, float] = (1.0, 2.0),
    suffix: str = ".wav",
    seed: int = 0,
) -> list[Utterance]:
    """Write a ``folder``-layout corpus: ``root/spkN/spkN_MMM{suffix}`` plus ``.txt`` transcripts.

    Returns the utterances (absolute audio paths), in the order written.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows: list[Utterance] = []
    for s in range(speakers):
        pitch, formants = SPEAKER_VOICES[s % len(SPEAKER_VOICES)]
        pitch *= 1 + 0.05 * (s // len(SPEAKER_VOICES))
        folder = root / f"spk{s}"
        folder.mkdir(parents=True, exist_ok=True)
        for u in range(utterances):
            uid = f"spk{s}_{u:03d}"
            dur = float(rng.uniform(*seconds))
            audio = voice(dur, sample_rate, pitch=pitch, formants=formants, seed=seed * 1000 + s * 100 + u)
            path = folder / f"{uid}{suffix}"
            sf.write(str(path), audio, sample_rate)
            text = f"speaker {s} says sentence number {u}."
            path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
            rows.append(Utterance(uid, path.resolve(), f"spk{s}", len(audio) / sample_rate, text))
    return rows


def make_manifest(root: str | Path, speakers: int = 4, utterances: int = 3, **kwargs: object) -> Path:
    """A synthetic corpus under ``root/corpus`` and its ``root/manifest.tsv``; returns the manifest path."""
    root = Path(root)
    rows = make_corpus(root / "corpus", speakers, utterances, **kwargs)  # type: ignore[arg-type]
    write_manifest(root / "manifest.tsv", rows)
    return root / "manifest.tsv"


def pseudo_units(text: str, k: int = 100) -> list[int]:
    """Frame-level stand-in units for ``text``, for testing text-to-unit without audio.

    Deterministic and learnable like real units: each normalised character gives one (space) or two
    (letters) units that depend on it and on the character before (a crude coarticulation), each
    repeated for 1-3 frames as 50 Hz units are; neighbouring units always differ, so collapsing
    runs leaves about 1.8 units per character (a 40-character sentence gives ~70 units).
    """
    import zlib

    from dvcli.text import normalize_text

    units: list[int] = []
    previous = " "
    for char in normalize_text(text):
        for part in range(1 if char == " " else 2):
            code = zlib.crc32(f"{previous}{char}{part}".encode())
            unit = code % k
            if units and unit == units[-1]:
                unit = (unit + 1) % k
            units += [unit] * (1 + (code >> 16) % 3)
        previous = char
    return units


#: Words for made-up test sentences (the toy corpus's own sentences are not needed for t2u tests).
WORDS = (
    "the a small red old quiet bright cold green heavy soft warm fox dog ship river stone house "
    "garden window letter bridge candle morning evening winter market road field jumps runs sails "
    "waits falls sings opens carries finds keeps over under near behind across through beside with"
).split()


def make_sentences(count: int, *, words: tuple[int, int] = (6, 9), seed: int = 0) -> list[str]:
    """``count`` distinct made-up sentences of ``words`` words, capitalised and with a full stop."""
    rng = np.random.default_rng(seed)
    sentences: list[str] = []
    while len(sentences) < count:
        n = int(rng.integers(words[0], words[1] + 1))
        sentence = " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n)).capitalize() + "."
        if sentence not in sentences:
            sentences.append(sentence)
    return sentences


def make_t2u_data(root: str | Path, sentences: Sequence[str], speakers: int = 1, *, k: int = 100) -> tuple[Path, Path]:
    """A text-only manifest (every speaker reads every sentence; audio paths are placeholders) and a
    ``units.tsv`` of :func:`pseudo_units` with a ``meta.json`` giving ``k``, as ``dv cluster`` writes.

    Returns ``(manifest_path, units_folder)``.
    """
    import json

    from dvcli.manifest import write_units

    root = Path(root)
    rows = [
        Utterance(f"spk{s}_{i:03d}", root / "audio" / f"spk{s}_{i:03d}.wav", f"spk{s}", 3.0, text)
        for s in range(speakers)
        for i, text in enumerate(sentences)
    ]
    write_manifest(root / "manifest.tsv", rows)
    units = root / "units"
    units.mkdir(parents=True, exist_ok=True)
    write_units(units / "units.tsv", {r.id: pseudo_units(r.text, k) for r in rows})
    (units / "meta.json").write_text(json.dumps({"stage": "cluster", "k": k, "frame_rate": 50.0}), encoding="utf-8")
    return root / "manifest.tsv", units


def make_joint_model(
    folder: str | Path,
    *,
    k: int = 50,
    seed: int = 0,
    embedding: int = 16,
    kmeans_sha256: str | None = None,
    speaker: str = "campplus",
) -> Path:
    """A randomly initialised tiny joint model (``VitsConfig.tiny`` + ``CAMPPlusConfig.tiny``, or
    ``ByolaConfig.tiny`` with ``speaker="byol-a"``) saved as ``dv train-joint`` saves one; returns
    ``folder``. Same arguments, same file."""
    import torch

    from dvcli.joint.model import MODEL_FILE, UnitInfo, save_joint
    from dvcli.models.byola import ByolaConfig, ByolaEncoder
    from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
    from dvcli.models.vits import VitsConfig, VitsGenerator

    folder = Path(folder)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        generator = VitsGenerator(VitsConfig.tiny(n_units=k, speaker_embedding_dim=embedding))
        encoder: CAMPPlus | ByolaEncoder = (
            ByolaEncoder(ByolaConfig.tiny(embedding_size=embedding)).eval()
            if speaker == "byol-a"
            else CAMPPlus(CAMPPlusConfig.tiny(embedding_size=embedding))
        )
    finally:
        torch.random.set_rng_state(state)
    save_joint(folder / MODEL_FILE, generator, encoder, UnitInfo(k=k, frame_rate=50.0, kmeans_sha256=kmeans_sha256))
    return folder


def make_t2u_model(
    folder: str | Path,
    *,
    k: int = 50,
    seed: int = 0,
    units_per_token: float = 1.0,
    kmeans_sha256: str | None = None,
) -> Path:
    """A randomly initialised (untrained) miniature text-to-unit folder that :class:`dvcli.t2u.inference.TextToUnit`
    loads: a SentencePiece tokenizer trained on :func:`make_sentences`, unit tokens, a 1-layer mBART.

    Its output is gibberish of a fixed length (``units_per_token`` per source token + 4): enough to
    test everything around it in seconds. Returns ``folder``.
    """
    import torch
    from transformers import MBartForConditionalGeneration

    from dvcli.t2u.model import T2UArch, mbart_config, restrict_output, set_generation_defaults
    from dvcli.t2u.tokenizer import add_unit_tokens, train_text_tokenizer
    from dvcli.t2u.vocab import UnitVocab
    from dvcli.text import normalize_text

    folder = Path(folder)
    tokenizer, _ = train_text_tokenizer([normalize_text(s) for s in make_sentences(30, seed=seed)], 80, seed=seed)
    offset = add_unit_tokens(tokenizer, k)
    vocab = UnitVocab(
        k=k,
        offset=offset,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        frame_rate=50.0,
        kmeans_sha256=kmeans_sha256,
        units_per_token=units_per_token,
        extra_units=4,
    )
    arch = T2UArch(d_model=16, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=32, max_positions=256)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = MBartForConditionalGeneration(
            mbart_config(
                arch,
                len(tokenizer),
                dropout=0.0,
                pad_id=vocab.pad_id,
                eos_id=vocab.eos_id,
                bos_id=tokenizer.bos_token_id or 0,
            )
        )
        with torch.no_grad():  # large random weights: varied units rather than one repeated (and collapsed)
            for parameter in model.parameters():
                if parameter.dim() > 1:
                    parameter.normal_(0.0, 1.0)
    finally:
        torch.random.set_rng_state(state)
    restrict_output(model, vocab)
    with torch.no_grad():
        model.final_logits_bias[:, vocab.eos_id] = -50.0  # never stop early: every output runs to the cap
    set_generation_defaults(model, vocab, beams=1)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    vocab.save(folder)
    return folder
