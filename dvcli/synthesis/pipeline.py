"""Zero-shot synthesis with a joint model: reference clip -> speaker vector; units -> waveform.

:class:`Synthesizer` runs :meth:`VitsGenerator.infer <dvcli.models.vits.VitsGenerator.infer>`'s
arithmetic in two halves with the randomness drawn *outside* them::

    units --VitsPrior(units, lengths, speaker, duration noise)--> log d, m_p, logs_p      (per unit)
    expand by d = ceil(exp(log d) * length_scale); z_p = m_p + noise * exp(logs_p) * noise_scale
    z_p --VitsDecoder(z_p, mask, speaker)--> waveform                                         (per frame)

so the same halves can run as PyTorch modules or as ONNX graphs (:mod:`dvcli.synthesis.onnx_backend`) on the
same noise, and the noise is drawn from one seeded generator in the order ``infer`` draws it: with
the PyTorch backend the audio equals ``generator.infer(..., rng=torch.Generator().manual_seed(s))``
(tested). The speaker half is :class:`~dvcli.speaker.encoder.SpeakerFrontend` (fbank + CAM++).

Long input is the caller's job to split (:func:`text_chunks`); :meth:`Synthesizer.synthesize`
decodes many unit sequences for one speaker in length-sorted batches and joins them with pauses.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

from dvcli.joint.model import JointModel
from dvcli.models.vits import VitsConfig, VitsGenerator
from dvcli.models.vits.model import durations_to_path
from dvcli.models.vits.modules import sequence_mask
from dvcli.models.vits.text_encoder import intersperse_blank
from dvcli.speaker.encoder import SpeakerFrontend

log = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class SynthesisControls:
    """Sampling and batching settings of synthesis."""

    noise_scale: float = 0.667  # standard-deviation scale of the prior sample (VITS: 0.667)
    noise_scale_w: float = 0.8  # noise scale of the stochastic duration predictor (VITS: 0.8)
    length_scale: float = 1.0  # > 1 speaks slower
    pause: float = 0.25  # seconds of silence between sentences
    batch_size: int = 8  # sentences decoded together
    max_sentence_seconds: float = 30.0  # a sentence never decodes to more than this


# -- the two halves of VITS inference ---------------------------------------------------------------


class VitsPrior(nn.Module):
    """Units -> per-unit log durations and prior statistics (text encoder + duration predictor).

    Inputs: ``units`` ``(B, N)`` int64 (blanks already interleaved when the model uses them),
    ``unit_lengths`` ``(B,)`` int64, ``speaker`` ``(B, D)``, ``duration_noise`` ``(B, 2, N)`` (standard
    normal times ``noise_scale_w``). Outputs: ``log_durations`` ``(B, 1, N)``, ``m_p`` and ``logs_p``
    ``(B, C, N)``, ``unit_mask`` ``(B, 1, N)``.
    """

    def __init__(self, generator: VitsGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(
        self, units: torch.Tensor, unit_lengths: torch.Tensor, speaker: torch.Tensor, duration_noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        gen = self.generator
        g = gen.speaker_condition(speaker)
        h_text, m_p, logs_p, x_mask = gen.text_encoder(units, unit_lengths)
        logw = gen.duration_predictor.log_durations(h_text, x_mask, g, noise=duration_noise)
        return logw, m_p, logs_p, x_mask


class VitsDecoder(nn.Module):
    """Prior sample -> waveform (inverse flow + HiFi-GAN).

    Inputs: ``z_p`` ``(B, C, T)``, ``frame_mask`` ``(B, 1, T)``, ``speaker`` ``(B, D)``.
    Output: ``wav`` ``(B, T * hop)`` (not yet masked past each length).
    """

    def __init__(self, generator: VitsGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z_p: torch.Tensor, frame_mask: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        gen = self.generator
        g = gen.speaker_condition(speaker)
        z = gen.flow(z_p, frame_mask, g, reverse=True)
        return gen.decoder(z * frame_mask, g)[:, 0]


class Backend(Protocol):
    """Where the three networks run (PyTorch modules or ONNX Runtime sessions)."""

    name: str

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """``(1, T)`` 16 kHz reference -> ``(1, D)`` speaker vector."""

    def prior(
        self, units: torch.Tensor, unit_lengths: torch.Tensor, speaker: torch.Tensor, duration_noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:class:`VitsPrior`."""

    def decode(self, z_p: torch.Tensor, frame_mask: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """:class:`VitsDecoder`."""


class TorchBackend:
    """The joint model's own modules (eval mode, no gradients) on its device."""

    name = "pytorch"

    def __init__(self, joint: JointModel) -> None:
        self.speaker: SpeakerFrontend = joint.speaker.eval()
        self.prior_net = VitsPrior(joint.generator.eval())
        self.decoder_net = VitsDecoder(joint.generator)
        self.device = next(joint.generator.parameters()).device

    @torch.inference_mode()
    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        return self.speaker(wav.to(self.device)).float()

    @torch.inference_mode()
    def prior(self, units, unit_lengths, speaker, duration_noise):  # noqa: ANN001, ANN201 (see Backend)
        return self.prior_net(
            units.to(self.device), unit_lengths.to(self.device), speaker.to(self.device), duration_noise.to(self.device)
        )

    @torch.inference_mode()
    def decode(self, z_p, frame_mask, speaker):  # noqa: ANN001, ANN201 (see Backend)
        return self.decoder_net(z_p.to(self.device), frame_mask.to(self.device), speaker.to(self.device))


# -- synthesis --------------------------------------------------------------------------------------


class Synthesizer:
    """Speaker vectors and waveforms from a joint model through a :class:`Backend`.

    Args:
        joint: the loaded model, or just its :class:`VitsConfig` when a backend is given (an
            ONNX Runtime deployment need not hold the PyTorch weights).
        backend: where the networks run (default: :class:`TorchBackend` of ``joint``).
    """

    def __init__(self, joint: JointModel | VitsConfig, backend: Backend | None = None) -> None:
        if isinstance(joint, VitsConfig):
            if backend is None:
                raise ValueError("a Synthesizer built from a configuration needs a backend")
            self.config = joint
        else:
            self.config = joint.generator.config
        self.backend = backend or TorchBackend(joint)  # type: ignore[arg-type]

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """``(T,)`` 16 kHz reference -> ``(D,)`` speaker vector."""
        return self.backend.embed(wav.float().reshape(1, -1))[0].cpu()

    def infer(
        self,
        sequences: Sequence[Sequence[int]],
        speaker: torch.Tensor,
        controls: SynthesisControls,
        rng: torch.Generator,
    ) -> list[torch.Tensor]:
        """Decode a batch of unit sequences for speakers ``(B, D)`` (or one ``(D,)`` for all).

        The noise is drawn from ``rng`` in the order and shapes ``VitsGenerator.infer`` draws it.

        Returns:
            One ``(T_i,)`` float32 waveform per sequence, on the CPU.
        """
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        units = torch.full((len(sequences), int(lengths.max())), self.config.pad_id, dtype=torch.long)
        for row, seq in enumerate(sequences):
            units[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        if self.config.add_blank:
            units, lengths = intersperse_blank(units, lengths, self.config.blank_id, self.config.pad_id)
        speaker = speaker.float().reshape(-1, speaker.shape[-1]).expand(len(sequences), -1).contiguous()

        shape = (units.shape[0], 2, units.shape[1])
        # Only the stochastic predictor draws noise (as in infer, so the prior noise below matches it).
        duration_noise = (
            torch.randn(shape, generator=rng) * controls.noise_scale_w
            if self.config.stochastic_duration
            else torch.zeros(shape)
        )
        logw, m_p, logs_p, x_mask = (
            t.cpu().float() for t in self.backend.prior(units, lengths, speaker, duration_noise)
        )
        durations = torch.ceil(torch.exp(logw) * x_mask * controls.length_scale)[:, 0]  # (B, N)
        max_frames = max(1, int(controls.max_sentence_seconds * self.sample_rate / self.config.hop_length))
        y_lengths = torch.clamp_min(durations.sum(1), 1).long()
        if bool((y_lengths > max_frames).any()):
            log.warning(
                "a sentence would last over %g s; cut there (lower --length-scale or shorten it)",
                controls.max_sentence_seconds,
            )
        y_lengths = y_lengths.clamp(max=max_frames)
        y_mask = sequence_mask(y_lengths).unsqueeze(1).float()  # (B, 1, T)
        path = durations_to_path(durations, x_mask, y_mask)  # (B, T, N)
        m_p = torch.matmul(path, m_p.transpose(1, 2)).transpose(1, 2)  # (B, C, T)
        logs_p = torch.matmul(path, logs_p.transpose(1, 2)).transpose(1, 2)
        noise = torch.randn(m_p.shape, generator=rng)
        z_p = m_p + noise * torch.exp(logs_p) * controls.noise_scale
        wav = self.backend.decode(z_p, y_mask, speaker).cpu().float()  # (B, T * hop)
        hop = self.config.hop_length
        return [wav[i, : int(n) * hop].clone() for i, n in enumerate(y_lengths)]

    def synthesize(
        self,
        sequences: Sequence[Sequence[int]],
        speaker: torch.Tensor,
        controls: SynthesisControls,
        rng: torch.Generator,
    ) -> torch.Tensor:
        """Speak several unit sequences (one per sentence) in one voice and join them with pauses.

        Sequences are decoded in batches of ``controls.batch_size`` of similar length (less
        padding) and joined in the order given.

        Returns:
            ``(T,)`` float32 waveform.
        """
        if not sequences:
            raise ValueError("nothing to synthesize")
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        pieces: list[torch.Tensor | None] = [None] * len(sequences)
        for start in range(0, len(order), max(1, controls.batch_size)):
            chunk = order[start : start + max(1, controls.batch_size)]
            for i, wav in zip(chunk, self.infer([sequences[i] for i in chunk], speaker, controls, rng)):
                pieces[i] = wav
        return join_with_pauses([p for p in pieces if p is not None], int(controls.pause * self.sample_rate))


def join_with_pauses(pieces: Sequence[torch.Tensor], pause_samples: int) -> torch.Tensor:
    """Concatenate ``(T_i,)`` waveforms with ``pause_samples`` zeros between them."""
    gap = torch.zeros(max(0, pause_samples))
    out: list[torch.Tensor] = []
    for i, piece in enumerate(pieces):
        if i:
            out.append(gap)
        out.append(piece)
    return torch.cat(out) if out else torch.zeros(0)


def text_chunks(text: str, max_words: int = 40) -> list[str]:
    """Split text into sentences (:func:`dvcli.text.split_sentences`), and sentences longer than
    ``max_words`` words into pieces at commas or, failing that, every ``max_words`` words.

    Keeps every text-to-unit input short enough for its position limit and the duration predictor's
    context, whatever the user pastes in.
    """
    from dvcli.text import split_sentences

    chunks: list[str] = []
    for sentence in split_sentences(text):
        if len(sentence.split()) <= max_words:
            chunks.append(sentence)
            continue
        current: list[str] = []
        for clause in re.split(r"(?<=[,;:])\s+", sentence):
            words = clause.split()
            if current and len(current) + len(words) > max_words:
                chunks.append(" ".join(current))
                current = []
            while len(words) > max_words:
                chunks.append(" ".join(words[:max_words]))
                words = words[max_words:]
            current += words
        if current:
            chunks.append(" ".join(current))
    return chunks
