"""Offline speech recognition for intelligibility (CER/WER) of synthesized speech.

Recognisers, all loaded from local files only (``--asr``):

- ``whisper-base`` (the default when installed): OpenAI's Whisper base in its CTranslate2
  conversion, which the ``eval`` extra installs from PyPI (:mod:`dvcli.whisper_base`), run by
  ``faster-whisper`` (int8 on CPU, float16 on CUDA), English, beam 5, temperature 0 (repeatable).
- ``pocketsphinx``: CMU PocketSphinx 5 with the US-English models its wheel ships. Weak (it reads
  the toy corpus's own recordings at 40-65% CER), kept for comparison with older reports.
- a local Whisper folder: a CTranslate2 conversion (``model.bin``, e.g. ``faster-whisper-large-v3``)
  through faster-whisper, or a Hugging Face checkpoint (``config.json`` + weights) through
  transformers. Use a large one for numbers you publish.

Reference and transcript are normalised as the Whisper paper's evaluation does (transformers'
``EnglishTextNormalizer``: lower case, no punctuation, numbers as digits, contractions expanded), not
with the text-to-unit normaliser; the edit distances come from ``jiwer``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from dvcli.audio import SAMPLE_RATE
from dvcli.errors import UserError
from dvcli.whisper_base import INSTALL_HINT, ct2_placement

log = logging.getLogger(__name__)

POCKETSPHINX = "pocketsphinx"
WHISPER_BASE = "whisper-base"
#: ``--asr auto``: Whisper base when its packages are installed, else pocketsphinx.
AUTO = "auto"


class Transcriber(Protocol):
    """Anything that turns 16 kHz speech into text."""

    name: str

    def transcribe(self, wav: np.ndarray) -> str:
        """``(T,)`` float32 mono at 16 kHz -> the recognised text."""
        ...


class PocketSphinx:
    """PocketSphinx with the en-us model bundled in its wheel (defaults otherwise, for comparability)."""

    name = POCKETSPHINX

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise UserError(
                "--asr pocketsphinx: the pocketsphinx package is not installed "
                "(pip install 'dino-vits[eval]', or point --asr to a local Whisper folder)"
            ) from None
        self._decoder = Decoder(loglevel="FATAL")

    def transcribe(self, wav: np.ndarray) -> str:
        # PocketSphinx reads 16-bit PCM; its cepstral mean normalisation makes it level-tolerant.
        pcm = (np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


class FasterWhisper:
    """A CTranslate2 Whisper folder (``model.bin``, ``config.json``, tokenizer) run by faster-whisper.

    Decoding is deterministic: English, transcription, beam 5, temperature 0 without the sampling
    fallback, no previous-text conditioning, no voice-activity filter (clips are short sentences).
    """

    def __init__(self, folder: Path, device: torch.device, name: str | None = None, beams: int = 5) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise UserError(f"--asr {folder}: faster-whisper is not installed ({INSTALL_HINT})") from None
        where, compute_type = ct2_placement(device)
        try:
            self.model = WhisperModel(
                str(folder),
                device=where,
                compute_type=compute_type,
                cpu_threads=torch.get_num_threads(),
                local_files_only=True,
            )
        except (OSError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{folder}: cannot load this CTranslate2 Whisper folder ({first})") from None
        self.name = name or f"whisper-ct2:{folder.name}"
        self.beams = beams

    def transcribe(self, wav: np.ndarray) -> str:
        segments, _ = self.model.transcribe(
            np.asarray(wav, dtype=np.float32),
            language="en",
            task="transcribe",
            beam_size=self.beams,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()


class Whisper:
    """A Whisper checkpoint folder (``config.json``, weights, tokenizer files) run through transformers."""

    def __init__(self, folder: Path, device: torch.device, language: str = "en", max_new_tokens: int = 200) -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if not (folder / "config.json").is_file():
            raise UserError(
                f"{folder}: not a Whisper checkpoint folder (needs config.json, weights and tokenizer files; "
                "save one with save_pretrained, or use --asr pocketsphinx)"
            )
        try:
            self.processor = WhisperProcessor.from_pretrained(folder, local_files_only=True)
            self.model = WhisperForConditionalGeneration.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as err:
            raise UserError(f"{folder}: cannot load Whisper from this folder ({str(err).splitlines()[0]})") from None
        self.model.to(device).eval()
        self.device = device
        self.name = f"whisper:{folder.name}"
        self.max_new_tokens = max_new_tokens
        # English-only checkpoints (*.en) reject language/task arguments.
        multilingual = getattr(self.model.generation_config, "is_multilingual", False)
        self._generate_kwargs = {"language": language, "task": "transcribe"} if multilingual else {}

    @torch.inference_mode()
    def transcribe(self, wav: np.ndarray) -> str:
        features = self.processor(
            np.asarray(wav, dtype=np.float32), sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(self.device, self.model.dtype)  # (1, 80, 3000)
        ids = self.model.generate(features, max_new_tokens=self.max_new_tokens, **self._generate_kwargs)
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def default_asr() -> str:
    """What ``--asr auto`` means here: ``whisper-base`` when installed, else ``pocketsphinx``."""
    from dvcli.whisper_base import is_installed

    if is_installed():
        return WHISPER_BASE
    log.warning(
        "Whisper base is not installed, so CER comes from pocketsphinx, which is much weaker (%s)", INSTALL_HINT
    )
    return POCKETSPHINX


@functools.lru_cache(maxsize=4)
def load_asr(spec: str, device: str = "cpu") -> Transcriber:
    """A recogniser, loaded once per process.

    Args:
        spec: ``auto``, ``whisper-base``, ``pocketsphinx``, or a local Whisper folder (CTranslate2
            ``model.bin`` or a Hugging Face checkpoint).
        device: ``cpu`` or ``cuda``.

    Raises:
        UserError: a package is missing, or the folder is not a Whisper model.
    """
    if spec == AUTO:
        spec = default_asr()
    if spec == POCKETSPHINX:
        return PocketSphinx()
    if spec == WHISPER_BASE:
        from dvcli.whisper_base import whisper_base_folder

        return FasterWhisper(whisper_base_folder(), torch.device(device), name=WHISPER_BASE)
    folder = Path(spec)
    if not folder.is_dir():
        raise UserError(f"--asr {spec}: neither 'auto', 'whisper-base', 'pocketsphinx' nor a local Whisper folder")
    if (folder / "model.bin").is_file():
        return FasterWhisper(folder, torch.device(device))
    return Whisper(folder, torch.device(device))


@functools.lru_cache(maxsize=1)
def _english_normalizer():  # noqa: ANN202 - transformers' EnglishTextNormalizer
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # The Whisper repositories' normalizer.json (British -> American spellings) is not packaged; an
    # empty mapping leaves spellings as written on both sides.
    return EnglishTextNormalizer({})


def normalize_for_cer(text: str) -> str:
    """The Whisper paper's English normalisation (transformers' ``EnglishTextNormalizer``).

    Lower case, punctuation and filler words removed, spelled-out numbers and currencies as digits,
    contractions and titles expanded: ``"Dr. Smith paid three dollars and fifty cents!"`` ->
    ``"doctor smith paid $3.50"``.
    """
    # Whisper's normaliser keeps "." for decimals, and so leaves one after an ellipsis ("well..." ->
    # "well ."): a token of nothing but such symbols is dropped.
    return " ".join(t for t in _english_normalizer()(text).split() if t.strip(".$%€£¢"))


@dataclasses.dataclass
class Transcript:
    """A recognised clip against its text; counts allow corpus-level rates as well as per-clip ones."""

    reference: str  # normalised input text
    hypothesis: str  # normalised recognised text
    char_errors: int
    chars: int
    word_errors: int
    words: int

    @property
    def cer(self) -> float:
        """Character error rate (spaces count as characters, as in jiwer); NaN without reference text."""
        return self.char_errors / self.chars if self.chars else math.nan

    @property
    def wer(self) -> float:
        """Word error rate; NaN without reference text."""
        return self.word_errors / self.words if self.words else math.nan


def score_transcript(text: str, recognised: str) -> Transcript:
    """Normalise both texts (:func:`normalize_for_cer`) and count character and word edits (jiwer)."""
    import jiwer

    ref, hyp = normalize_for_cer(text), normalize_for_cer(recognised)
    if not ref:
        return Transcript(ref, hyp, 0, 0, 0, 0)
    if not hyp:  # jiwer refuses empty hypotheses: everything was deleted
        return Transcript(ref, hyp, len(ref), len(ref), len(ref.split()), len(ref.split()))
    chars = jiwer.process_characters(ref, hyp)
    words = jiwer.process_words(ref, hyp)
    return Transcript(
        reference=ref,
        hypothesis=hyp,
        char_errors=chars.substitutions + chars.deletions + chars.insertions,
        chars=chars.substitutions + chars.deletions + chars.hits,
        word_errors=words.substitutions + words.deletions + words.insertions,
        words=words.substitutions + words.deletions + words.hits,
    )
