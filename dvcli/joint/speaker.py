"""The speaker side of joint training: the student encoder, its sidecar head, the two-phase freezing.

:class:`SpeakerStudent` is one ``nn.Module`` so that DistributedDataParallel sees every trained
speaker parameter in a single forward call per step: it embeds the reference (which conditions
VITS) and the two augmented views (which feed the DINO, AAM or other self-supervised sidecar).

Phases (:func:`apply_phase`): in phase 1 only the encoder's final dense layer
(:meth:`CAMPPlus.last_layer_parameters`) and the sidecar head learn; in phase 2 the whole encoder
does; ``frozen`` keeps the encoder fixed throughout (the YourTTS-style baseline). Batch norm runs
in training mode in both phases (a frozen layer keeps its weights, its statistics follow the
data); the frozen baseline runs in eval mode.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dvcli.dino import DinoHead
from dvcli.models.aam import AAMSoftmax
from dvcli.speaker.encoder import SpeakerFrontend
from dvcli.ssl import SSL_LOSSES, SslHead

Phase = Literal["last-layer", "full", "frozen"]


class DinoBranch(nn.Module):
    """Encoder + head: waveforms ``(B, T)`` -> head outputs. The EMA teacher / target is a copy of one.

    The head is the DINO head (DINO's teacher), or the projector of a MoCo or BYOL sidecar (their
    momentum encoder / target network).
    """

    def __init__(self, frontend: SpeakerFrontend, head: nn.Module) -> None:
        super().__init__()
        self.frontend, self.head = frontend, head

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        return self.head(self.frontend(wavs))


class SpeakerStudent(nn.Module):
    """The trained speaker encoder with its sidecar.

    Args:
        frontend: fbank + CAM++.
        sidecar: ``"dino"`` (a :class:`DinoHead` is given), ``"aam"`` (an :class:`AAMSoftmax`), one of
            :data:`dvcli.ssl.SSL_LOSSES` (an :class:`SslHead`), or ``"none"``.
        head: the DINO head, AAM classifier or SSL head (None for ``"none"``).
    """

    def __init__(self, frontend: SpeakerFrontend, sidecar: str, head: nn.Module | None = None) -> None:
        super().__init__()
        if (
            (sidecar == "dino") != isinstance(head, DinoHead)
            or (sidecar == "aam") != isinstance(head, AAMSoftmax)
            or (sidecar in SSL_LOSSES) != isinstance(head, SslHead)
        ):
            raise ValueError(f"sidecar {sidecar!r} does not fit a {type(head).__name__} head")
        self.sidecar = sidecar
        self.frontend = frontend
        self.head = head

    def dino_branch(self) -> DinoBranch:
        """The student's encoder + head as one module, what the EMA copy follows: DINO's whole head,
        the projector of MoCo and BYOL (their targets have no predictor)."""
        if isinstance(self.head, SslHead):
            return DinoBranch(self.frontend, self.head.projector)
        assert isinstance(self.head, DinoHead)
        return DinoBranch(self.frontend, self.head)

    @property
    def encoder(self) -> nn.Module:
        return self.frontend.encoder

    def forward(
        self,
        reference: torch.Tensor,
        views: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        margin: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Embed the reference and run the sidecar on the views.

        Args:
            reference: ``(B, T_ref)`` 16 kHz waveforms of equal length.
            views: ``(2B, T_crop)`` the two augmented crops of every example (crop 1 rows, then crop 2).
            labels: ``(2B,)`` speaker indices (``aam`` only). margin: the AAM margin now.

        Returns:
            ``(B, D)`` reference embeddings (they condition VITS), ``(2B, D)`` view embeddings (or
            None), and the sidecar output: DINO logits ``(2B, K)``, SSL head outputs ``(2B, out_dim)``,
            or the AAM loss (or None).
        """
        emb = self.frontend(reference)
        if views is None or self.sidecar == "none":
            return emb, None, None
        view_emb = self.frontend(views)
        if self.sidecar != "aam":
            return emb, view_emb, self.head(view_emb)
        loss, _ = self.head(view_emb, labels, margin)
        return emb, view_emb, loss


def phase_at(step: int, phase1_steps: int, frozen: bool) -> Phase:
    """Which encoder parameters train at ``step`` (0-based)."""
    if frozen:
        return "frozen"
    return "last-layer" if step < phase1_steps else "full"


def apply_phase(student: SpeakerStudent, phase: Phase) -> list[str]:
    """Set ``requires_grad`` of the encoder's parameters for ``phase``; return the names that train.

    The sidecar head always trains (unless frozen, when there is none to train).
    """
    encoder = student.encoder
    last = {id(p) for p in encoder.last_layer_parameters()}
    trained = []
    for name, p in encoder.named_parameters():
        flag = phase == "full" or (phase == "last-layer" and id(p) in last)
        p.requires_grad_(flag)
        if flag:
            trained.append(name)
    return trained


def set_modes(student: SpeakerStudent, phase: Phase) -> None:
    """Training mode everywhere, except the frozen baseline's encoder (eval: fixed statistics)."""
    student.train()
    if phase == "frozen":
        student.frontend.eval()
