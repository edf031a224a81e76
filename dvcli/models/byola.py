"""BYOL-A's audio encoder (Niizumi et al., IJCNN 2021), as a speaker encoder dv can condition VITS on.

BYOL-A is a generic self-supervised audio representation, not a speaker encoder: the paper's Table 1
uses it frozen as the baseline that "a generic SSL encoder is not a substitute for a multi-task-trained
one". dv trains it with ``dv pretrain-speaker --objective byol-a`` (:mod:`stages.pretrain_speaker_byola`)
and conditions VITS on it with ``dv train-joint --freeze-speaker --speaker OUT``.

Layout (BYOL-A v1's ``AudioNTT2020``; submodule names are its checkpoint keys, so the published
``AudioNTT2020-BYOLA-64x96d*.pth`` state dicts load into :attr:`ByolaEncoder.body` with
``strict=True``; at ``feature_d=512`` the body has 600,192 parameters, as that file):

    log-mel  (B, T, 64): 64 ms Hann window, 10 ms hop, 64 mel bands 60-7800 Hz, log(power + eps)
    norm     (x - mean) / std with the training set's scalar statistics (BYOL-A's pre-normalisation)
    features 3 x [3x3 conv (64 channels), BatchNorm, ReLU, 2x2 max-pool]   (B, 64, F/8, T/8)
    fc       per frame: Linear(64 * F/8 -> d), ReLU, Dropout 0.3, Linear(d -> d), ReLU
    pooling  max over time + mean over time                               (B, d)
    projection  Linear(d -> embedding_size): a PCA of the training representations, fitted by
             dv pretrain-speaker (:func:`pca_projection`), so the embedding has the size VITS reads

:class:`ByolaEncoder` offers what dv's stages ask of a speaker encoder (the interface of
:class:`~dvcli.models.campplus.CAMPPlus`): ``forward(feats (B, T, n_mels)) -> (B, embedding_size)``,
``config`` (a dataclass with ``feat_dim``), ``embedding_size`` and ``last_layer_parameters()``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.functional import melscale_fbanks

log = logging.getLogger(__name__)

#: ``arch`` of a BYOL-A encoder's saved ``model_config`` (CAM++ configurations carry none).
ARCH = "byol-a"


@dataclasses.dataclass(kw_only=True)
class ByolaConfig:
    """Sizes of a BYOL-A encoder; the defaults are BYOL-A v1's ``config.yaml`` (d = 2048)."""

    arch: str = ARCH  # marks the saved configuration as BYOL-A's
    sample_rate: int = 16000  # Hz of the input waveforms
    n_fft: int = 1024  # FFT size and window length (64 ms)
    hop_length: int = 160  # frame hop in samples (10 ms)
    n_mels: int = 64  # mel bands
    f_min: float = 60.0  # lowest mel band edge (Hz)
    f_max: float = 7800.0  # highest mel band edge (Hz)
    feature_d: int = 2048  # representation size d (BYOL-A's published weights: 512, 1024, 2048)
    embedding_size: int = 192  # size of the PCA projection VITS reads

    def __post_init__(self) -> None:
        if self.arch != ARCH:
            raise ValueError(f"not a BYOL-A configuration (arch {self.arch!r})")
        if self.n_mels % 8:
            raise ValueError("n_mels must be a multiple of 8 (three 2x2 max-pools)")
        if self.embedding_size > self.feature_d:
            raise ValueError(f"embedding_size {self.embedding_size} exceeds the representation size {self.feature_d}")

    @property
    def feat_dim(self) -> int:
        """Mel bands of the input (the name dv's speaker front-end reads)."""
        return self.n_mels

    @classmethod
    def tiny(cls, embedding_size: int = 192) -> ByolaConfig:
        """A small BYOL-A (d = 256, 272,000 parameters in the body) for CPU demos and tests."""
        return cls(feature_d=256, embedding_size=embedding_size)


#: ``dv pretrain-speaker --objective byol-a --model NAME`` presets: BYOL-A's d = 2048, and a small one.
PRESETS = {"byol-a": ByolaConfig, "byol-a-tiny": ByolaConfig.tiny}


class ByolaLogMel(nn.Module):
    """``(B, T)`` 16 kHz waveforms -> ``(B, frames, n_mels)`` log-mel, ``frames = 1 + T // hop``.

    torchaudio's ``MelSpectrogram`` as BYOL-A's training uses it (centred frames with reflection
    padding, periodic Hann window, power 2, HTK mel bands without normalisation), then
    ``log(x + float32 eps)`` as BYOL-A's dataset does (tested equal). The DFT is a strided
    convolution, so the module exports to ONNX without an FFT operator.
    """

    def __init__(self, config: ByolaConfig) -> None:
        super().__init__()
        n_fft, self.hop = config.n_fft, config.hop_length
        self.bins = n_fft // 2 + 1
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * torch.arange(n_fft, dtype=torch.float64)[:, None] * torch.arange(self.bins) / n_fft
        basis = torch.cat([window[:, None] * torch.cos(angle), window[:, None] * torch.sin(angle)], dim=1)
        self.register_buffer("kernel", basis.T.unsqueeze(1).float().contiguous(), persistent=False)  # (2 bins, 1, N)
        banks = melscale_fbanks(self.bins, config.f_min, config.f_max, config.n_mels, config.sample_rate)
        self.register_buffer("mel_banks", banks.float(), persistent=False)  # (bins, mels)

    def frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frame counts of ``(B,)`` sample counts."""
        return 1 + num_samples // self.hop

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T)`` waveforms, zero-padded past ``lengths`` -> ``(B, M, n_mels)`` log-mel and ``(B,)`` frames.

        Rows of different lengths are analysed one length at a time, so the reflection padding at a
        row's end sees its own samples, never the zero padding (a row's features do not depend on
        its batch mates).
        """
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], device=wavs.device)
        frames = self.frames(lengths)
        out = wavs.new_zeros(wavs.shape[0], int(frames.max()), self.mel_banks.shape[1])
        for size in lengths.unique().tolist():
            rows = (lengths == size).nonzero().squeeze(1)
            feats = self.full_length(wavs[rows, : int(size)])
            out[rows, : feats.shape[1]] = feats
        return out, frames

    def full_length(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` waveforms, every row ``T`` samples long -> ``(B, 1 + T // hop, n_mels)`` (exportable)."""
        pad = self.kernel.shape[-1] // 2
        x = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect")  # (B, 1, T + N)
        spectrum = F.conv1d(x, self.kernel, stride=self.hop)  # (B, 2 bins, M)
        power = spectrum[:, : self.bins].pow(2) + spectrum[:, self.bins :].pow(2)
        mel = torch.matmul(power.transpose(1, 2), self.mel_banks)  # (B, M, mels)
        return (mel + torch.finfo(torch.float32).eps).log()


class AudioNTT2020(nn.Module):
    """BYOL-A v1's encoder body: ``(B, 1, n_mels, T)`` normalised log-mel -> ``(B, d)``."""

    def __init__(self, n_mels: int = 64, d: int = 2048) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for channels_in in (1, 64, 64):
            layers += [nn.Conv2d(channels_in, 64, 3, stride=1, padding=1), nn.BatchNorm2d(64), nn.ReLU()]
            layers.append(nn.MaxPool2d(2, stride=2))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Linear(64 * (n_mels // 8), d), nn.ReLU(), nn.Dropout(p=0.3), nn.Linear(d, d), nn.ReLU()
        )

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, T)`` -> ``(B, T/8, d)`` before the temporal pooling."""
        x = self.features(x)  # (B, 64, F/8, T/8)
        x = x.permute(0, 3, 2, 1)  # (B, T/8, F/8, 64): BYOL-A's flattening order, which its fc weights assume
        return self.fc(x.reshape(x.shape[0], x.shape[1], -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = self.frame_features(x)
        return frames.max(dim=1).values + frames.mean(dim=1)  # (B, d)


class ByolaEncoder(nn.Module):
    """Normalisation, :class:`AudioNTT2020` and the projection to the speaker-embedding size.

    Buffers ``norm_mean`` / ``norm_std`` hold the training set's log-mel statistics (set by
    dv pretrain-speaker; 0 and 1 until then).
    """

    norm_mean: torch.Tensor
    norm_std: torch.Tensor

    def __init__(self, config: ByolaConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("norm_mean", torch.zeros(()))
        self.register_buffer("norm_std", torch.ones(()))
        self.body = AudioNTT2020(config.n_mels, config.feature_d)
        self.projection = nn.Linear(config.feature_d, config.embedding_size)

    @property
    def embedding_size(self) -> int:
        return self.config.embedding_size

    def representation(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_mels)`` log-mel -> ``(B, feature_d)``: what BYOL-A learns (before the projection).

        Raises:
            ValueError: fewer than 8 frames (three 2x2 max-pools need them).
        """
        if feats.shape[1] < 8:
            raise ValueError(f"BYOL-A needs at least 8 frames (80 ms), got {feats.shape[1]}")
        x = (feats - self.norm_mean) / self.norm_std
        return self.body(x.transpose(1, 2).unsqueeze(1))  # (B, 1, F, T)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_mels)`` log-mel (:class:`ByolaLogMel`) -> ``(B, embedding_size)``."""
        return self.projection(self.representation(feats))

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The projection (what a "freeze all but the last layer" schedule trains)."""
        return list(self.projection.parameters())


def pca_projection(representations: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The PCA map of ``(N, d)`` representations to ``size`` dimensions, as Linear weights.

    scikit-learn's ``PCA`` fits it (float64): ``weight`` ``(size, d)`` holds its principal axes by
    falling variance (with its sign convention), ``bias`` ``(size,)`` is ``-weight @ mean``, so
    ``x @ weight.T + bias`` is ``PCA(size).transform(x)``. Where the data span fewer than ``size``
    directions (``N - 1 < size``), the remaining rows are zero (a warning is logged).
    """
    from sklearn.decomposition import PCA

    x = representations.double().numpy()
    pca = PCA(min(size, *x.shape), svd_solver="full").fit(x)
    singular = torch.from_numpy(pca.singular_values_)
    keep = int((singular > singular.max() * 1e-9).sum()) if singular.numel() else 0
    if keep < size:
        log.warning(
            "PCA: the %d representations span %d directions; %d of %d outputs are zero", len(x), keep, size - keep, size
        )
    weight = torch.zeros(size, x.shape[1], dtype=torch.float64)
    weight[:keep] = torch.from_numpy(pca.components_[:keep])
    return weight.float(), (-weight @ torch.from_numpy(pca.mean_)).float()


def body_state_from_upstream(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The body of a plain BYOL-A state dict (``features.*``, ``fc.*``, maybe under a prefix), or None."""
    found = {}
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        for part in ("features.", "fc."):
            at = key.find(part)
            if at == 0 or (at > 0 and key[at - 1] == "."):
                found[key[at:]] = value
                break
    return found if "fc.0.weight" in found and "features.0.weight" in found else None


def config_from_body_state(state: Mapping[str, torch.Tensor], embedding_size: int = 192) -> ByolaConfig:
    """A :class:`ByolaConfig` that fits a body state dict's shapes (``fc.0.weight`` is ``(d, 64 * n_mels / 8)``).

    Raises:
        ValueError: ``embedding_size`` larger than the body's d.
    """
    d, flat = state["fc.0.weight"].shape
    return ByolaConfig(n_mels=flat // 64 * 8, feature_d=d, embedding_size=embedding_size)
