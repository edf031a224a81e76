"""``dv pretrain-speaker --objective byol-a``: a BYOL-A audio encoder, the paper's frozen generic baseline.

:mod:`stages.pretrain_speaker` splits the data, evaluates EER and publishes; this module holds what
differs from the AAM objective: the initial encoder (with the training set's log-mel statistics), the
BYOL training loop (one process per GPU / CPU worker; recipe in :mod:`dvcli.speaker.byola`), and the
PCA projection fitted after training so that the encoder's embeddings have ``embedding_size``
dimensions (``OUT/byola.pt``; ``OUT/byola.pth`` is the body alone in BYOL-A's own layout).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from dvcli.checkpoint import KIND_KEY, load_checkpoint
from dvcli.config import to_dict
from dvcli.dino import ema_update, embedding_std, make_teacher
from dvcli.errors import UserError
from dvcli.logs import progress
from dvcli.manifest import Utterance
from dvcli.models.byola import (
    PRESETS,
    ByolaEncoder,
    ByolaLogMel,
    body_state_from_upstream,
    config_from_body_state,
    pca_projection,
)
from dvcli.runtime import autocast
from dvcli.speaker.byola import (
    ByolaLearner,
    UtteranceSegments,
    log_mel_statistics,
    mixup,
    normalize_batch,
    random_resize_crop,
    sampled_log_mels,
)
from dvcli.speaker.encoder import BYOLA_KIND, TRAIN_KIND, load_speaker_encoder
from dvcli.ssl import byol_loss
from dvcli.training.checkpoints import CheckpointManager, step_generator
from dvcli.training.distributed import DistInfo, barrier, wrap_ddp
from dvcli.training.history import HistoryRow, window_mean
from dvcli.training.work import summary_writer
from stages.pretrain_speaker_config import PretrainSpeakerConfig, Split

log = logging.getLogger(__name__)

OBJECTIVE = "byol-a"
#: ``--model`` presets of this objective.
MODELS = PRESETS


def check_settings(config: PretrainSpeakerConfig) -> None:
    """The BYOL-A settings a run cannot start with.

    Raises:
        UserError: naming the setting.
    """
    b = config.byola
    if config.model not in (None, *MODELS):
        raise UserError(f"model {config.model}: --objective byol-a trains {' or '.join(MODELS)}")
    if not 0 <= b.mixup_ratio <= 1 or not 0 < b.ema_decay < 1 or not b.learning_rate > 0:
        raise UserError("byola: need 0 <= mixup_ratio <= 1, 0 < ema_decay < 1 and learning_rate > 0")
    if b.hidden_dim < 1 or b.projection_size < 1:
        raise UserError("byola: need hidden_dim >= 1 and projection_size >= 1")
    if b.segment_seconds < 0.1 or b.mixup_memory < 0 or b.norm_utterances < 1 or b.pca_utterances < 2:
        raise UserError(
            "byola: need segment_seconds >= 0.1, mixup_memory >= 0, norm_utterances >= 1, pca_utterances >= 2"
        )
    if config.batch_size < 2:
        raise UserError("batch_size: BYOL's batch norm needs at least 2 segments per step")
    low, high = b.virtual_crop
    if not (low >= 1 and high >= 1):
        raise UserError(f"byola.virtual_crop {[low, high]}: the canvas is at least the input (both >= 1)")
    for name in ("freq_scale", "time_scale"):
        low, high = getattr(b, name)
        if not 0 < low <= high or high < 1:
            raise UserError(f"byola.{name} {[low, high]}: need 0 < low <= high, with the high end >= 1")


def initial_encoder(config: PretrainSpeakerConfig, train: list[Utterance]) -> ByolaEncoder:
    """The encoder training starts from: ``--init`` (a dv BYOL-A file or BYOL-A's own ``.pth``) or the
    ``--model`` preset, with the log-mel statistics of the training utterances.

    Raises:
        UserError: an ``--init`` file that holds no BYOL-A encoder.
    """
    try:
        if config.init is not None:
            encoder = _load_init(Path(config.init), config.embedding_size)
        else:
            torch.manual_seed(config.seed)
            encoder = ByolaEncoder(MODELS[config.model or "byol-a"](embedding_size=config.embedding_size))
    except ValueError as err:  # an embedding larger than the representation it projects
        raise UserError(f"{err}: set a smaller embedding_size") from None
    preset = MODELS[config.model](embedding_size=1) if config.model else None
    if config.init is not None and preset is not None and preset.feature_d != encoder.config.feature_d:
        log.warning(
            "--model %s (d = %d) ignored: --init %s sets the architecture (d = %d)",
            config.model,
            preset.feature_d,
            config.init,
            encoder.config.feature_d,
        )
    mean, std = log_mel_statistics(ByolaLogMel(encoder.config), train, config.byola.norm_utterances, config.seed)
    encoder.norm_mean.fill_(mean)
    encoder.norm_std.fill_(std)
    log.info(
        "BYOL-A log-mel statistics of %d utterances: mean %.3f, std %.3f",
        min(len(train), config.byola.norm_utterances),
        mean,
        std,
    )
    return encoder.eval()


def _load_init(path: Path, embedding_size: int) -> ByolaEncoder:
    obj = load_checkpoint(path)
    kind = obj.get(KIND_KEY) if isinstance(obj, dict) else None
    if kind in (BYOLA_KIND, TRAIN_KIND):
        encoder = load_speaker_encoder(obj)
        if isinstance(encoder, ByolaEncoder):
            log.info("initialised from %s", path)
            return encoder
    body = body_state_from_upstream(obj) if isinstance(obj, dict) else None
    if body is None:
        raise UserError(f"{path}: holds no BYOL-A encoder (give a dv byola.pt or BYOL-A's AudioNTT2020-*.pth)")
    encoder = ByolaEncoder(config_from_body_state(body, embedding_size))
    try:
        encoder.body.load_state_dict(body)
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit BYOL-A's AudioNTT2020 ({str(err).splitlines()[0]})") from None
    log.info("initialised the body from BYOL-A weights %s (d = %d)", path, encoder.config.feature_d)
    return encoder


@torch.no_grad()
def fit_projection(
    encoder: ByolaEncoder, train: list[Utterance], config: PretrainSpeakerConfig, device: torch.device
) -> ByolaEncoder:
    """Set the encoder's projection to the PCA of its representations of (up to ``pca_utterances``)
    training utterances; returns ``encoder`` in eval mode."""
    encoder = encoder.to(device).eval()
    log_mel = ByolaLogMel(encoder.config).to(device)
    reps = []
    for feats in sampled_log_mels(log_mel, train, config.byola.pca_utterances, config.seed):
        if feats.shape[1] >= 8:
            reps.append(encoder.representation(feats).float().cpu())
    if len(reps) < 2:
        raise UserError(
            f"{config.manifest}: fewer than two training utterances long enough (80 ms) to fit the projection"
        )
    weight, bias = pca_projection(torch.cat(reps), encoder.embedding_size)
    encoder.projection.weight.copy_(weight)
    encoder.projection.bias.copy_(bias)
    log.info(
        "projection: PCA of %d representations, %d -> %d", len(reps), encoder.config.feature_d, encoder.embedding_size
    )
    return encoder


# -- training (one process per GPU / CPU worker) --------------------------------------------------


@dataclasses.dataclass
class _Byol:
    """What one process trains: the encoder (its body is the learner's), the learner, the EMA target."""

    encoder: ByolaEncoder
    learner: ByolaLearner
    target: torch.nn.Module
    optimizer: torch.optim.Optimizer


def _build(config: PretrainSpeakerConfig, init_state: dict[str, Any], device: torch.device) -> _Byol:
    torch.manual_seed(config.seed)  # the same heads on every process
    encoder = load_speaker_encoder(init_state)
    assert isinstance(encoder, ByolaEncoder)
    encoder = encoder.to(device).train()
    b = config.byola
    learner = ByolaLearner(encoder.body, encoder.config.feature_d, b.hidden_dim, b.projection_size).to(device)
    target = make_teacher(learner.target_branch()).to(device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=b.learning_rate)
    return _Byol(encoder, learner, target, optimizer)


def train(
    info: DistInfo,
    config: PretrainSpeakerConfig,
    split: Split,
    resume_from: Path | None,
    init_state: dict[str, Any] | None,
    work: Path,
) -> list[HistoryRow]:
    """The BYOL-A loop; returns rank 0's history. ``init_state`` is the initial encoder's checkpoint dict
    (:func:`initial_encoder`); checkpoints go to ``work/checkpoints``."""
    device, b = info.device, config.byola
    state = load_checkpoint(resume_from, kind=TRAIN_KIND) if resume_from is not None else None
    if state is not None and state.get("objective", "aam") != OBJECTIVE:
        raise UserError(
            f"{resume_from}: was trained with --objective {state.get('objective', 'aam')}; resume it with that objective"
        )
    if state is not None:  # the heads' sizes are the run's, whatever this command line says
        saved = state["config"]["byola"]
        config = dataclasses.replace(
            config,
            byola=dataclasses.replace(b, hidden_dim=saved["hidden_dim"], projection_size=saved["projection_size"]),
        )
        b = config.byola
    if state is not None and state["speakers"] != split.speakers:
        raise UserError(f"{resume_from}: was trained on other speakers than {config.manifest} lists")
    run = _build(config, state if state is not None else init_state, device)
    manager = CheckpointManager(work / "checkpoints", kind=TRAIN_KIND, keep_last=config.keep_checkpoints)
    start, history = 0, []  # type: tuple[int, list[HistoryRow]]
    if state is not None:
        run.learner.load_state_dict(state["learner"])
        run.target.load_state_dict(state["target"])
        run.optimizer.load_state_dict(state["optimizer"])
        start, history = int(state["step"]), [dict(row) for row in state["history"]]
        manager.load(resume_from)  # restores the global RNG states
    model = wrap_ddp(run.learner, info)
    log_mel = ByolaLogMel(run.encoder.config).to(device)
    segments = UtteranceSegments(
        split.train,
        batch_size=config.batch_size,
        segment_seconds=b.segment_seconds,
        seed=config.seed,
        rank=info.rank,
        world_size=info.world_size,
        steps=config.steps,
    )
    memory = _rebuild_memory(segments, log_mel, run.encoder, start, b.mixup_memory, device)
    loader = torch.utils.data.DataLoader(
        segments,
        batch_size=None,
        sampler=range(start, config.steps),
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # not the global RNG, which dropout draws from
    )
    writer = summary_writer(work) if info.is_main else None
    window: list[dict[str, float]] = []
    with progress() if info.is_main else contextlib.nullcontext() as bar:
        task = bar.add_task("training BYOL-A", total=config.steps, completed=start) if bar else None
        for step, wavs in zip(range(start, config.steps), loader):
            x = _normalised(log_mel, run.encoder, wavs.to(device, non_blocking=True))  # (B, F, T)
            views = _views(x, memory, config, step, info.rank, device)  # (2B, 1, F, T)
            memory.append(x)
            with autocast(config.precision, device):
                predictions = model(views)
                with torch.no_grad():
                    targets = run.target(views)
            p1, p2 = predictions.float().chunk(2)
            z1, z2 = targets.float().chunk(2)
            loss = byol_loss(p1, z2) + byol_loss(p2, z1)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            ema_update(run.target, run.learner.target_branch(), b.ema_decay)
            window.append({"loss": float(loss.detach()), "z_std": embedding_std(z1.detach())})
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                row = window_mean(window, step + 1, device)
                row["lr"] = b.learning_rate
                history.append(row)
                window = []
                if writer is not None:
                    for name in ("loss", "z_std"):
                        writer.add_scalar(f"train/{name}", row[name], step + 1)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                if info.is_main:
                    manager.save(step + 1, _checkpoint(run, split.speakers, config, history))
                barrier()
            if bar is not None:
                bar.update(
                    task,
                    advance=1,
                    description=f"training BYOL-A (loss {float(loss.detach()):.3f})",
                )
    if writer is not None:
        writer.close()
    return history


def _normalised(log_mel: ByolaLogMel, encoder: ByolaEncoder, wavs: torch.Tensor) -> torch.Tensor:
    """``(B, samples)`` -> ``(B, F, T)`` log-mel, pre-normalised with the encoder's statistics."""
    with torch.no_grad():
        feats, _ = log_mel(wavs.float())
    return ((feats - encoder.norm_mean) / encoder.norm_std).transpose(1, 2)


def _views(
    x: torch.Tensor, memory: _Memory, config: PretrainSpeakerConfig, step: int, rank: int, device: torch.device
) -> torch.Tensor:
    """The two augmented, jointly standardised views of ``x``: ``(2B, 1, F, T)``."""
    b = config.byola
    gen = step_generator(config.seed ^ 0xA06, step, rank, device=device)
    bank = memory.tensor()
    views = [
        random_resize_crop(
            mixup(x, bank, b.mixup_ratio, gen),
            gen,
            virtual_crop=b.virtual_crop,
            freq_scale=b.freq_scale,
            time_scale=b.time_scale,
        )
        for _ in range(2)
    ]
    return normalize_batch(torch.cat(views)).unsqueeze(1)


class _Memory:
    """The mixup memory: the pre-normalised inputs of the last steps, at most ``size`` rows."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.batches: collections.deque[torch.Tensor] = collections.deque()

    def append(self, x: torch.Tensor) -> None:
        if self.size == 0:
            return
        self.batches.append(x.detach())
        while sum(t.shape[0] for t in self.batches) - self.batches[0].shape[0] >= self.size:
            self.batches.popleft()

    def tensor(self) -> torch.Tensor | None:
        if not self.batches:
            return None
        return torch.cat(list(self.batches))[-self.size :]


def _rebuild_memory(
    segments: UtteranceSegments,
    log_mel: ByolaLogMel,
    encoder: ByolaEncoder,
    start: int,
    size: int,
    device: torch.device,
) -> _Memory:
    """The memory as it was before ``start``: the inputs of the steps just before it (they depend on their
    step alone), so a resumed run mixes exactly as the uninterrupted one."""
    memory = _Memory(size)
    steps_back = -(-size // segments.batch_size) if size else 0
    for step in range(max(0, start - steps_back), start):
        memory.append(_normalised(log_mel, encoder, segments[step].to(device)))
    return memory


def _checkpoint(
    run: _Byol, speakers: list[str], config: PretrainSpeakerConfig, history: list[HistoryRow]
) -> dict[str, Any]:
    return {
        "objective": OBJECTIVE,
        "model": run.encoder.state_dict(),
        "model_config": dataclasses.asdict(run.encoder.config),
        "learner": run.learner.state_dict(),
        "target": run.target.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "speakers": speakers,
        "config": to_dict(config),
        "history": history,
    }
