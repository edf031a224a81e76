"""``dv pretrain-speaker``: train CAM++ for speaker verification (or BYOL-A), then report EER clean and noisy.

Recipe (3D-Speaker's, scaled by ``steps``): random ``crop_seconds`` crops in speaker-balanced
batches, reverberation + additive noise (:mod:`dvcli.augment`), 80-bin Kaldi fbank, CAM++, an
AAM-Softmax classifier (scale 32, margin ramped 0 -> 0.2), SGD with warm-up + cosine LR.

Data split: rows with ``split=heldout`` are unseen speakers (evaluation only). Of every other
speaker, ``eval_utterances`` utterances are kept out of training for the seen-speaker trials.

``objective=byol-a`` trains BYOL-A's generic audio encoder instead, without speaker labels
(:mod:`stages.pretrain_speaker_byola`): the paper's frozen baseline encoder (Table 1).

Outputs (``OUT/``): ``campplus.pt`` (the encoder + its config, for the later stages),
``campplus.bin`` (the same weights as a plain 3D-Speaker state dict), ``eer.json`` + ``eer.md``
(for byol-a: ``byola.pt`` and ``byola.pth``, BYOL-A's own layout), ``eer.json`` + ``eer.md`` (clean and noisy EER/minDCF, seen and unseen speakers), ``trials/*.tsv``, ``embeddings.npy`` +
``embeddings.tsv`` (every manifest utterance), ``train.tsv`` (loss curve), ``checkpoints/``,
``tensorboard/``. While training, checkpoints and TensorBoard logs live in ``OUT.partial/``;
``resume=True`` continues from there (or from ``OUT/checkpoints`` of a finished run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dvcli.atomic import output_lock
from dvcli.audio import check_readable
from dvcli.augment.augmenter import Augmenter
from dvcli.checkpoint import load_checkpoint, save_checkpoint
from dvcli.config import to_dict
from dvcli.errors import UserError
from dvcli.evaluation.noise import NoiseSource
from dvcli.features.fbank import KaldiFbank
from dvcli.logs import progress
from dvcli.manifest import Utterance, read_manifest
from dvcli.models.aam import AAMSoftmax, margin_at
from dvcli.models.byola import ByolaEncoder
from dvcli.models.campplus import PRESETS, CAMPPlus, CAMPPlusConfig
from dvcli.outputs import add_meta, stage_output
from dvcli.runtime import autocast, resolve_device
from dvcli.speaker.data import SpeakerCrops
from dvcli.speaker.encoder import (
    BYOLA_FILE,
    BYOLA_KIND,
    BYOLA_PLAIN_FILE,
    ENCODER_FILE,
    ENCODER_KIND,
    MIN_SECONDS,
    PLAIN_FILE,
    TRAIN_KIND,
    SpeakerEncoder,
    SpeakerFrontend,
    load_speaker_encoder,
)
from dvcli.speaker.verification import (
    Trial,
    evaluate_trials,
    export_embeddings,
    make_trials,
    read_trials,
    results_table,
    write_results,
    write_trials,
)
from dvcli.training.checkpoints import CheckpointManager, step_generator
from dvcli.training.distributed import DistInfo, barrier, launch, wrap_ddp
from dvcli.training.history import HistoryRow, plot_history, window_mean, write_history
from dvcli.training.schedule import grad_norm, warmup_cosine
from dvcli.training.work import (
    check_output,
    check_unfinished,
    clean_up_unstarted,
    finish_work,
    resume_point,
    start_work,
    summary_writer,
    work_folder,
)
from stages import pretrain_speaker_byola as byola
from stages.pretrain_speaker_config import PretrainSpeakerConfig, Split

log = logging.getLogger(__name__)

#: Offset that keeps the augmentation draws of a step independent of its crop draws.
_AUGMENT_STREAM = 0x5EED


@dataclasses.dataclass
class PretrainSpeakerResult:
    """What a run produced."""

    out: Path
    steps: int
    parameters: int
    speakers: int
    eer: dict[str, dict[str, float]]  # set -> condition -> EER (0..1)
    table: str  # the markdown EER table
    history: list[HistoryRow]  # step, loss, accuracy, lr, margin every log_every steps

    def summary(self) -> dict[str, object]:
        rows: dict[str, object] = {
            "output": self.out,
            "steps": self.steps,
            "parameters": f"{self.parameters:,}",
            "training speakers": self.speakers,
        }
        for name, conditions in self.eer.items():
            rows[f"EER {name}"] = "  ".join(f"{cond} {100 * v:.2f}%" for cond, v in conditions.items())
        return rows


def split_utterances(utterances: list[Utterance], config: PretrainSpeakerConfig) -> Split:
    """Train / seen-evaluation / unseen split (seeded by ``config.seed``).

    Raises:
        UserError: fewer than two training speakers when training (``steps`` > 0); evaluating an
            ``--init`` encoder needs none.
    """
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    unseen = []
    for u in utterances:
        (unseen if u.split == "heldout" else by_speaker[u.speaker]).append(u)
    speakers = sorted(by_speaker)
    if len(speakers) < 2 and config.steps > 0 and config.objective == "aam":
        raise UserError(f"{config.manifest}: {len(speakers)} training speaker(s); speaker training needs at least two")
    if not speakers and config.steps > 0:
        raise UserError(f"{config.manifest}: no utterances outside split=heldout to train on")
    rng = random.Random(config.seed)
    eval_speakers = set(rng.sample(speakers, min(config.eval_speakers, len(speakers))))
    train, seen = [], []
    for speaker in speakers:
        rows = sorted(by_speaker[speaker], key=lambda u: u.id)
        if speaker in eval_speakers and len(rows) > config.eval_utterances >= 2:
            held = set(rng.sample(range(len(rows)), config.eval_utterances))
            seen += [u for i, u in enumerate(rows) if i in held]
            rows = [u for i, u in enumerate(rows) if i not in held]
        train += rows
    return Split(train, seen, unseen, speakers)


class SpeakerClassifier(nn.Module):
    """CAM++ + AAM-Softmax, one module so DDP sees every trained parameter."""

    def __init__(self, encoder: CAMPPlus, head: AAMSoftmax) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, feats: torch.Tensor, labels: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, 80)`` fbank, ``(B,)`` labels -> loss and ``(B, speakers)`` logits."""
        return self.head(self.encoder(feats), labels, margin)


# -- the stage ------------------------------------------------------------------------------------


def run(config: PretrainSpeakerConfig) -> PretrainSpeakerResult:
    """Train (unless ``steps`` is 0), evaluate, export; publish ``config.out`` atomically.

    Raises:
        UserError: another run is writing ``config.out`` (one run per output folder); unusable manifest or settings, an output folder that may not be replaced, a
            leftover unfinished run without ``resume``, nothing to resume, or bad ``init`` weights.
    """
    with output_lock(config.out):
        return _run(config)


def _run(config: PretrainSpeakerConfig) -> PretrainSpeakerResult:
    """:func:`run` under its output-folder lock."""
    out, work = Path(config.out), work_folder(Path(config.out))
    _check_settings(config, out)
    utterances = read_manifest(config.manifest)
    split = split_utterances(utterances, config)
    check_readable(((u.id, u.audio) for u in [*split.train, *split.seen, *split.unseen]), config.manifest)
    log.info(
        "%d training speakers, %d training / %d seen-evaluation utterances, %d utterances of %d held-out speakers",
        len(split.speakers),
        len(split.train),
        len(split.seen),
        len(split.unseen),
        len({u.speaker for u in split.unseen}),
    )
    resume_from = resume_point(config.resume, work, out, kind=TRAIN_KIND)
    check_unfinished(work, resume_from)
    trials = read_trials(Path(config.trials), {u.id: u.audio for u in utterances}) if config.trials else None
    sets, titles = _trial_sets(config, split, trials)
    history, encoder = _train_or_load(config, split, resume_from, work)
    device = resolve_device(config.device)
    if isinstance(encoder, ByolaEncoder):
        encoder = byola.fit_projection(encoder, split.train, config, device)
    frontend = SpeakerFrontend(encoder).to(device).eval()
    # The noisy trials use dv's one evaluation noise (dv evaluate speaker's): the training noise
    # folder's clips, else white noise; see dvcli.speaker.verification.noisy_copy.
    noise = NoiseSource(config.augment.noise_dir)
    results = evaluate_trials(frontend.embed, sets, snrs=config.snrs, noise=noise, seed=config.seed)
    table = results_table(results, titles)
    log.info("speaker verification:\n%s", table)
    if (work / "tensorboard").is_dir():
        writer = summary_writer(work)
        for name, row in results.items():
            for condition, result in row.items():
                writer.add_scalar(f"eer/{name}/{condition.replace(' ', '')}", result.eer, config.steps)
        writer.close()

    with stage_output(
        out, stage="pretrain-speaker", config=config, inputs={"manifest": Path(config.manifest).resolve()}
    ) as tmp:
        payload = {
            "model": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
            "model_config": dataclasses.asdict(encoder.config),
            "speakers": split.speakers,
        }
        if isinstance(encoder, ByolaEncoder):
            save_checkpoint(payload, tmp / BYOLA_FILE, kind=BYOLA_KIND)
            torch.save({k: v.cpu() for k, v in encoder.body.state_dict().items()}, tmp / BYOLA_PLAIN_FILE)
        else:
            save_checkpoint(payload, tmp / ENCODER_FILE, kind=ENCODER_KIND)
            torch.save(encoder.state_dict(), tmp / PLAIN_FILE)
        write_results(tmp, results, titles)
        for name, rows in sets.items():
            write_trials(tmp / "trials" / f"{name}.tsv", rows)
        if history:
            write_history(tmp / "train.tsv", history)
            plot_history(history, tmp / "train.png", f"dv pretrain-speaker: {config.steps} steps")
        if config.export_embeddings:
            export_embeddings(frontend.embed, utterances, tmp)
        eer = {name: {cond: r.eer for cond, r in row.items()} for name, row in results.items()}
        add_meta(tmp, eer=eer, parameters=sum(p.numel() for p in encoder.parameters()), speakers=len(split.speakers))
    # Published: move the training state in (a crash here loses nothing, it stays in OUT.partial).
    finish_work(work, out)
    return PretrainSpeakerResult(
        out=out,
        steps=config.steps,
        parameters=sum(p.numel() for p in encoder.parameters()),
        speakers=len(split.speakers),
        eer=eer,
        table=table,
        history=history,
    )


def _train_or_load(
    config: PretrainSpeakerConfig, split: Split, resume_from: Path | None, work: Path
) -> tuple[list[HistoryRow], SpeakerEncoder]:
    """Train (when there are steps to take or a run to resume) and return the history and the encoder;
    else the ``--init`` encoder, or a random one (for byol-a always with the data's log-mel statistics)."""
    # Load --init here, so a bad file fails before anything is written.
    init: SpeakerEncoder | None = None
    if config.objective == byola.OBJECTIVE:
        init = byola.initial_encoder(config, split.train) if resume_from is None else None
    elif config.init is not None and resume_from is None:
        init = load_speaker_encoder(config.init)
    if config.steps == 0 and resume_from is None:
        if config.init is None:
            log.warning("steps=0 and no init: evaluating a randomly initialised encoder (a chance-level baseline)")
        if init is not None:  # --init, or BYOL-A's random weights with the data's statistics
            return [], init
        torch.manual_seed(config.seed)
        return [], CAMPPlus(_model_config(config)).eval()
    start_work(work, config, resume_from=resume_from)
    if init is None:
        init_state = None
    elif config.objective == byola.OBJECTIVE:
        init_state = {"model": init.state_dict(), "model_config": dataclasses.asdict(init.config)}
    else:
        init_state = init.state_dict()
    loop = byola.train if config.objective == byola.OBJECTIVE else _train
    with clean_up_unstarted(work):
        history = launch(
            loop,
            config.gpus,
            config,
            split,
            resume_from,
            init_state,
            work,
            device=config.device,
            threads=config.threads,
        )
    final = CheckpointManager(work / "checkpoints", kind=TRAIN_KIND).latest() or resume_from
    return history, load_speaker_encoder(final)


def _check_settings(config: PretrainSpeakerConfig, out: Path) -> None:
    """Fail before hours of training, not after."""
    check_output(out)
    if config.steps < 0 or config.gpus < 1 or config.embedding_size < 1:
        raise UserError("need steps >= 0, gpus >= 1 and embedding_size >= 1")
    if config.init is not None and Path(config.init).is_dir():
        files = (
            "byola.pt or BYOL-A's AudioNTT2020-*.pth"
            if config.objective == byola.OBJECTIVE
            else "campplus.pt or a 3D-Speaker .bin"
        )
        raise UserError(f"{config.init}: is a folder; --init takes a checkpoint file ({files})")
    if config.init is not None and not Path(config.init).is_file():
        raise UserError(f"{config.init}: --init checkpoint not found")
    if config.objective == byola.OBJECTIVE:
        byola.check_settings(config)
        return
    if config.model not in (None, *PRESETS):
        hint = " (add --objective byol-a)" if config.model in byola.MODELS else ""
        raise UserError(f"model {config.model}: --objective aam trains {' or '.join(PRESETS)} (CAM++){hint}")
    if config.batch_size % config.utterances_per_speaker:
        raise UserError(
            f"batch_size {config.batch_size} is not a multiple of utterances_per_speaker {config.utterances_per_speaker}"
        )
    if config.crop_seconds < MIN_SECONDS:
        raise UserError(f"need crop_seconds >= {MIN_SECONDS:g} (CAM++'s shortest input)")
    if not 0 <= config.margin_ramp[0] <= config.margin_ramp[1] <= 1:
        raise UserError(f"margin_ramp {list(config.margin_ramp)}: expected two fractions 0 <= start <= end <= 1")


def _model_config(config: PretrainSpeakerConfig) -> CAMPPlusConfig:
    return PRESETS[config.model or "campplus"](embedding_size=config.embedding_size)


def _trial_sets(
    config: PretrainSpeakerConfig, split: Split, trials: list[Trial] | None
) -> tuple[dict[str, list[Trial]], dict[str, str]]:
    sets: dict[str, list[Trial]] = {}
    titles = {"seen": "seen speakers, held-out utterances", "unseen": "held-out speakers", "custom": str(config.trials)}
    if len(split.seen) >= 2 and len({u.speaker for u in split.seen}) >= 2:
        sets["seen"] = make_trials(split.seen, max_trials=config.max_trials, seed=config.seed)
    else:
        log.warning(
            "no seen-speaker trials: training speakers need more than eval_utterances=%d utterances",
            config.eval_utterances,
        )
    if len({u.speaker for u in split.unseen}) >= 2:
        sets["unseen"] = make_trials(split.unseen, max_trials=config.max_trials, seed=config.seed)
    else:
        log.warning("no held-out-speaker trials: mark two or more speakers heldout (dv prepare --speakers-heldout N)")
    if trials:
        sets["custom"] = trials
    if not sets:
        raise UserError(
            f"{config.manifest}: nothing to evaluate (no held-out utterances or speakers; see the warnings)"
        )
    return sets, titles


# -- training (one process per GPU / CPU worker) --------------------------------------------------


def _train(
    info: DistInfo,
    config: PretrainSpeakerConfig,
    split: Split,
    resume_from: Path | None,
    init_state: dict[str, torch.Tensor] | None,
    work: Path,
) -> list[HistoryRow]:
    """The training loop; returns rank 0's loss history. Checkpoints go to ``work/checkpoints``."""
    device = info.device
    torch.manual_seed(config.seed)  # the same initial weights on every process
    state: dict[str, Any] | None = None
    if resume_from is not None:
        state = load_checkpoint(resume_from, kind=TRAIN_KIND)
        if state.get("objective", "aam") != "aam":
            raise UserError(
                f"{resume_from}: was trained with --objective {state['objective']}; resume it with that objective"
            )
        if state["speakers"] != split.speakers:
            raise UserError(f"{resume_from}: was trained on other speakers than {config.manifest} lists")
        encoder = CAMPPlus(CAMPPlusConfig(**state["model_config"]))
    elif init_state is not None:
        encoder = load_speaker_encoder(init_state).train()
        log.info("initialised from %s", config.init)
    else:
        encoder = CAMPPlus(_model_config(config))
    head = AAMSoftmax(encoder.embedding_size, len(split.speakers), scale=config.aam_scale, margin=config.aam_margin)
    net = SpeakerClassifier(encoder, head).to(device)
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            net.parameters(), lr=config.learning_rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = int(config.warmup * config.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup, config.steps, config.min_lr_ratio)
    )
    manager = CheckpointManager(work / "checkpoints", kind=TRAIN_KIND, keep_last=config.keep_checkpoints)
    start, history = 0, []  # type: tuple[int, list[HistoryRow]]
    if state is not None:
        encoder.load_state_dict(state["model"])
        head.load_state_dict(state["classifier"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, history = int(state["step"]), [_history_row(row) for row in state["history"]]
        manager.load(resume_from)  # restores the global RNG states
    model = wrap_ddp(net, info)
    fbank = KaldiFbank(encoder.config.feat_dim).to(device)
    augmenter = Augmenter(config.augment, speech=[u.audio for u in split.train[:500]])
    crops = SpeakerCrops(
        split.train,
        split.speakers,
        batch_size=config.batch_size,
        per_speaker=config.utterances_per_speaker,
        crop_seconds=config.crop_seconds,
        seed=config.seed,
        rank=info.rank,
        steps=config.steps,
    )
    loader = torch.utils.data.DataLoader(
        crops,
        batch_size=None,
        sampler=range(start, config.steps),
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
    )
    writer = summary_writer(work) if info.is_main else None
    ramp = (int(config.margin_ramp[0] * config.steps), int(config.margin_ramp[1] * config.steps))
    window: list[tuple[float, float]] = []
    model.train()
    with progress() if info.is_main else contextlib.nullcontext() as bar:
        task = bar.add_task("training CAM++", total=config.steps, completed=start) if bar else None
        for step, (wavs, labels) in zip(range(start, config.steps), loader):
            gen = step_generator(config.seed ^ _AUGMENT_STREAM, step, info.rank, device=device)
            wavs, labels = wavs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.no_grad():
                feats, _ = fbank(augmenter(wavs, gen))
            margin = margin_at(step, config.aam_margin, *ramp)
            with autocast(config.precision, device):
                loss, logits = model(feats, labels, margin)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = grad_norm(net.parameters())
            optimizer.step()
            scheduler.step()
            accuracy = (logits.argmax(-1) == labels).float().mean()
            window.append({"loss": float(loss.detach()), "accuracy": float(accuracy)})
            last_loss = window[-1]["loss"]
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                row = window_mean(window, step + 1, device)
                row.update(lr=optimizer.param_groups[0]["lr"], margin=margin)
                history.append(row)
                window = []
                if writer is not None:
                    for name in ("loss", "accuracy", "lr", "margin"):
                        writer.add_scalar(f"train/{name}", row[name], step + 1)
                    writer.add_scalar("train/grad_norm", norm, step + 1)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                if info.is_main:
                    manager.save(
                        step + 1,
                        {
                            "model": encoder.state_dict(),
                            "classifier": head.state_dict(),
                            "model_config": dataclasses.asdict(encoder.config),
                            "speakers": split.speakers,
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "config": to_dict(config),
                            "history": history,
                        },
                    )
                barrier()
            if bar is not None:
                bar.update(task, advance=1, description=f"training CAM++ (loss {last_loss:.3f})")
    if writer is not None:
        writer.close()
    return history


def _history_row(row: Any) -> HistoryRow:
    """A history row from a checkpoint; those written before the rows became dicts were lists
    ``[step, loss, accuracy, lr, margin]``."""
    if isinstance(row, dict):
        return dict(row)
    return dict(zip(("step", "loss", "accuracy", "lr", "margin"), (float(v) for v in row)))
