"""BYOL-A training pieces (Niizumi et al., IJCNN 2021): segments, augmentations, the BYOL learner.

What ``dv pretrain-speaker --objective byol-a`` trains with, following BYOL-A v1's published
training code and ``config.yaml``:

- one 0.95 s segment per utterance (zero-padded at both ends when shorter), files visited in a fresh
  random order every epoch (:class:`UtteranceSegments`);
- log-mel (:class:`~dvcli.models.byola.ByolaLogMel`) normalised with the training set's mean and std
  (BYOL-A's pre-normalisation; :func:`log_mel_statistics`);
- two views, each: mixup with a random earlier input (:func:`mixup`: ``log((1 - a) exp(x) + a exp(z))``,
  ``a ~ U(0, 0.4)``, ``z`` from a memory of the last 2048 inputs), then random resize crop
  (:func:`random_resize_crop`: a crop of 0.6-1.5 x the frequency and time extent from a canvas 1.0 x
  1.5 x the input, resized back bicubically);
- both views standardised together (:func:`normalize_batch`, BYOL-A's post-normalisation);
- BYOL (Grill et al. 2020): projector and predictor MLPs ``d -> 4096 -> 256`` with batch norm
  (:class:`ByolaLearner`), a target network that is an EMA (decay 0.99) of encoder + projector,
  loss ``2 - 2 cos(p_1, z'_2) + 2 - 2 cos(p_2, z'_1)`` (:func:`dvcli.ssl.byol_loss`), Adam 3e-4.

Deviation, stated: BYOL-A's mixup memory lives in each data-loading worker; dv's holds the
pre-normalised inputs of the last steps of the training process, rebuilt from the step-seeded data on
resume, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dvcli.audio import SAMPLE_RATE, load_audio
from dvcli.manifest import Utterance
from dvcli.models.byola import AudioNTT2020, ByolaLogMel
from dvcli.speaker.data import read_window
from dvcli.training.checkpoints import step_generator


class UtteranceSegments(torch.utils.data.Dataset):
    """Item ``step`` = that step's ``(B, segment)`` waveforms, one random segment of each of ``B`` utterances.

    Utterances are taken in a fresh permutation each epoch (epoch ``e``'s from ``step_generator(seed,
    e)``), batches of every process interleaved; segment starts come from ``step_generator(seed, step,
    rank)``. A batch depends only on its step and rank, so workers and resumption cannot change it.
    """

    def __init__(
        self,
        train: Sequence[Utterance],
        *,
        batch_size: int,
        segment_seconds: float,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        steps: int,
    ) -> None:
        if not train:
            raise ValueError("no training utterances")
        self.train = list(train)
        self.batch_size, self.seed, self.rank, self.world, self.steps = batch_size, seed, rank, world_size, steps
        self.segment = int(round(segment_seconds * SAMPLE_RATE))
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return self.steps

    def indices(self, step: int) -> list[int]:
        """The utterances (indices into ``train``) of ``step``'s batch on this rank."""
        n, first = len(self.train), (step * self.world + self.rank) * self.batch_size
        out = []
        for position in range(first, first + self.batch_size):
            epoch = position // n
            if epoch not in self._orders:
                self._orders = {epoch: torch.randperm(n, generator=step_generator(self.seed, epoch)).tolist()}
            out.append(self._orders[epoch][position % n])
        return out

    def __getitem__(self, step: int) -> torch.Tensor:
        gen = step_generator(self.seed ^ 0xB901, step, self.rank)
        rows = [self.train[i] for i in self.indices(step)]
        starts = torch.rand(len(rows), generator=gen).tolist()
        return torch.stack([self.read_segment(u, s) for u, s in zip(rows, starts)])

    def read_segment(self, utt: Utterance, start_fraction: float) -> torch.Tensor:
        """``segment`` samples from ``start_fraction`` of the spare length; shorter clips are zero-padded
        at both ends (half each side), as BYOL-A's dataset does."""
        wav = read_window(utt, start_fraction, self.segment)
        missing = self.segment - wav.shape[0]
        return F.pad(wav, (missing // 2, missing - missing // 2)) if missing > 0 else wav


@torch.no_grad()
def sampled_log_mels(
    log_mel: ByolaLogMel, utterances: Sequence[Utterance], limit: int, seed: int
) -> Iterator[torch.Tensor]:
    """``(1, frames, n_mels)`` log-mel of each of up to ``limit`` utterances (a sample seeded by ``seed``,
    the same for the same arguments), whole, on ``log_mel``'s device."""
    picks = torch.randperm(len(utterances), generator=torch.Generator().manual_seed(seed))[:limit].tolist()
    for i in picks:
        feats, _ = log_mel(load_audio(utterances[i].audio).unsqueeze(0).to(log_mel.kernel.device))
        yield feats


@torch.no_grad()
def log_mel_statistics(
    log_mel: ByolaLogMel, utterances: Sequence[Utterance], limit: int, seed: int
) -> tuple[float, float]:
    """Mean and standard deviation of every log-mel value of up to ``limit`` utterances (a seeded
    sample): BYOL-A's normalisation statistics (its ``calculate_norm_stats``)."""
    total, total_sq, count = 0.0, 0.0, 0
    for feats in sampled_log_mels(log_mel, utterances, limit, seed):
        values = feats.double()
        total, total_sq, count = (
            total + float(values.sum()),
            total_sq + float((values**2).sum()),
            count + values.numel(),
        )
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 0.0))


def mixup(x: torch.Tensor, memory: torch.Tensor | None, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """BYOL-A's mixup in the log domain: ``log((1 - a) exp(x) + a exp(z) + eps)`` per row.

    Args:
        x: ``(B, F, T)`` normalised log-mel. memory: ``(N, F, T)`` earlier inputs (None or empty: ``x`` is returned).
        ratio: the largest mixing weight (``a ~ U(0, ratio)``). gen: where ``a`` and ``z`` are drawn
            (on ``x``'s device).
    """
    if memory is None or memory.shape[0] == 0:
        return x
    alpha = ratio * torch.rand(x.shape[0], 1, 1, generator=gen, device=gen.device).to(x.device)
    z = memory[torch.randint(memory.shape[0], (x.shape[0],), generator=gen, device=gen.device).to(memory.device)]
    mixed = (1 - alpha) * x.exp() + alpha * z.exp()
    return torch.log(mixed + torch.finfo(mixed.dtype).eps)


def random_resize_crop(
    x: torch.Tensor,
    gen: torch.Generator,
    *,
    virtual_crop: tuple[float, float] = (1.0, 1.5),
    freq_scale: tuple[float, float] = (0.6, 1.5),
    time_scale: tuple[float, float] = (0.6, 1.5),
) -> torch.Tensor:
    """BYOL-A's random resize crop of every row of ``(B, F, T)``; returns ``(B, F, T)``.

    The input sits in the centre of a zero canvas ``virtual_crop`` times its size; a crop of
    ``U(freq_scale) * F`` by ``U(time_scale) * T`` bins (at most the canvas) at a uniform position is
    resized back to ``(F, T)`` with bicubic interpolation (``align_corners=True``).
    """
    b, f, t = x.shape
    canvas_h, canvas_w = int(f * virtual_crop[0]), int(t * virtual_crop[1])
    canvas = x.new_zeros(b, canvas_h, canvas_w)
    top, left = (canvas_h - f) // 2, (canvas_w - t) // 2
    canvas[:, top : top + f, left : left + t] = x
    draws = torch.rand(b, 4, generator=gen, device=gen.device).cpu().tolist()
    out = []
    for row, (u_h, u_w, u_i, u_j) in enumerate(draws):
        h = min(max(int((freq_scale[0] + u_h * (freq_scale[1] - freq_scale[0])) * f), 1), canvas_h)
        w = min(max(int((time_scale[0] + u_w * (time_scale[1] - time_scale[0])) * t), 1), canvas_w)
        i = min(int(u_i * (canvas_h - h + 1)), canvas_h - h)
        j = min(int(u_j * (canvas_w - w + 1)), canvas_w - w)
        crop = canvas[row, i : i + h, j : j + w][None, None]
        out.append(F.interpolate(crop, size=(f, t), mode="bicubic", align_corners=True)[0, 0])
    return torch.stack(out)


def normalize_batch(x: torch.Tensor) -> torch.Tensor:
    """BYOL-A's post-normalisation: ``(x - mean) / std`` over every value of the batch (std clamped at eps)."""
    std = x.std().clamp_min(torch.finfo(x.dtype).eps)
    return (x - x.mean()) / std


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector / predictor: ``Linear -> BatchNorm -> ReLU -> Linear``."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
    )


class ByolaLearner(nn.Module):
    """The online network: :class:`AudioNTT2020` body, projector, predictor.

    ``forward((2B, 1, F, T) views) -> (2B, projection_size)`` predictions; :meth:`target_branch` is
    what the EMA target copies (body + projector).
    """

    def __init__(self, body: AudioNTT2020, feature_d: int, hidden: int = 4096, projection_size: int = 256) -> None:
        super().__init__()
        self.body = body
        self.projector = mlp(feature_d, hidden, projection_size)
        self.predictor = mlp(projection_size, hidden, projection_size)

    def target_branch(self) -> nn.Sequential:
        """Body + projector (sharing this learner's parameters): ``(N, 1, F, T) -> (N, projection_size)``."""
        return nn.Sequential(self.body, self.projector)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(self.body(views)))
