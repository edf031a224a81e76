"""``dv train-t2u``: train the mBART text-to-unit model on a manifest's text and its units.

Inputs: ``manifest.tsv`` (text) and ``units.tsv`` (or the ``dv cluster`` folder holding it with the
``meta.json`` that gives ``k``). Output: a Hugging Face model folder (see :mod:`dvcli.t2u`) with
``metrics.tsv`` (unit error rate per checkpoint, on training and held-out sentences), TensorBoard
logs and the last training checkpoint (so ``--resume`` can continue it with more ``--steps``).

While training, everything lives in ``OUT.partial/`` (checkpoints, tokenizer, logs); the finished
folder appears at ``OUT`` in one rename, so nothing can mistake a half-trained model for a finished
one. ``--resume`` continues from ``OUT.partial/`` (an interrupted run) or ``OUT/checkpoints``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import torch

from dvcli.atomic import atomic_write_bytes, atomic_write_text, output_lock
from dvcli.config import StageConfig
from dvcli.distributed import DistInfo, DistributedBucketSampler, all_reduce_mean, barrier, launch, wrap_ddp
from dvcli.errors import UserError
from dvcli.logs import progress
from dvcli.manifest import read_manifest
from dvcli.metrics import error_rate
from dvcli.outputs import add_meta, stage_output
from dvcli.runtime import autocast
from dvcli.t2u import (
    PRESETS,
    UNIT_VOCAB_FILE,
    TextToUnit,
    UnitLoss,
    UnitVocab,
    mbart_config,
    quiet_transformers,
    restrict_output,
    set_generation_defaults,
)
from dvcli.t2u_data import (
    Example,
    collate,
    generation_caps,
    pair_examples,
    split_by_sentence,
    unit_vocabulary_size,
)
from dvcli.t2u_tokenizer import SPECIALS, add_unit_tokens, load_pretrained_tokenizer, train_text_tokenizer
from dvcli.training import (
    CheckpointManager,
    check_output,
    check_unfinished,
    clean_up_unstarted,
    restore_rng,
    resume_point,
    start_work,
    summary_writer,
    warmup_cosine,
    work_folder,
)
from dvcli.units import read_unit_source

log = logging.getLogger(__name__)

CHECKPOINT_KIND = "t2u"
METRICS_FILE = "metrics.tsv"


@dataclasses.dataclass(kw_only=True)
class TrainT2UConfig(StageConfig):
    """Settings of ``dv train-t2u``."""

    RENAMED = {"lr": "learning_rate", "size": "model", "keep_last": "keep_checkpoints"}

    manifest: Path  # manifest.tsv (or its folder); its text column is the source side
    units: Path  # units.tsv, or the dv cluster folder holding it (its meta.json gives k)
    out: Path  # output folder: a Hugging Face model folder plus metrics
    model: Literal["tiny", "base"] = "tiny"  # architecture from scratch (tiny: CPU minutes; base: ~50M)
    init: Path | None = None  # pretrained mBART folder (e.g. mbart-large-cc25): tokenizer + weights; overrides size
    k: int = 0  # unit vocabulary size; 0 = from the units folder's meta.json, else the largest unit + 1
    dedup: bool = True  # collapse runs of repeated units (train-joint reads collapsed units)
    speakers: list[str] = dataclasses.field(default_factory=list)  # only these speakers (empty: all not held out)
    vocab_size: int = 256  # at most this many SentencePiece pieces (from scratch only)
    valid_fraction: float = 0.1  # share of distinct sentences held out to measure the unit error rate
    steps: int = 3000  # optimisation steps in all
    batch_size: int = 32  # sentences per step and process
    learning_rate: float | None = None  # peak learning rate; None = 1e-3 (tiny), 5e-4 (base), 5e-5 (init)
    warmup: int = 200  # linear warm-up steps, then cosine decay
    min_lr_ratio: float = 0.02  # the learning rate decays to this fraction of the peak
    weight_decay: float = 0.01  # AdamW weight decay (not on biases and norms)
    label_smoothing: float = 0.1  # of the unit cross-entropy
    dropout: float | None = None  # None = 0.1 from scratch, the pretrained model's own with init
    grad_clip: float = 1.0  # gradient-norm clipping
    eval_every: int = 500  # steps between checkpoints, each with a unit-error-rate evaluation
    eval_sentences: int = 64  # utterances decoded per evaluation, from the training and held-out sets each
    beams: int = 5  # beam width for evaluation (and the saved generation config)
    keep_checkpoints: int = 2  # checkpoints kept while training
    gpus: int = 1  # processes (one per GPU; on CPU, gloo processes sharing the cores)
    threads: int = (
        0  # CPU threads per training process (0 = torch's default; 1 is fastest for tiny models on busy CPUs)
    )
    resume: bool = False  # continue from OUT.partial/ or OUT/checkpoints instead of starting over
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU


@dataclasses.dataclass
class TrainT2UResult:
    """What ``dv train-t2u`` trained and measured."""

    out: Path
    train_utterances: int
    valid_utterances: int
    skipped_empty_text: int
    skipped_other: int
    k: int
    vocab_tokens: int
    parameters: int
    steps: int
    seconds: float
    train_uer: float
    valid_uer: float | None
    history: list[float]  # mean training loss of every step since step 0

    def summary(self) -> dict[str, object]:
        """Rows for the end-of-run table."""
        return {
            "model": self.out,
            "utterances (train / held-out sentences)": f"{self.train_utterances} / {self.valid_utterances}",
            "skipped (empty text / other speakers)": f"{self.skipped_empty_text} / {self.skipped_other}",
            "units (k)": self.k,
            "parameters": f"{self.parameters / 1e6:.2f} M",
            "steps": self.steps,
            "training time": f"{self.seconds:.0f} s",
            "unit error rate, training sentences": f"{100 * self.train_uer:.1f}%",
            "unit error rate, held-out sentences": "-" if self.valid_uer is None else f"{100 * self.valid_uer:.1f}%",
        }


@dataclasses.dataclass
class _Job:
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


def run(config: TrainT2UConfig) -> TrainT2UResult:
    """Train a text-to-unit model and publish it at ``config.out``.

    Raises:
        UserError: another run is writing ``config.out`` (one run per output folder); bad settings; unreadable manifest or units; a units file missing a manifest id;
            no usable pairs; an ``--init`` folder that is not an mBART model; a resumed run whose
            unit vocabulary differs from the units given now.
    """
    with output_lock(config.out):
        return _run(config)


def _run(config: TrainT2UConfig) -> TrainT2UResult:
    """:func:`run` under its output-folder lock."""
    _check(config)
    out = Path(config.out)
    rows = read_manifest(config.manifest)
    source = read_unit_source(config.units)
    examples, counts = pair_examples(
        rows, source, manifest=Path(config.manifest), dedup=config.dedup, speakers=config.speakers
    )
    k = unit_vocabulary_size(examples, source, config.k)
    train, valid = split_by_sentence(examples, config.valid_fraction, config.seed)
    if counts.empty_text:
        log.info("skipped %d manifest rows with empty text", counts.empty_text)
    log.info(
        "%d training pairs, %d held-out (%d sentences), %d units",
        len(train),
        len(valid),
        len({e.text for e in valid}),
        k,
    )

    work = work_folder(out)
    check_output(out)
    with clean_up_unstarted(work):
        resume = _prepare_work(work, out, config)
        if resume:
            tokenizer, vocab = _load_work_vocab(work, k, config.dedup)
        else:
            tokenizer, vocab = _build_vocab(work, config, train, source, k)
        limit = _position_limit(config)
        train, train_sources = _fitting(train, _tokenize(tokenizer, train), limit, "training")
        valid, valid_sources = _fitting(valid, _tokenize(tokenizer, valid), limit, "held-out")
        if not train:
            raise UserError(
                f"{config.manifest}: no training pair fits the model's {limit} positions "
                "(shorter utterances, or --set model=base)"
            )
        if not resume:
            vocab.units_per_token, vocab.extra_units = generation_caps(train_sources, [e.units for e in train])
            vocab.save(work)
        job = _Job(
            config=config,
            work=work,
            vocab=vocab,
            vocab_tokens=len(tokenizer),
            train_sources=train_sources,
            train_units=[e.units for e in train],
            valid_sources=valid_sources,
            valid_units=[e.units for e in valid],
            resume=resume,
        )
        report = launch(_train, config.gpus, job, device=config.device, threads=config.threads)

    inputs = {"manifest": Path(config.manifest).resolve(), "units": source.path.resolve()}
    if config.init is not None:
        inputs["init"] = Path(config.init).resolve()
    with stage_output(out, stage="train-t2u", config=config, inputs=inputs) as tmp:
        for item in sorted((work / "final").iterdir()):
            shutil.move(str(item), tmp / item.name)
        for item in (work / "tokenizer").iterdir():
            shutil.copy2(item, tmp / item.name)
        for name in (UNIT_VOCAB_FILE, "sentencepiece.model", METRICS_FILE, "tensorboard"):
            if (work / name).exists():
                shutil.move(str(work / name), tmp / name)
        # Only the newest checkpoint travels: enough to continue with --resume and more --steps.
        latest = CheckpointManager(work / "checkpoints", kind=CHECKPOINT_KIND).latest()
        if latest is not None:
            (tmp / "checkpoints").mkdir()
            shutil.move(str(latest), tmp / "checkpoints" / latest.name)
        last = report["metrics"][-1]
        add_meta(
            tmp,
            k=k,
            dedup=config.dedup,
            train_utterances=len(train),
            valid_utterances=len(valid),
            skipped_empty_text=counts.empty_text,
            skipped_empty_units=counts.empty_units,
            skipped_other_speakers=counts.other_speakers,
            rows_with_unreadable_characters=counts.unreadable_text,
            steps=report["steps"],
            parameters=report["parameters"],
            train_seconds=round(report["seconds"], 1),
            unit_error_rate={"train": last["train_uer"], "valid": last["valid_uer"], "step": last["step"]},
        )
    shutil.rmtree(work, ignore_errors=True)
    return TrainT2UResult(
        out=out,
        train_utterances=len(train),
        valid_utterances=len(valid),
        skipped_empty_text=counts.empty_text,
        skipped_other=counts.other_speakers,
        k=k,
        vocab_tokens=len(tokenizer),
        parameters=report["parameters"],
        steps=report["steps"],
        seconds=report["seconds"],
        train_uer=last["train_uer"],
        valid_uer=last["valid_uer"],
        history=report["history"],
    )


def _check(config: TrainT2UConfig) -> None:
    problems = [
        (config.steps < 1, "steps must be at least 1"),
        (config.batch_size < 1, "batch_size must be at least 1"),
        (config.eval_every < 1, "eval_every must be at least 1"),
        (config.beams < 1, "beams must be at least 1"),
        (config.gpus < 1, "gpus must be at least 1"),
        (not 0 <= config.valid_fraction < 1, "valid_fraction must be in [0, 1)"),
        (config.k < 0, "k must be 0 (automatic) or the number of units"),
    ]
    for bad, message in problems:
        if bad:
            raise UserError(f"train-t2u: {message}")
    if config.init is not None and Path(config.init).is_file():
        raise UserError(f"{config.init}: is a file; --init takes a Hugging Face mBART folder")
    if config.init is not None and not Path(config.init).is_dir():
        raise UserError(f"{config.init}: --init folder not found (a Hugging Face mBART folder)")


def _prepare_work(work: Path, out: Path, config: TrainT2UConfig) -> bool:
    """Set up ``work`` for this run as every trainer does (:func:`dvcli.training.resume_point`,
    :func:`~dvcli.training.check_unfinished`, :func:`~dvcli.training.start_work`); True when resuming.

    Resuming a finished run (e.g. with more ``--steps``) first rebuilds its work folder from ``OUT``.

    Raises:
        UserError: ``--resume`` with nothing to resume; an unfinished run without ``--resume``.
    """
    resume_from = resume_point(config.resume, work, out, kind=CHECKPOINT_KIND)
    check_unfinished(work, resume_from)
    if resume_from is not None and resume_from.parent != work / "checkpoints":
        from transformers import AutoTokenizer

        quiet_transformers()
        shutil.rmtree(work, ignore_errors=True)
        (work / "checkpoints").mkdir(parents=True)
        AutoTokenizer.from_pretrained(out).save_pretrained(work / "tokenizer")
        for name in (UNIT_VOCAB_FILE, "sentencepiece.model", METRICS_FILE):
            if (out / name).is_file():
                shutil.copy2(out / name, work / name)
        if (out / "tensorboard").is_dir():
            shutil.copytree(out / "tensorboard", work / "tensorboard")
        shutil.copy2(resume_from, work / "checkpoints" / resume_from.name)
    start_work(work, config, resume_from=resume_from)
    return resume_from is not None


def _load_work_vocab(work: Path, k: int, dedup: bool) -> tuple[Any, UnitVocab]:
    from transformers import AutoTokenizer

    quiet_transformers()
    vocab = UnitVocab.load(work)
    if vocab.k != k or vocab.dedup != dedup:
        raise UserError(
            f"{work}: the run being resumed has {vocab.k} units (dedup={vocab.dedup}), the units given now "
            f"{k} (dedup={dedup}); resume with the same units or start over without --resume"
        )
    return AutoTokenizer.from_pretrained(work / "tokenizer"), vocab


def _build_vocab(
    work: Path, config: TrainT2UConfig, train: list[Example], source: Any, k: int
) -> tuple[Any, UnitVocab]:
    """The tokenizer (trained, or the pretrained one) with unit tokens, saved into ``work``."""
    if config.init is not None:
        tokenizer = load_pretrained_tokenizer(Path(config.init))
    else:
        texts = sorted({e.text for e in train})
        tokenizer, sp_model = train_text_tokenizer(texts, config.vocab_size, seed=config.seed)
        atomic_write_bytes(work / "sentencepiece.model", sp_model)
    offset = add_unit_tokens(tokenizer, k)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise UserError(f"{config.init}: the tokenizer has no pad or eos token (is it an mBART tokenizer?)")
    tokenizer.save_pretrained(work / "tokenizer")
    vocab = UnitVocab(
        k=k,
        offset=offset,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        dedup=config.dedup,
        frame_rate=source.frame_rate,
        kmeans_sha256=source.kmeans_sha256,
    )
    return tokenizer, vocab


def _position_limit(config: TrainT2UConfig) -> int:
    """The longest source or target sequence the model will have positions for."""
    if config.init is not None:
        from transformers import MBartConfig

        return int(MBartConfig.from_pretrained(config.init).max_position_embeddings)
    return PRESETS[config.model].max_positions


def _fitting(
    examples: list[Example], sources: list[list[int]], limit: int, what: str
) -> tuple[list[Example], list[list[int]]]:
    """The pairs whose text tokens and units (+ ``</s>``) fit ``limit`` positions; the others are
    skipped with a warning (as train-joint skips utterances over ``max_seconds``), not left to fail
    mid-run in the position embedding."""
    keep = [i for i, (e, src) in enumerate(zip(examples, sources)) if len(src) <= limit and len(e.units) + 1 <= limit]
    if len(keep) < len(examples):
        kept = set(keep)
        first = next(e.id for i, e in enumerate(examples) if i not in kept)
        log.warning(
            "skipping %d %s pair(s) longer than the model's %d positions (first: %s)",
            len(examples) - len(keep),
            what,
            limit,
            first,
        )
    return [examples[i] for i in keep], [sources[i] for i in keep]


def _tokenize(tokenizer: Any, examples: list[Example]) -> list[list[int]]:
    if not examples:
        return []
    return [list(ids) for ids in tokenizer([e.text for e in examples], add_special_tokens=True)["input_ids"]]


# -- the training processes -----------------------------------------------------------------------


def _build_model(job: _Job, state_config: dict[str, Any] | None) -> torch.nn.Module:
    """A fresh model (from scratch or ``--init``), or an empty one shaped like a checkpoint's."""
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


def _default_lr(config: TrainT2UConfig) -> float:
    if config.learning_rate is not None:
        return config.learning_rate
    return 5e-5 if config.init is not None else {"tiny": 1e-3, "base": 5e-4}[config.model]


def _train(info: DistInfo, job: _Job) -> dict[str, Any]:
    """One training process: returns (on rank 0) the loss history, metrics and timing."""
    quiet_transformers()
    config, vocab = job.config, job.vocab
    manager = CheckpointManager(job.work / "checkpoints", kind=CHECKPOINT_KIND, keep_last=config.keep_checkpoints)
    latest = manager.latest() if job.resume else None
    state = manager.load(latest, restore_rng_state=False) if latest is not None else None
    torch.manual_seed(config.seed)
    model = _build_model(job, state["model_config"] if state else None).to(info.device)
    loss_module = UnitLoss(model, vocab, config.label_smoothing).to(info.device)
    trainer = wrap_ddp(loss_module, info)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=_default_lr(config),
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
        step, history, metrics = state["step"], list(state["history"]), list(state["metrics"])
    parameters = sum(p.numel() for p in model.parameters())

    lengths = [len(s) + len(u) for s, u in zip(job.train_sources, job.train_units)]
    sampler = DistributedBucketSampler(
        lengths, config.batch_size, num_replicas=info.world_size, rank=info.rank, seed=config.seed
    )
    per_epoch = len(sampler)
    writer = summary_writer(job.work, purge_step=step if step else None) if info.is_main else None
    # The elapsed-time column goes on from the resumed run's last row rather than restarting at 0.
    started = time.perf_counter() - (float(metrics[-1]["seconds"]) if metrics else 0.0)
    model.train()
    with progress() if info.is_main else contextlib.nullcontext() as bar:
        task = bar.add_task("training text-to-unit", total=config.steps, completed=step) if bar else None
        while step < config.steps:
            epoch, skip = divmod(step, per_epoch)
            sampler.set_epoch(epoch, skip)
            for indices in sampler:
                batch = collate([job.train_sources[i] for i in indices], [job.train_units[i] for i in indices], vocab)
                batch = batch.to(info.device)
                with autocast(config.precision, info.device):
                    loss, correct = trainer(**dataclasses.asdict(batch))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                mean_loss = float(all_reduce_mean(loss.detach().float().clone()))
                history.append(mean_loss)
                if writer is not None:
                    tokens = int((batch.labels >= 0).sum())
                    writer.add_scalar("loss/train", mean_loss, step)
                    writer.add_scalar("accuracy/train", float(correct) / max(1, tokens), step)
                    writer.add_scalar("lr", scheduler.get_last_lr()[0], step)
                    writer.add_scalar("grad_norm", float(norm), step)
                if bar is not None:
                    bar.update(task, completed=step, description=f"training text-to-unit (loss {mean_loss:.3f})")
                if step % config.eval_every == 0 or step == config.steps:
                    if info.is_main:
                        row = _evaluate(model, job, step, history, time.perf_counter() - started)
                        metrics.append(row)
                        _write_metrics(job.work / METRICS_FILE, metrics)
                        if writer is not None:
                            writer.add_scalar("uer/train", row["train_uer"], step)
                            if row["valid_uer"] is not None:
                                writer.add_scalar("uer/valid", row["valid_uer"], step)
                            writer.flush()
                        manager.save(
                            step,
                            {
                                "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(),
                                "model_config": model.config.to_dict(),
                                "history": history,
                                "metrics": metrics,
                            },
                        )
                    barrier()
                if step >= config.steps:
                    break
    seconds = time.perf_counter() - started
    if writer is not None:
        writer.close()
    if info.is_main:
        # A run resumed at its last step trains nothing more; the metrics come from the checkpoint.
        if not metrics or metrics[-1]["step"] != step:
            metrics.append(_evaluate(model, job, step, history, seconds))
            _write_metrics(job.work / METRICS_FILE, metrics)
        model.save_pretrained(job.work / "final")
    barrier()
    return {"steps": step, "history": history, "metrics": metrics, "seconds": seconds, "parameters": parameters}


def _evaluate(model: torch.nn.Module, job: _Job, step: int, history: list[float], seconds: float) -> dict[str, Any]:
    """Unit error rate with beam search on (a sample of) the training and held-out utterances."""
    config = job.config
    t2u = TextToUnit(model, None, job.vocab)
    rates = {}
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
    recent = history[-config.eval_every :]
    row = {
        "step": step,
        "loss": round(sum(recent) / max(1, len(recent)), 5),
        "train_uer": round(rates["train"], 5),
        "valid_uer": None if rates["valid"] is None else round(rates["valid"], 5),
        "seconds": round(seconds, 1),
    }
    log.info(
        "step %d: loss %.3f, unit error rate %.1f%% (training sentences)%s",
        step,
        row["loss"],
        100 * row["train_uer"],
        "" if row["valid_uer"] is None else f", {100 * row['valid_uer']:.1f}% (held out)",
    )
    return row


def _write_metrics(path: Path, metrics: list[dict[str, Any]]) -> None:
    columns = ["step", "loss", "train_uer", "valid_uer", "seconds"]
    lines = ["\t".join(columns)] + [
        "\t".join("" if row[c] is None else str(row[c]) for c in columns) for row in metrics
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")
