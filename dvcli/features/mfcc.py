"""Weight-free MFCC + delta + delta-delta features at HuBERT's 50 Hz frame rate.

HuBERT's first training iteration clusters MFCCs (fairseq's ``dump_mfcc_feature.py``: Kaldi MFCCs,
13 coefficients, no energy, plus first and second deltas = 39 dims). fairseq computes them at 100 Hz;
here the window is 400 samples (25 ms) and the hop 320 (20 ms) without edge padding, so a file of
``T`` samples gives ``floor((T - 400) / 320) + 1`` frames, exactly HuBERT's count, and units from
either feature type line up with the audio the same way.
"""

from __future__ import annotations

from typing import Any

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from dvcli.audio import SAMPLE_RATE
from dvcli.features import HOP, WINDOW, num_frames


class MfccFeatures:
    """Kaldi-compatible MFCCs with deltas, ``(B, F, 39)`` at 50 Hz from 16 kHz audio."""

    kind = "mfcc"

    def __init__(self, num_ceps: int = 13, sample_rate: int = SAMPLE_RATE) -> None:
        self.num_ceps = num_ceps
        self.sample_rate = sample_rate
        self.dim = 3 * num_ceps
        self.frame_rate = sample_rate / HOP

    def describe(self) -> dict[str, Any]:
        """Fields for ``meta.json``."""
        return {
            "kind": self.kind,
            "checkpoint": None,
            "layer": None,
            "dim": self.dim,
            "frame_rate": self.frame_rate,
            "window": WINDOW,
            "hop": HOP,
        }

    def preprocess(self, wav: torch.Tensor) -> torch.Tensor:
        """No waveform normalisation (as fairseq's MFCC dump)."""
        return wav

    @torch.inference_mode()
    def __call__(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MFCCs of a zero-padded batch.

        Args:
            wavs: ``(B, T)`` float waveforms at 16 kHz; lengths: ``(B,)`` samples per item.

        Returns:
            ``(B, F, 39)`` features (zeros past each item's end) and ``(B,)`` frames per item.
        """
        wavs, lengths = wavs.cpu().float(), lengths.cpu()
        frames = num_frames(lengths)
        out = torch.zeros(wavs.shape[0], int(frames.max()) if len(frames) else 0, self.dim)
        for i in range(wavs.shape[0]):
            n = int(frames[i])
            if n == 0:
                continue
            mfcc = kaldi.mfcc(
                wavs[i : i + 1, : int(lengths[i])],
                sample_frequency=self.sample_rate,
                frame_length=1000.0 * WINDOW / self.sample_rate,  # 25 ms
                frame_shift=1000.0 * HOP / self.sample_rate,  # 20 ms
                num_ceps=self.num_ceps,
                use_energy=False,
                dither=0.0,  # deterministic
                snip_edges=True,  # no padding: HuBERT's frame count
            ).T  # (13, F)
            deltas = AF.compute_deltas(mfcc)
            out[i, :n] = torch.cat([mfcc, deltas, AF.compute_deltas(deltas)]).T  # (F, 39)
        return out, frames
