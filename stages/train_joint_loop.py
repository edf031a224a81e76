"""The training loop of ``dv train-joint`` (one process per GPU / CPU worker); see :mod:`stages.train_joint`.

Exact resume: every random draw of step ``k`` comes from :func:`step_generator` (VITS noise and
slices from one stream, crops and augmentation from another), the batch order from
``(seed, epoch)``, and the global RNG (dropout) comes back with the checkpoint. The data loader has
its own generator so creating it does not consume the global RNG.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch

from dvcli.audio import SAMPLE_RATE, resample
from dvcli.augment.augmenter import Augmenter
from dvcli.dino import DinoHead, DinoLoss, ema_update, embedding_std, make_teacher, teacher_momentum
from dvcli.errors import UserError
from dvcli.joint.data import JointDataset, collate, random_crops
from dvcli.joint.model import TRAIN_KIND
from dvcli.joint.speaker import SpeakerStudent, apply_phase, phase_at, set_modes
from dvcli.logs import progress
from dvcli.models.aam import AAMSoftmax
from dvcli.models.vits import TrainStepConfig, VitsConfig, VitsTrainer
from dvcli.models.vits.train_step import build
from dvcli.runtime import resolve_precision
from dvcli.speaker.encoder import SpeakerEncoder, SpeakerFrontend, build_speaker_encoder
from dvcli.ssl import EMA_TARGET, SSL_LOSSES, SslHead
from dvcli.training.checkpoints import CheckpointManager, step_generator
from dvcli.training.distributed import DistInfo, DistributedBucketSampler, barrier, wrap_ddp
from dvcli.training.history import HistoryRow, window_mean
from dvcli.training.schedule import grad_norm
from dvcli.training.work import summary_writer
from stages.train_joint_config import Plan, TrainJointConfig

log = logging.getLogger(__name__)

SPEAKER_RATE = SAMPLE_RATE  # CAM++ reads 16 kHz
#: Offset that keeps the crop/augmentation draws of a step independent of the VITS draws.
_VIEW_STREAM = 0xD1A0


@dataclasses.dataclass
class _Run:
    """Everything one process trains with, built by :func:`_setup`."""

    info: DistInfo
    config: TrainJointConfig
    plan: Plan
    generator: torch.nn.Module  # the bare VITS generator (the trainer holds its DDP wrapper)
    encoder: SpeakerEncoder
    student: SpeakerStudent  # encoder + sidecar head
    teacher: torch.nn.Module | None  # DINO's EMA teacher
    dino_loss: DinoLoss | None
    sidecar: str  # dino | aam | none
    trainer: VitsTrainer
    manager: CheckpointManager
    sampler: DistributedBucketSampler
    loader: torch.utils.data.DataLoader
    augmenter: Augmenter
    writer: Any  # TensorBoard SummaryWriter on rank 0, else None
    sample_rate: int  # VITS output rate

    @property
    def per_epoch(self) -> int:
        return len(self.sampler)


def _setup(info: DistInfo, config: TrainJointConfig, plan: Plan, work: Path) -> _Run:
    """Models, optimisers, data and logging of one process (the same initial weights on every one)."""
    device = info.device
    torch.manual_seed(config.seed)
    vits_config = VitsConfig(**plan.vits)
    generator, discriminator = build(vits_config, device)
    encoder = build_speaker_encoder(plan.speaker_init["model_config"])
    if plan.speaker_init["model"]:
        encoder.load_state_dict(plan.speaker_init["model"])
    sidecar = "none" if config.freeze_speaker else config.speaker_loss
    head: torch.nn.Module | None = None
    if sidecar == "dino":
        head = DinoHead.from_config(encoder.embedding_size, config.dino)
    elif sidecar == "aam":
        head = AAMSoftmax(encoder.embedding_size, len(plan.speakers), scale=config.aam_scale, margin=config.aam_margin)
    elif sidecar in SSL_LOSSES:
        head = SslHead(sidecar, encoder.embedding_size, config.ssl)
    student = SpeakerStudent(SpeakerFrontend(encoder), sidecar, head).to(device)
    with_teacher = sidecar == "dino" or sidecar in EMA_TARGET
    teacher = make_teacher(student.dino_branch()).to(device) if with_teacher else None
    dino_loss = DinoLoss(config.dino.out_dim, config.dino).to(device) if sidecar == "dino" else None

    step_config = TrainStepConfig(
        learning_rate=config.learning_rate,
        betas=config.betas,
        lr_decay=config.lr_decay,
        c_mel=config.c_mel,
        c_kl=config.c_kl,
        grad_clip=config.grad_clip,
        precision=resolve_precision(config.precision, device),
    )
    # Every encoder parameter is in the optimiser from the start; phase 1 leaves most without
    # gradients (requires_grad off), which AdamW skips, so phase 2 needs no new optimiser.
    extra = (
        []
        if config.freeze_speaker
        else [{"params": list(student.parameters()), "lr": config.speaker_lr or config.learning_rate}]
    )
    trainer = VitsTrainer(wrap_ddp(generator, info), wrap_ddp(discriminator, info), step_config, extra_parameters=extra)

    dataset = JointDataset(plan.examples, vits_config.sample_rate)
    sampler = DistributedBucketSampler(
        dataset.lengths(),
        config.batch_size,
        num_replicas=info.world_size,
        rank=info.rank,
        seed=config.seed,
        drop_last=True,
    )
    if len(sampler) == 0:
        raise UserError(f"batch_size {config.batch_size} x {info.world_size} processes is more than the data holds")
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),
        persistent_workers=False,
    )
    return _Run(
        info=info,
        config=config,
        plan=plan,
        generator=generator,
        encoder=encoder,
        student=student,
        teacher=teacher,
        dino_loss=dino_loss,
        sidecar=sidecar,
        trainer=trainer,
        manager=CheckpointManager(work / "checkpoints", kind=TRAIN_KIND, keep_last=config.keep_checkpoints),
        sampler=sampler,
        loader=loader,
        augmenter=Augmenter(config.augment, speech=[e.audio for e in plan.examples[:500]]),
        writer=summary_writer(work) if info.is_main else None,
        sample_rate=vits_config.sample_rate,
    )


def _restore(run: _Run, resume_from: Path) -> tuple[int, list[dict[str, float]]]:
    """Load a training checkpoint into ``run`` (and the global RNG states); the step and history."""
    state = run.manager.load(resume_from)
    run.trainer.load_state_dict(state["trainer"])
    run.student.load_state_dict(state["student"])
    if run.teacher is not None:
        run.teacher.load_state_dict(state["teacher"])
    if run.dino_loss is not None:
        run.dino_loss.load_state_dict(state["dino_loss"])
    return int(state["step"]), [dict(row) for row in state["history"]]


def _save(run: _Run, step: int, history: list[dict[str, float]]) -> None:
    """Rank 0 writes the checkpoint of ``step``; every process waits for it."""
    if run.info.is_main:
        run.manager.save(
            step,
            {
                "trainer": run.trainer.state_dict(),
                "student": run.student.state_dict(),
                "teacher": run.teacher.state_dict() if run.teacher is not None else {},
                "dino_loss": run.dino_loss.state_dict() if run.dino_loss is not None else {},
                "vits_config": run.plan.vits,
                "speaker_config": run.plan.speaker_init["model_config"],
                "speakers": run.plan.speakers,
                "history": history,
            },
        )
    barrier()


def _step(
    run: _Run, student_module: torch.nn.Module, batch: Any, speakers: torch.Tensor, step: int
) -> tuple[dict[str, float], torch.Tensor]:
    """One optimisation step: reference and sidecar views, the sidecar loss, the VITS step, the EMA.

    Returns the step's statistics and the conditioning embedding ``(B, D)``.
    """
    config, device = run.config, run.info.device
    views_gen = step_generator(config.seed ^ _VIEW_STREAM, step, run.info.rank, device=device)
    wav16, len16 = batch.wav, batch.wav_lengths
    if run.sample_rate != SPEAKER_RATE:
        wav16 = resample(batch.wav, run.sample_rate, SPEAKER_RATE)
        len16 = (batch.wav_lengths * SPEAKER_RATE) // run.sample_rate
    ref_len = min(int(len16.min()), int(config.ref_seconds * SPEAKER_RATE))
    reference = random_crops(wav16, len16, ref_len, views_gen)
    if config.ref_augment:
        reference = run.augmenter(reference, views_gen)
    views = labels = None
    if run.sidecar != "none":
        crop = int(config.crop_seconds * SPEAKER_RATE)
        views = torch.cat(
            [run.augmenter(random_crops(wav16, len16, crop, views_gen), views_gen) for _ in range(2)]
        )  # (2B, crop): crop 1 rows, then crop 2 rows
        labels = speakers.repeat(2)
    with run.trainer.autocast():
        embedding, _, side = student_module(reference, views, labels, config.aam_margin)
    row: dict[str, float] = {}
    extra_loss = None
    if run.sidecar == "dino":
        run.teacher.train()  # type: ignore[union-attr]  # batch statistics, as DINO's teachers
        with torch.no_grad(), run.trainer.autocast():
            target = run.teacher(views)  # type: ignore[misc]
        loss_s, dino_stats = run.dino_loss(list(side.chunk(2)), list(target.chunk(2)), step)  # type: ignore[misc]
        row.update(loss_dino=float(loss_s.detach()), **dino_stats)
        extra_loss = config.speaker_loss_weight * loss_s
    elif run.sidecar == "aam":
        row["loss_aam"] = float(side.detach())
        extra_loss = config.speaker_loss_weight * side
    elif run.sidecar in SSL_LOSSES:
        target = None
        if run.teacher is not None:  # moco's momentum encoder, byol's target network
            run.teacher.train()
            with torch.no_grad(), run.trainer.autocast():
                target = run.teacher(views)
        loss_s, ssl_stats = run.student.head.loss(side, target)  # type: ignore[union-attr, operator]
        row.update(ssl_stats)
        extra_loss = config.speaker_loss_weight * loss_s
    stats = run.trainer.step(
        batch,
        embedding.float(),
        extra_loss=extra_loss,
        rng=step_generator(config.seed, step, run.info.rank, device=device),
    )
    if run.teacher is not None and not stats["skipped"]:
        momentum = teacher_momentum(step, config.steps, config.dino.momentum_start, config.dino.momentum_end)
        ema_update(run.teacher, run.student.dino_branch(), momentum)
        row["teacher_momentum"] = momentum
    row.update(stats, grad_norm_speaker=grad_norm(run.student.parameters()), embedding_std=embedding_std(embedding))
    return row, embedding


@dataclasses.dataclass
class LoopResult:
    """What rank 0's loop hands back to :func:`stages.train_joint.run`."""

    history: list[HistoryRow]  # one row every log_every steps
    step: int  # the last step trained
    generator: dict[str, torch.Tensor]  # final VITS generator state dict, on the CPU
    encoder: dict[str, torch.Tensor]  # final student CAM++ state dict, on the CPU


def train(info: DistInfo, config: TrainJointConfig, plan: Plan, resume_from: Path | None, work: Path) -> LoopResult:
    """Train from scratch or ``resume_from``; checkpoints go to ``work/checkpoints``."""
    run = _setup(info, config, plan, work)
    start, history = _restore(run, resume_from) if resume_from is not None else (0, [])
    total, phase, student_module = config.steps, None, run.student
    window: list[dict[str, float]] = []
    step, started, steps_done = start, time.perf_counter(), 0
    with progress() if info.is_main else contextlib.nullcontext() as bar:
        task = bar.add_task("joint training", total=total, completed=start) if bar else None
        while step < total:
            epoch, offset = divmod(step, run.per_epoch)
            run.sampler.set_epoch(epoch, offset)
            for batch, speakers in run.loader:
                now = phase_at(step, config.phase1_steps, config.freeze_speaker)
                if now != phase:
                    phase = now
                    trained = apply_phase(run.student, phase)
                    log.info("step %d: speaker encoder phase %s (%d encoder tensors train)", step, phase, len(trained))
                    # DDP registers the parameters that need gradients when it is built: rebuild it.
                    student_module = wrap_ddp(run.student, info) if phase != "frozen" else run.student
                set_modes(run.student, phase)
                batch, speakers = batch.to(info.device), speakers.to(info.device)
                row, embedding = _step(run, student_module, batch, speakers, step)
                window.append(row)
                step += 1
                steps_done += 1
                if step % run.per_epoch == 0:
                    run.trainer.end_epoch()
                if step % config.log_every == 0 or step == total:
                    history.append(_log_window(window, step, run.writer, info.device))
                    window = []
                if run.writer is not None and (step % config.sample_every == 0 or step == total):
                    _log_samples(run.writer, run.trainer, run.generator, batch, embedding, step)
                if step % config.checkpoint_every == 0 or step == total:
                    _save(run, step, history)
                if bar is not None:
                    rate = steps_done / max(1e-9, time.perf_counter() - started)
                    bar.update(
                        task,
                        advance=1,
                        description=f"joint training ({phase}) mel {row['loss_mel']:.3f} {rate:.2f} steps/s",
                    )
                if step >= total:
                    break
    if run.writer is not None:
        run.writer.close()
    return LoopResult(
        history=history,
        step=step,
        generator={k: v.detach().cpu() for k, v in run.generator.state_dict().items()},
        encoder={k: v.detach().cpu() for k, v in run.encoder.state_dict().items()},
    )


def _log_window(window: list[dict[str, float]], step: int, writer: Any, device: torch.device) -> HistoryRow:
    """Average the window's stats over its steps and the processes; write them to TensorBoard."""
    row = window_mean(window, step, device)
    if writer is not None:
        for key, value in row.items():
            if key != "step":
                writer.add_scalar(f"{'speaker' if key in _SPEAKER_STATS else 'vits'}/{key}", value, step)
    return row


#: The history keys TensorBoard shows under "speaker" (the rest under "vits").
_SPEAKER_STATS = frozenset(
    (
        "loss_dino",
        "loss_aam",
        "teacher_entropy",
        "teacher_temp",
        "teacher_momentum",
        "embedding_std",
        "grad_norm_speaker",
    )
)


def _image(tensor: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` -> ``(1, H, W)`` in [0, 1], low rows at the bottom (as a spectrogram is read)."""
    x = tensor.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)
    return x.flip(0).unsqueeze(0)


@torch.no_grad()
def _log_samples(
    writer: Any, trainer: VitsTrainer, generator: torch.nn.Module, batch: Any, embedding: torch.Tensor, step: int
) -> None:
    """Mel (real | generated), alignment and audio of the first example; a synthesis from its units."""
    last, rate = trainer.last, generator.config.sample_rate
    if not last:
        return
    writer.add_image("mel/real", _image(last["mel_real"][0]), step)
    writer.add_image("mel/generated", _image(last["mel_fake"][0]), step)
    writer.add_image("alignment", _image(last["attn"][0].transpose(0, 1)), step)  # (tokens, frames)
    writer.add_audio("audio/real_segment", last["wav_real"][0].float().cpu().clamp(-1, 1), step, sample_rate=rate)
    writer.add_audio("audio/generated_segment", last["wav_fake"][0].float().cpu().clamp(-1, 1), step, sample_rate=rate)
    was_training = generator.training
    generator.eval()
    try:
        n = int(batch.unit_lengths[0])
        wav, lengths = generator.infer(
            batch.units[:1, :n],
            batch.unit_lengths[:1],
            embedding[:1].detach().float(),
            max_frames=int(10 * rate / generator.config.hop_length),
            rng=torch.Generator(device=batch.units.device).manual_seed(step),
        )
        writer.add_audio(
            "audio/synthesized", wav[0, : int(lengths[0])].float().cpu().clamp(-1, 1), step, sample_rate=rate
        )
    finally:
        generator.train(was_training)
