"""The training loop of ``dv train-joint`` (one process per GPU / CPU worker); see :mod:`stages.train_joint`.

Exact resume: every random draw of step ``k`` comes from :func:`step_generator` (VITS noise and
slices from one stream, crops and augmentation from another), the batch order from
``(seed, epoch)``, and the global RNG (dropout) comes back with the checkpoint. The data loader has
its own generator so creating it does not consume the global RNG.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dvcli.audio import SAMPLE_RATE, resample
from dvcli.augment import Augmenter
from dvcli.dino import DinoHead, DinoLoss, ema_update, embedding_std, make_teacher, teacher_momentum
from dvcli.distributed import DistInfo, DistributedBucketSampler, all_reduce_mean, barrier, wrap_ddp
from dvcli.errors import UserError
from dvcli.joint_data import JointDataset, collate, random_crops
from dvcli.joint_speaker import SpeakerStudent, apply_phase, phase_at, set_modes
from dvcli.logs import progress
from dvcli.models.aam import AAMSoftmax
from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
from dvcli.models.vits import TrainStepConfig, VitsConfig, VitsTrainer
from dvcli.models.vits.train_step import build
from dvcli.speaker import SpeakerFrontend
from dvcli.training import CheckpointManager, grad_norm, step_generator, summary_writer
from stages.train_joint import TRAIN_KIND

if TYPE_CHECKING:
    from stages.train_joint import Plan, TrainJointConfig

log = logging.getLogger(__name__)

SPEAKER_RATE = SAMPLE_RATE  # CAM++ reads 16 kHz
#: Offset that keeps the crop/augmentation draws of a step independent of the VITS draws.
_VIEW_STREAM = 0xD1A0


def train(info: DistInfo, config: TrainJointConfig, plan: Plan, resume_from: Path | None, work: Path) -> dict[str, Any]:
    """Train from scratch or ``resume_from``; checkpoints go to ``work/checkpoints``.

    Returns:
        ``history`` (rows every ``log_every`` steps), ``step`` (the last one), and the final
        ``generator`` and ``encoder`` state dicts (on the CPU).
    """
    threads = torch.get_num_threads()
    if config.threads > 0 and info.device.type == "cpu":
        torch.set_num_threads(config.threads)
    try:
        return _train(info, config, plan, resume_from, work)
    finally:
        torch.set_num_threads(threads)


def _train(
    info: DistInfo, config: TrainJointConfig, plan: Plan, resume_from: Path | None, work: Path
) -> dict[str, Any]:
    device = info.device
    torch.manual_seed(config.seed)  # the same initial weights on every process
    vits_config = VitsConfig(**plan.vits)
    generator, discriminator = build(vits_config, device)
    encoder = CAMPPlus(CAMPPlusConfig(**plan.speaker_init["model_config"]))
    if plan.speaker_init["model"]:
        encoder.load_state_dict(plan.speaker_init["model"])
    sidecar = "none" if config.freeze_speaker else config.speaker_loss
    head: torch.nn.Module | None = None
    if sidecar == "dino":
        head = DinoHead.from_config(encoder.embedding_size, config.dino)
    elif sidecar == "aam":
        head = AAMSoftmax(encoder.embedding_size, len(plan.speakers), scale=config.aam_scale, margin=config.aam_margin)
    student = SpeakerStudent(SpeakerFrontend(encoder), sidecar, head).to(device)
    teacher = make_teacher(student.dino_branch()).to(device) if sidecar == "dino" else None
    dino_loss = DinoLoss(config.dino.out_dim, config.dino).to(device) if sidecar == "dino" else None

    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    step_config = TrainStepConfig(
        learning_rate=config.learning_rate,
        betas=config.betas,
        lr_decay=config.lr_decay,
        c_mel=config.c_mel,
        c_kl=config.c_kl,
        grad_clip=config.grad_clip,
        precision=precision,
    )
    # Every encoder parameter is in the optimiser from the start; phase 1 leaves most without
    # gradients (requires_grad off), which AdamW skips, so phase 2 needs no new optimiser.
    extra = (
        []
        if config.freeze_speaker
        else [{"params": list(student.parameters()), "lr": config.speaker_lr or config.learning_rate}]
    )
    generator_ddp, discriminator_ddp = wrap_ddp(generator, info), wrap_ddp(discriminator, info)
    trainer = VitsTrainer(generator_ddp, discriminator_ddp, step_config, extra_parameters=extra)

    manager = CheckpointManager(work / "checkpoints", kind=TRAIN_KIND, keep_last=config.keep_checkpoints)
    start, history = 0, []
    if resume_from is not None:
        state = manager.load(resume_from)  # also restores the global RNG states
        trainer.load_state_dict(state["trainer"])
        student.load_state_dict(state["student"])
        if teacher is not None:
            teacher.load_state_dict(state["teacher"])
            dino_loss.load_state_dict(state["dino_loss"])
        start, history = int(state["step"]), [dict(row) for row in state["history"]]

    dataset = JointDataset(plan.examples, vits_config.sample_rate)
    sampler = DistributedBucketSampler(
        dataset.lengths(),
        config.batch_size,
        num_replicas=info.world_size,
        rank=info.rank,
        seed=config.seed,
        drop_last=True,
    )
    per_epoch = len(sampler)
    if per_epoch == 0:
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
    augmenter = Augmenter(config.augment, speech=[e.audio for e in plan.examples[:500]])
    writer = summary_writer(work) if info.is_main else None
    total = config.steps
    phase, student_module = None, student
    window: list[dict[str, float]] = []
    step, started, steps_done = start, time.perf_counter(), 0
    crop = int(config.crop_seconds * SPEAKER_RATE)

    with progress() if info.is_main else contextlib.nullcontext() as bar:
        task = bar.add_task("joint training", total=total, completed=start) if bar else None
        while step < total:
            epoch, offset = divmod(step, per_epoch)
            sampler.set_epoch(epoch, offset)
            for batch, speakers in loader:
                now = phase_at(step, config.phase1_steps, config.freeze_speaker)
                if now != phase:
                    phase = now
                    trained = apply_phase(student, phase)
                    log.info("step %d: speaker encoder phase %s (%d encoder tensors train)", step, phase, len(trained))
                    # DDP registers the parameters that need gradients when it is built: rebuild it.
                    student_module = wrap_ddp(student, info) if phase != "frozen" else student
                set_modes(student, phase)
                batch = batch.to(device)
                speakers = speakers.to(device)
                views_gen = step_generator(config.seed ^ _VIEW_STREAM, step, info.rank, device=device)
                wav16, len16 = batch.wav, batch.wav_lengths
                if vits_config.sample_rate != SPEAKER_RATE:
                    wav16 = resample(batch.wav, vits_config.sample_rate, SPEAKER_RATE)
                    len16 = (batch.wav_lengths * SPEAKER_RATE) // vits_config.sample_rate
                ref_len = min(int(len16.min()), int(config.ref_seconds * SPEAKER_RATE))
                reference = random_crops(wav16, len16, ref_len, views_gen)
                if config.ref_augment:
                    reference = augmenter(reference, views_gen)
                views = labels = None
                if sidecar != "none":
                    views = torch.cat(
                        [augmenter(random_crops(wav16, len16, crop, views_gen), views_gen) for _ in range(2)]
                    )  # (2B, crop): crop 1 rows, then crop 2 rows
                    labels = speakers.repeat(2)
                with trainer.autocast():
                    embedding, _, side = student_module(reference, views, labels, config.aam_margin)
                row: dict[str, float] = {}
                extra_loss = None
                if sidecar == "dino":
                    teacher.train()  # batch statistics, as DINO's teachers
                    with torch.no_grad(), trainer.autocast():
                        target = teacher(views)
                    loss_s, dino_stats = dino_loss(list(side.chunk(2)), list(target.chunk(2)), step)
                    row.update(loss_dino=float(loss_s.detach()), **dino_stats)
                    extra_loss = config.speaker_loss_weight * loss_s
                elif sidecar == "aam":
                    row["loss_aam"] = float(side.detach())
                    extra_loss = config.speaker_loss_weight * side
                stats = trainer.step(
                    batch,
                    embedding.float(),
                    extra_loss=extra_loss,
                    rng=step_generator(config.seed, step, info.rank, device=device),
                )
                if teacher is not None and not stats["skipped"]:
                    momentum = teacher_momentum(step, total, config.dino.momentum_start, config.dino.momentum_end)
                    ema_update(teacher, student.dino_branch(), momentum)
                    row["teacher_momentum"] = momentum
                row.update(
                    stats, grad_norm_speaker=grad_norm(student.parameters()), embedding_std=embedding_std(embedding)
                )
                window.append(row)
                step += 1
                steps_done += 1
                if step % per_epoch == 0:
                    trainer.end_epoch()

                if step % config.log_every == 0 or step == total:
                    history.append(_log_window(window, step, writer))
                    window = []
                if writer is not None and (step % config.sample_every == 0 or step == total):
                    _log_samples(writer, trainer, generator, batch, embedding, step)
                if step % config.checkpoint_every == 0 or step == total:
                    if info.is_main:
                        manager.save(
                            step,
                            {
                                "trainer": trainer.state_dict(),
                                "student": student.state_dict(),
                                "teacher": teacher.state_dict() if teacher is not None else {},
                                "dino_loss": dino_loss.state_dict() if dino_loss is not None else {},
                                "vits_config": plan.vits,
                                "speaker_config": plan.speaker_init["model_config"],
                                "speakers": plan.speakers,
                                "history": history,
                            },
                        )
                    barrier()
                if bar is not None:
                    rate = steps_done / max(1e-9, time.perf_counter() - started)
                    bar.update(
                        task,
                        advance=1,
                        description=(f"joint training ({phase}) mel {stats['loss_mel']:.3f} {rate:.2f} steps/s"),
                    )
                if step >= total:
                    break
    if writer is not None:
        writer.close()
    return {
        "history": history,
        "step": step,
        "generator": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
        "encoder": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
    }


def _log_window(window: list[dict[str, float]], step: int, writer: Any) -> dict[str, float]:
    """Average the window's stats over its steps and the processes; write them to TensorBoard."""
    sums: dict[str, list[float]] = defaultdict(list)
    for row in window:
        for key, value in row.items():
            sums[key].append(value)
    keys = sorted(sums)
    means = all_reduce_mean(torch.tensor([sum(sums[k]) / len(sums[k]) for k in keys])).tolist()
    row = {"step": float(step), **dict(zip(keys, means))}
    if writer is not None:
        for key in keys:
            group = (
                "speaker"
                if key
                in (
                    "loss_dino",
                    "loss_aam",
                    "teacher_entropy",
                    "teacher_temp",
                    "teacher_momentum",
                    "embedding_std",
                    "grad_norm_speaker",
                )
                else "vits"
            )
            writer.add_scalar(f"{group}/{key}", row[key], step)
    return row


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
