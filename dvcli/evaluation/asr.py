"""Offline speech recognition for intelligibility (CER/WER) of synthesized speech.

Two recognisers, both loaded from local files only:

- ``pocketsphinx`` (default): CMU PocketSphinx 5 with the US-English acoustic model, dictionary and
  trigram language model that its wheel ships. Weak on unusual voices, but it needs no download,
  so every installation measures the same thing.
- a Whisper checkpoint folder (``--asr path/to/whisper-small``, Hugging Face layout) through
  ``transformers``: much stronger; use it for numbers you publish.

Both sides of the comparison go through :func:`dvcli.text.normalize_text`, the normaliser that
text-to-unit also uses, and the edit distances come from ``jiwer``.
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
from dvcli.text import normalize_text

log = logging.getLogger(__name__)

POCKETSPHINX = "pocketsphinx"


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


@functools.lru_cache(maxsize=4)
def load_asr(spec: str, device: str = "cpu") -> Transcriber:
    """``pocketsphinx`` or a local Whisper folder; loaded once per process.

    Raises:
        UserError: the package is missing, or the folder is not a Whisper checkpoint.
    """
    if spec == POCKETSPHINX:
        return PocketSphinx()
    folder = Path(spec)
    if not folder.is_dir():
        raise UserError(f"--asr {spec}: neither 'pocketsphinx' nor a local Whisper checkpoint folder")
    return Whisper(folder, torch.device(device))


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
    """Normalise both texts and count character and word edits (jiwer's Levenshtein alignment)."""
    import jiwer

    ref, hyp = normalize_text(text), normalize_text(recognised)
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
