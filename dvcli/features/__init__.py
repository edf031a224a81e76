"""Frame-level speech features for content units: HuBERT layers and weight-free MFCCs.

Every extractor turns a padded batch of 16 kHz waveforms into 50 Hz frames with the same frame
count convention, HuBERT's: ``floor((T - 400) / 320) + 1`` frames for ``T`` samples (a 400-sample
receptive field every 320 samples), so units from either feature type line up with the audio the
same way. :class:`FeatureExtractor` is the interface the extraction stage relies on.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

#: Samples per frame at 16 kHz (50 frames per second) and the first frame's receptive field.
HOP = 320
WINDOW = 400


def num_frames(samples: int | torch.Tensor) -> int | torch.Tensor:
    """Frames for ``samples`` samples: ``floor((T - 400) / 320) + 1``, 0 when shorter than 400."""
    if isinstance(samples, torch.Tensor):
        return torch.clamp(torch.div(samples - WINDOW, HOP, rounding_mode="floor") + 1, min=0)
    return max(0, (samples - WINDOW) // HOP + 1)


class FeatureExtractor(Protocol):
    """What ``dv extract-units`` needs from a feature extractor."""

    kind: str  # "hubert" | "mfcc"
    dim: int  # feature dimension
    sample_rate: int  # input rate (16000)
    frame_rate: float  # output frames per second (50)

    def preprocess(self, wav: torch.Tensor) -> torch.Tensor:
        """Per-utterance waveform normalisation, applied to a whole file before any chunking."""
        ...

    def __call__(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T)`` zero-padded waveforms and ``(B,)`` lengths -> ``(B, F, dim)`` features, ``(B,)`` frames."""
        ...

    def describe(self) -> dict[str, Any]:
        """What to record in the output's ``meta.json`` (kind, checkpoint, layer...)."""
        ...
