"""Additive noise at a chosen signal-to-noise ratio, for dv's noisy evaluation conditions.

Deliberately minimal (a mixing function and a noise source) on top of :mod:`dvcli.augment`, which
holds training-time augmentation (noise + reverb) and the SNR arithmetic both share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dvcli.audio import find_audio, load_audio
from dvcli.augment import noises


def mix_at_snr(
    clean: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Add ``noise`` to ``clean`` so that 10 log10(P_clean / P_noise) equals ``snr_db``.

    ``noise`` is tiled and cropped at a random offset to the clean clip's length. The mix is scaled
    down as a whole if it would clip, which keeps the SNR.

    Args:
        clean: ``(T,)`` float32.
        noise: ``(M,)`` float32, any length > 0.
        snr_db: the target SNR in dB.
        rng: source of the random offset (default: offset 0).

    Returns:
        ``(T,)`` float32.

    Raises:
        ValueError: silent noise or an empty clip.
    """
    clean = np.asarray(clean, dtype=np.float32)
    noise = np.asarray(noise, dtype=np.float32)
    if len(clean) == 0 or len(noise) == 0:
        raise ValueError("empty clean or noise signal")
    if not np.any(noise):
        raise ValueError("the noise is silent")
    reps = -(-len(clean) // len(noise)) + 1
    start = int(rng.integers(0, len(noise))) if rng is not None else 0
    noise = np.tile(noise, reps)[start : start + len(clean)]
    # The gain is the training augmenter's, so evaluation noise and training noise mean the same SNR.
    mixed = noises.mix_at_snr(
        torch.from_numpy(clean)[None].double(), torch.from_numpy(noise)[None].double(), torch.tensor([float(snr_db)])
    )[0].numpy()
    peak = np.abs(mixed).max()
    if peak > 0.99:
        mixed *= 0.99 / peak
    return mixed.astype(np.float32)


class NoiseSource:
    """Noise clips to mix in: the audio files of a folder, or white Gaussian noise when none is given.

    The one noise definition of dv's evaluations (``dv evaluate refs``, ``dv evaluate speaker``,
    ``dv pretrain-speaker``'s noisy trials): which file, and where in it, come from the caller's
    generator, so a seeded caller gets the same noise whatever else was drawn before.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.files: Sequence[Path] = []
        if folder is not None:
            self.files = find_audio(Path(folder))
        self.name = "noise" if self.files else "white"
        self._cache: dict[Path, np.ndarray] = {}

    def sample(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """A noise signal: ``length`` samples of white noise, or one whole clip of the folder
        (16 kHz float32, any length; :func:`mix_at_snr` tiles and crops it)."""
        if not self.files:
            return rng.standard_normal(length).astype(np.float32)
        path = self.files[int(rng.integers(len(self.files)))]
        if path not in self._cache:
            self._cache[path] = load_audio(path).numpy()
        return self._cache[path]
