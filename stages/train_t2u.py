"""``dv train-t2u``: train the mBART text-to-unit model on a manifest's text and its units.

Inputs: ``manifest.tsv`` (text) and ``units.tsv`` (or the ``dv cluster`` folder holding it with the
``meta.json`` that gives ``k``). Output: a Hugging Face model folder (see :mod:`dvcli.t2u.model`) with
``metrics.tsv`` (unit error rate per checkpoint, on training and held-out sentences), TensorBoard
logs and the last training checkpoint (so ``--resume`` can continue it with more ``--steps``).

While training, everything lives in ``OUT.partial/`` (checkpoints, tokenizer, logs); the finished
folder appears at ``OUT`` in one rename, so nothing can mistake a half-trained model for a finished
one. ``--resume`` continues from ``OUT.partial/`` (an interrupted run) or ``OUT/checkpoints``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from dvcli.atomic import atomic_write_bytes, output_lock
from dvcli.errors import UserError
from dvcli.manifest import read_manifest
from dvcli.outputs import add_meta, stage_output, write_model_card
from dvcli.t2u.data import (
    Example,
    generation_caps,
    pair_examples,
    split_by_sentence,
    unit_vocabulary_size,
)
from dvcli.t2u.model import PRESETS, quiet_transformers
from dvcli.t2u.tokenizer import add_unit_tokens, load_pretrained_tokenizer, train_text_tokenizer
from dvcli.t2u.vocab import UNIT_VOCAB_FILE, UnitVocab
from dvcli.training.checkpoints import CheckpointManager
from dvcli.training.distributed import launch
from dvcli.training.history import HistoryRow, plot_history
from dvcli.training.work import (
    check_output,
    check_unfinished,
    clean_up_unstarted,
    resume_point,
    start_work,
    work_folder,
)
from dvcli.units.sequences import read_unit_source
from stages import train_t2u_loop as loop
from stages.train_t2u_config import CHECKPOINT_KIND, HISTORY_FILE, METRICS_FILE, TrainT2UConfig

log = logging.getLogger(__name__)


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
    history: list[HistoryRow]  # step, loss, accuracy, lr, grad_norm every log_every steps

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
        job = loop.Job(
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
        report = launch(loop.train, config.gpus, job, device=config.device, threads=config.threads)

    inputs = {"manifest": Path(config.manifest).resolve(), "units": source.path.resolve()}
    if config.init is not None:
        inputs["init"] = Path(config.init).resolve()
    with stage_output(out, stage="train-t2u", config=config, inputs=inputs) as tmp:
        for item in sorted((work / "final").iterdir()):
            shutil.move(str(item), tmp / item.name)
        for item in (work / "tokenizer").iterdir():
            shutil.copy2(item, tmp / item.name)
        for name in (UNIT_VOCAB_FILE, "sentencepiece.model", METRICS_FILE, HISTORY_FILE, "tensorboard"):
            if (work / name).exists():
                shutil.move(str(work / name), tmp / name)
        # Only the newest checkpoint travels: enough to continue with --resume and more --steps.
        latest = CheckpointManager(work / "checkpoints", kind=CHECKPOINT_KIND).latest()
        if latest is not None:
            (tmp / "checkpoints").mkdir()
            shutil.move(str(latest), tmp / "checkpoints" / latest.name)
        last = report.metrics[-1]
        plot_history(report.history, tmp / "train.png", f"dv train-t2u: {report.steps} steps")
        plot_history(report.metrics, tmp / "unit_error_rate.png", "dv train-t2u: unit error rate at each checkpoint")
        _write_model_card(tmp, config, report, k, train_pairs=len(train), held_out=len(valid))
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
            steps=report.steps,
            parameters=report.parameters,
            train_seconds=round(report.seconds, 1),
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
        parameters=report.parameters,
        steps=report.steps,
        seconds=report.seconds,
        train_uer=float(last["train_uer"] or 0.0),
        valid_uer=last["valid_uer"],
        history=report.history,
    )


def _write_model_card(
    folder: Path, config: TrainT2UConfig, report: loop.LoopResult, k: int, *, train_pairs: int, held_out: int
) -> None:
    """The published folder's README.md (:func:`dvcli.outputs.write_model_card`)."""
    last = report.metrics[-1]
    held_out_uer = "-" if last["valid_uer"] is None else f"{100 * last['valid_uer']:.1f}%"
    write_model_card(
        folder,
        title=f"Text-to-unit model ({'from ' + Path(config.init).name if config.init else config.model})",
        summary="An mBART encoder-decoder that turns English text into the content units a dv VITS model "
        "reads (the inference half of DINO-VITS). A Hugging Face folder: plain transformers loads it.",
        facts={
            "trained on": f"`{Path(config.manifest).name}`: {train_pairs} pairs, {held_out} held out",
            "units": f"k = {k} ({'deduplicated' if config.dedup else 'one per frame'})",
            "steps": str(report.steps),
            "parameters": f"{report.parameters:,}",
            "unit error rate (beam search)": f"training sentences {100 * float(last['train_uer'] or 0):.1f}%, "
            f"held-out {held_out_uer} (step {int(last['step'] or 0)})",
        },
        usage="dv synthesize --model JOINT_FOLDER --t2u THIS_FOLDER --ref clip.wav --text 'Hello.' -o out.wav",
        files={
            "config.json, model.safetensors, generation_config.json": "the mBART model (transformers)",
            "tokenizer.json, tokenizer_config.json": "the tokenizer, unit tokens included",
            UNIT_VOCAB_FILE: "where the units sit among the tokens, and their k-means model",
            METRICS_FILE: "unit error rates at every checkpoint (unit_error_rate.png)",
            HISTORY_FILE: "training loss every log_every steps (train.png)",
            "checkpoints/": "the last training state (dv train-t2u --resume continues it)",
        },
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
    """Set up ``work`` for this run as every trainer does (:func:`dvcli.training.work.resume_point`,
    :func:`~dvcli.training.work.check_unfinished`, :func:`~dvcli.training.work.start_work`); True when resuming.

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
        for name in (UNIT_VOCAB_FILE, "sentencepiece.model", METRICS_FILE, HISTORY_FILE):
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
