"""The training loop of ``dv train-t2u`` (one process per GPU / CPU worker); see :mod:`stages.train_t2u`.

Exact resume: the batch order depends only on ``(seed, epoch)``, and the global RNG (dropout) comes
back with the checkpoint, which is written at every evaluation (``eval_every`` steps).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from pathlib import Path
from typing import Any

import torch

from dvcli.errors import UserError
from dvcli.logs import progress
from dvcli.metrics import error_rate
from dvcli.runtime import autocast
from dvcli.t2u.data import collate
from dvcli.t2u.inference import TextToUnit
from dvcli.t2u.model import (
    PRESETS,
    UnitLoss,
    mbart_config,
    quiet_transformers,
    restrict_output,
    set_generation_defaults,
)
from dvcli.t2u.tokenizer import SPECIALS
from dvcli.t2u.vocab import UnitVocab
from dvcli.training.checkpoints import CheckpointManager, restore_rng
from dvcli.training.distributed import DistInfo, DistributedBucketSampler, barrier, wrap_ddp
from dvcli.training.history import HistoryRow, window_mean, write_history
from dvcli.training.schedule import warmup_cosine
from dvcli.training.work import summary_writer
from stages.train_t2u_config import CHECKPOINT_KIND, HISTORY_FILE, METRICS_FILE, TrainT2UConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Job:
    """Everything a training process needs (picklable: it crosses the process spawn)."""

    config: TrainT2UConfig
    work: Path
    vocab: UnitVocab
    vocab_tokens: int
    train_sources: list[list[int]]
    train_units: list[list[int]]
    valid_sources: list[list[int]]
    valid_units: list[list[int]]
    resume: bool


@dataclasses.dataclass
class LoopResult:
    """What rank 0's loop hands back to :func:`stages.train_t2u.run`."""

    steps: int  # the last step trained
    history: list[HistoryRow]  # step, loss, accuracy, lr, grad_norm every log_every steps
    metrics: list[HistoryRow]  # step, loss, train_uer, valid_uer, seconds at every evaluation
    seconds: float  # training time, carried on across --resume
    parameters: int


@dataclasses.dataclass
class _Run:
    """One process's model, optimiser and bookkeeping, built by :func:`_setup`."""

    info: DistInfo
    job: Job
    model: torch.nn.Module
    trainer: torch.nn.Module  # the loss module, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    manager: CheckpointManager
    sampler: DistributedBucketSampler
    writer: Any  # TensorBoard on rank 0, else None
    step: int
    history: list[HistoryRow]
    metrics: list[HistoryRow]


def train(info: DistInfo, job: Job) -> LoopResult:
    """One training process: trains to ``config.steps``, evaluating and checkpointing every
    ``eval_every`` steps; rank 0 saves the final model into ``work/final``."""
    quiet_transformers()
    run = _setup(info, job)
    config = job.config
    per_epoch = len(run.sampler)
    # The elapsed-time column goes on from the resumed run's last row rather than restarting at 0.
    started = time.perf_counter() - (float(run.metrics[-1]["seconds"] or 0) if run.metrics else 0.0)
    window: list[dict[str, float]] = []
    since_eval: list[float] = []
    run.model.train()
    with progress() if info.is_main else contextlib.nullcontext() as bar:
        task = bar.add_task("training text-to-unit", total=config.steps, completed=run.step) if bar else None
        while run.step < config.steps:
            epoch, skip = divmod(run.step, per_epoch)
            run.sampler.set_epoch(epoch, skip)
            for indices in run.sampler:
                stats = _step(run, indices)
                window.append(stats)
                since_eval.append(stats["loss"])
                if run.step % config.log_every == 0 or run.step == config.steps:
                    run.history.append(window_mean(window, run.step, info.device))
                    window = []
                    if info.is_main:
                        write_history(job.work / HISTORY_FILE, run.history)
                if bar is not None:
                    bar.update(
                        task, completed=run.step, description=f"training text-to-unit (loss {stats['loss']:.3f})"
                    )
                if run.step % config.eval_every == 0 or run.step == config.steps:
                    if info.is_main:
                        _evaluate_and_save(run, since_eval, time.perf_counter() - started)
                    since_eval = []
                    barrier()
                if run.step >= config.steps:
                    break
    seconds = time.perf_counter() - started
    if run.writer is not None:
        run.writer.close()
    if info.is_main:
        # A run resumed at its last step trains nothing more; the metrics come from the checkpoint.
        if not run.metrics or run.metrics[-1]["step"] != run.step:
            run.metrics.append(_evaluate(run.model, job, run.step, since_eval, seconds))
            write_history(job.work / METRICS_FILE, run.metrics)
        run.model.save_pretrained(job.work / "final")
    barrier()
    parameters = sum(p.numel() for p in run.model.parameters())
    return LoopResult(run.step, run.history, run.metrics, seconds, parameters)


def _setup(info: DistInfo, job: Job) -> _Run:
    """Build the model, optimiser and sampler; restore them from the latest checkpoint when resuming."""
    config = job.config
    manager = CheckpointManager(job.work / "checkpoints", kind=CHECKPOINT_KIND, keep_last=config.keep_checkpoints)
    latest = manager.latest() if job.resume else None
    state = manager.load(latest, restore_rng_state=False) if latest is not None else None
    torch.manual_seed(config.seed)
    model = build_model(job, state["model_config"] if state else None).to(info.device)
    trainer = wrap_ddp(UnitLoss(model, job.vocab, config.label_smoothing).to(info.device), info)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=default_lr(config),
        betas=(0.9, 0.98),
        eps=1e-8,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, config.warmup, config.steps, config.min_lr_ratio)
    )
    step, history, metrics = 0, [], []
    if state is not None:
        restore_rng(state["rng"])  # the global RNGs (dropout) as they were at that step
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, metrics = state["step"], list(state["metrics"])
        # Checkpoints written before train-t2u logged rows kept every step's loss instead: no rows.
        history = [dict(row) for row in state["history"] if isinstance(row, dict)]
    lengths = [len(s) + len(u) for s, u in zip(job.train_sources, job.train_units)]
    sampler = DistributedBucketSampler(
        lengths, config.batch_size, num_replicas=info.world_size, rank=info.rank, seed=config.seed
    )
    writer = summary_writer(job.work, purge_step=step if step else None) if info.is_main else None
    return _Run(info, job, model, trainer, optimizer, scheduler, manager, sampler, writer, step, history, metrics)


def _step(run: _Run, indices: list[int]) -> dict[str, float]:
    """One optimisation step on the batch ``indices``; this process's loss, accuracy, lr and gradient norm."""
    job, config, device = run.job, run.job.config, run.info.device
    batch = collate([job.train_sources[i] for i in indices], [job.train_units[i] for i in indices], job.vocab)
    batch = batch.to(device)
    with autocast(config.precision, device):
        loss, correct = run.trainer(**dataclasses.asdict(batch))
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.step += 1
    stats = {
        "loss": float(loss.detach()),
        "accuracy": float(correct) / max(1, int((batch.labels >= 0).sum())),
        "lr": run.scheduler.get_last_lr()[0],
        "grad_norm": float(norm),
    }
    if run.writer is not None:
        for key, value in stats.items():
            run.writer.add_scalar(f"{key}/train" if key in ("loss", "accuracy") else key, value, run.step)
    return stats


def _evaluate_and_save(run: _Run, losses: list[float], seconds: float) -> None:
    """Rank 0: score the unit error rate, write ``metrics.tsv`` and TensorBoard, save a checkpoint."""
    row = _evaluate(run.model, run.job, run.step, losses, seconds)
    run.metrics.append(row)
    write_history(run.job.work / METRICS_FILE, run.metrics)
    if run.writer is not None:
        run.writer.add_scalar("uer/train", row["train_uer"], run.step)
        if row["valid_uer"] is not None:
            run.writer.add_scalar("uer/valid", row["valid_uer"], run.step)
        run.writer.flush()
    run.manager.save(
        run.step,
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "model_config": run.model.config.to_dict(),
            "history": run.history,
            "metrics": run.metrics,
        },
    )


def _evaluate(model: torch.nn.Module, job: Job, step: int, losses: list[float], seconds: float) -> HistoryRow:
    """Unit error rate with beam search on (a sample of) the training and held-out utterances.

    ``losses``: this process's training losses since the previous evaluation (their mean is the
    row's ``loss``).
    """
    config = job.config
    t2u = TextToUnit(model, None, job.vocab)
    rates: dict[str, float | None] = {}
    for name, sources, units in (
        ("train", job.train_sources, job.train_units),
        ("valid", job.valid_sources, job.valid_units),
    ):
        if not sources:
            rates[name] = None
            continue
        picked = sorted(
            random.Random(config.seed).sample(range(len(sources)), min(len(sources), config.eval_sentences))
        )
        # Every speaker reads the same sentences in many corpora: decode each distinct text once.
        distinct = sorted({tuple(sources[i]) for i in picked})
        decoded = dict(zip(distinct, t2u.units_from_tokens([list(d) for d in distinct], beams=config.beams)))
        rates[name] = error_rate([units[i] for i in picked], [decoded[tuple(sources[i])] for i in picked])
    train_uer, valid_uer = rates["train"], rates["valid"]
    row: HistoryRow = {
        "step": step,
        "loss": round(sum(losses) / max(1, len(losses)), 5),
        "train_uer": None if train_uer is None else round(train_uer, 5),
        "valid_uer": None if valid_uer is None else round(valid_uer, 5),
        "seconds": round(seconds, 1),
    }
    log.info(
        "step %d: loss %.3f, unit error rate %.1f%% (training sentences)%s",
        step,
        row["loss"],
        100 * (train_uer or 0.0),
        "" if valid_uer is None else f", {100 * valid_uer:.1f}% (held out)",
    )
    return row


def build_model(job: Job, state_config: dict[str, Any] | None) -> torch.nn.Module:
    """A fresh model (from scratch or ``--init``), or an empty one shaped like a checkpoint's.

    Raises:
        UserError: an ``--init`` folder that does not load as an mBART model.
    """
    from transformers import MBartConfig, MBartForConditionalGeneration

    config, vocab = job.config, job.vocab
    if state_config is not None:
        return MBartForConditionalGeneration(MBartConfig.from_dict(state_config))
    if config.init is None:
        model_config = mbart_config(
            PRESETS[config.model],
            job.vocab_tokens,
            dropout=0.1 if config.dropout is None else config.dropout,
            pad_id=vocab.pad_id,
            eos_id=vocab.eos_id,
            bos_id=SPECIALS["bos"][1],
        )
        model = MBartForConditionalGeneration(model_config)
    else:
        try:
            model = MBartForConditionalGeneration.from_pretrained(config.init)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{config.init}: cannot load it as an mBART model ({first})") from None
        if config.dropout is not None:
            model.config.dropout = model.config.attention_dropout = config.dropout
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = config.dropout
        model.resize_token_embeddings(max(job.vocab_tokens, model.config.vocab_size))
    restrict_output(model, vocab)
    set_generation_defaults(model, vocab, config.beams)
    return model


def default_lr(config: TrainT2UConfig) -> float:
    """The peak learning rate: the setting, else 5e-5 with ``--init``, 1e-3 (tiny) or 5e-4 (base)."""
    if config.learning_rate is not None:
        return config.learning_rate
    return 5e-5 if config.init is not None else {"tiny": 1e-3, "base": 5e-4}[config.model]
