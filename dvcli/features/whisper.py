"""Whisper encoder output as content features: speaker-independent, 50 Hz, no HuBERT weights needed.

Whisper was trained to transcribe many voices into the same text, so its encoder keeps the words
and discards much of the voice, which is what content units need (MFCC units follow the speaker).
Its log-mel front end runs at 100 Hz (25 ms window, 10 ms hop) and the second convolution has
stride 2, so the encoder emits 50 frames per second, HuBERT's rate.

Frame count: a file of ``T`` samples gives ``floor((T - 400) / 320) + 1`` frames, HuBERT's rule
(:func:`dvcli.features.num_frames`), the first frames of the encoder output; encoder frame ``j`` is
centred on sample ``320 j`` (HuBERT's frame ``j`` on ``320 j + 200``: 12.5 ms apart).

The model is a CTranslate2 Whisper folder run by ``ctranslate2`` (int8 on CPU, float16 on CUDA):
by default Whisper base (512-d), which the ``eval`` extra installs (:mod:`dvcli.whisper_base`);
``--checkpoint`` takes any other conversion (e.g. ``faster-whisper-large-v3``: 1280-d, 128 mels).
Whisper reads at most 30 s; ``dv extract-units`` cuts longer files into pieces that fit.

Two windows (``whisper_window``):

- ``trim`` (default): each piece encoded at its own length (the encoder's positional table is cut
  to fit, as whisper.cpp's ``audio_ctx`` does); items of equal length share a batch.
- ``full``: every piece zero-padded to 30 s, as Whisper was trained and as its transcription runs.
  Costs one 30 s encoder pass per piece.

On the toy corpus (``bench/content_units.py``, k=100) ``trim`` was 53x faster and its units at
least as speaker-independent: cross-speaker distance 0.42 vs 0.45, speaker identification from
units 36% vs 52% (MFCC units: 0.85 and 99%).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dvcli.audio import SAMPLE_RATE
from dvcli.errors import UserError
from dvcli.features import HOP, WINDOW, num_frames
from dvcli.whisper_base import ct2_placement

#: Whisper's input: 30 s at 16 kHz, 100 log-mel frames per second.
MAX_SAMPLES = 30 * SAMPLE_RATE
MEL_HOP = 160
#: The longest piece, in 50 Hz frames, whose samples fit Whisper's 30 s (``(frames - 1) * 320 + 400``).
MAX_FRAMES = (MAX_SAMPLES - WINDOW) // HOP + 1

WhisperWindow = Literal["full", "trim"]


class WhisperEncoderFeatures:
    """Whisper encoder output, ``(B, F, dim)`` at 50 Hz from 16 kHz audio (``dim`` 512 for base)."""

    kind = "whisper"
    sample_rate = SAMPLE_RATE
    frame_rate = SAMPLE_RATE / HOP
    max_frames = MAX_FRAMES

    def __init__(
        self,
        folder: str | Path | None = None,
        device: str | torch.device = "cpu",
        window: WhisperWindow = "trim",
        threads: int | None = None,
        compute_type: str | None = None,
    ) -> None:
        """Load a CTranslate2 Whisper folder.

        Args:
            folder: the model folder (``model.bin``); ``None`` = the packaged Whisper base.
            device: ``cpu`` or ``cuda``.
            window: ``trim`` (encode each piece at its own length) or ``full`` (pad it to 30 s).
            threads: CPU threads (default: torch's setting).
            compute_type: CTranslate2's (default ``int8`` on CPU, ``float16`` on CUDA; ``float32`` for
                exact comparisons: int8 rounding makes the output jump with input changes of 1e-6).

        Raises:
            UserError: the folder is not a CTranslate2 Whisper model, or the packages are missing.
        """
        try:
            import ctranslate2
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError:
            from dvcli.whisper_base import INSTALL_HINT

            raise UserError(f"--features whisper needs ctranslate2 and faster-whisper ({INSTALL_HINT})") from None
        if window not in ("full", "trim"):
            raise UserError(f"whisper_window must be 'full' or 'trim', not {window!r}")
        if folder is None:
            from dvcli.whisper_base import whisper_base_folder

            folder, self.checkpoint = whisper_base_folder(), "whisper-base"
        else:
            folder = Path(folder)
            if not (folder / "model.bin").is_file():
                raise UserError(
                    f"{folder}: not a CTranslate2 Whisper folder (no model.bin); convert one with "
                    "ct2-transformers-converter, or leave --checkpoint out for the packaged Whisper base"
                )
            self.checkpoint = str(folder.resolve())
        self.device = torch.device(device)
        where, default_type = ct2_placement(self.device)
        try:
            self.model = ctranslate2.models.Whisper(
                str(folder),
                device=where,
                compute_type=compute_type or default_type,
                intra_threads=threads or torch.get_num_threads(),
            )
        except (RuntimeError, ValueError) as err:
            raise UserError(
                f"{folder}: cannot load this CTranslate2 Whisper model ({str(err).splitlines()[0]})"
            ) from None
        self.window = window
        self.mel = FeatureExtractor(feature_size=self.model.n_mels)
        self.dim = int(self._encode([np.zeros((self.model.n_mels, 2), np.float32)]).shape[-1])

    def describe(self) -> dict[str, Any]:
        """Fields for ``meta.json``."""
        return {
            "kind": self.kind,
            "checkpoint": self.checkpoint,
            "layer": "encoder output",
            "dim": self.dim,
            "frame_rate": self.frame_rate,
            "window": WINDOW,
            "hop": HOP,
            "whisper_window": self.window,
        }

    def to(self, device: str | torch.device) -> WhisperEncoderFeatures:
        """The model stays where it was loaded (CTranslate2 manages its own device)."""
        return self

    def preprocess(self, wav: torch.Tensor) -> torch.Tensor:
        """No waveform normalisation: Whisper's log-mel front end scales itself."""
        return wav

    def _encode(self, mels: list[np.ndarray]) -> np.ndarray:
        """``B`` log-mels ``(n_mels, M)`` of equal ``M`` -> ``(B, ceil(M / 2), dim)`` float32."""
        import ctranslate2

        batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(mels), dtype=np.float32))
        return np.asarray(self.model.encode(batch, to_cpu=True), dtype=np.float32)

    def _log_mel(self, wav: np.ndarray) -> np.ndarray:
        """Whisper's log-mel of one piece: ``(n_mels, 3000)`` for ``full``, else just over its length."""
        if len(wav) > MAX_SAMPLES:
            raise ValueError(f"a piece of {len(wav)} samples is longer than Whisper's 30 s")
        if self.window == "full":
            return self.mel(wav, padding=MAX_SAMPLES - len(wav))[:, : MAX_SAMPLES // MEL_HOP]
        # Two hops of zeros so the encoder emits at least num_frames(T) frames; an even mel length,
        # at most Whisper's 3000.
        mel = self.mel(wav, padding=2 * HOP)
        return mel[:, : min(mel.shape[1] - mel.shape[1] % 2, MAX_SAMPLES // MEL_HOP)]

    @torch.inference_mode()
    def __call__(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder features of a zero-padded batch.

        Args:
            wavs: ``(B, T)`` float waveforms at 16 kHz, each at most 30 s; lengths: ``(B,)`` samples.

        Returns:
            ``(B, F, dim)`` features (zeros past each item's end) and ``(B,)`` frames per item.
        """
        wavs, lengths = wavs.detach().cpu().float().numpy(), lengths.cpu()
        frames = num_frames(lengths)
        out = torch.zeros(len(wavs), int(frames.max()) if len(frames) else 0, self.dim)
        mels = [self._log_mel(wavs[i, : int(lengths[i])]) for i in range(len(wavs))]
        if self.window == "full":
            groups = [list(range(len(wavs)))]
        else:  # equal lengths only: padding would reach the other items through attention
            by_length: dict[int, list[int]] = {}
            for i, mel in enumerate(mels):
                by_length.setdefault(mel.shape[1], []).append(i)
            groups = list(by_length.values())
        for group in groups:
            encoded = self._encode([mels[i] for i in group])  # (b, frames, dim)
            for row, i in enumerate(group):
                n = int(frames[i])
                out[i, :n] = torch.from_numpy(encoded[row, :n])
        return out, frames
