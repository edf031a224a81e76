"""``dv train-joint``: VITS over content units, conditioned on a CAM++ trained jointly under DINO.

Each step (:func:`stages.train_joint_loop._step`):

1. a batch of (units, waveform) pairs from the length-bucketed sampler;
2. the **reference**: a random crop of each utterance (as long as the batch's shortest, at most
   ``ref_seconds``), noise/reverb-augmented unless ``ref_augment`` is off; its student embedding
   conditions VITS;
3. the **sidecar**: two ``crop_seconds`` crops of every utterance, each augmented independently;
   ``dino``: student (CAM++ + head) and EMA teacher see them, loss over both pairings
   (:mod:`dvcli.dino`); ``aam``: AAM-Softmax over the manifest's speakers; ``simclr``, ``moco``,
   ``byol``, ``vicreg``: those objectives over the two crops (:mod:`dvcli.ssl`); ``none``: nothing;
4. one VITS discriminator + generator update (:class:`VitsTrainer`) with ``lambda * sidecar`` added
   to the generator loss, so the encoder and head step with the generator (same clipping and
   non-finite guard); then the teacher's EMA update.

Phase 1 (``phase1_steps``) trains only the encoder's final dense layer and the head; phase 2
(``phase2_steps``) the whole encoder. The phase follows from the step number, so ``--resume`` lands
in the right one. ``freeze_speaker`` keeps the encoder fixed (the YourTTS-style baseline).

Outputs (``OUT/``): ``model.pt`` (generator + student encoder, :mod:`dvcli.joint.model`, read by ``dv
synthesize``), ``train.tsv`` (losses every ``log_every`` steps), ``checkpoints/`` (generator,
discriminators, encoder, head, teacher, optimisers: everything to resume), ``tensorboard/``. While
training they live in ``OUT.partial/``; ``resume`` continues from there.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch

from dvcli.atomic import output_lock
from dvcli.audio import check_readable
from dvcli.checkpoint import load_checkpoint
from dvcli.errors import UserError
from dvcli.joint.data import JointExample
from dvcli.joint.model import MODEL_FILE, TRAIN_KIND, UnitInfo, save_joint
from dvcli.manifest import Utterance, read_manifest
from dvcli.models.byola import ByolaEncoder
from dvcli.models.campplus import PRESETS as SPEAKER_PRESETS
from dvcli.models.campplus import CAMPPlus
from dvcli.models.vits import VitsConfig, VitsGenerator
from dvcli.outputs import add_meta, stage_output, write_model_card
from dvcli.speaker.encoder import MIN_SECONDS, SpeakerEncoder, build_speaker_encoder, load_speaker_encoder
from dvcli.training.distributed import launch
from dvcli.training.history import HistoryRow, plot_history, write_history
from dvcli.training.work import (
    check_output,
    check_unfinished,
    clean_up_unstarted,
    finish_work,
    resume_point,
    start_work,
    work_folder,
)
from dvcli.units.sequences import UnitSource, deduplicate, read_unit_source, unit_vocabulary
from stages.train_joint_config import Plan, TrainJointConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainJointResult:
    """What a run produced."""

    out: Path
    steps: int
    utterances: int
    speakers: int
    parameters: dict[str, int]  # generator, encoder
    history: list[HistoryRow]  # one row every log_every steps
    seconds: float  # training wall time of this invocation

    def summary(self) -> dict[str, object]:
        first, last = first_last(self.history, "loss_mel")
        rows: dict[str, object] = {
            "output": self.out,
            "steps": self.steps,
            "utterances / speakers": f"{self.utterances} / {self.speakers}",
            "generator parameters": f"{self.parameters['generator']:,}",
            "encoder parameters": f"{self.parameters['encoder']:,}",
            "mel L1 first -> last": f"{first:.3f} -> {last:.3f}",
            "training time": f"{self.seconds:.0f} s",
        }
        if any("teacher_entropy" in r for r in self.history):
            rows["DINO teacher entropy (last)"] = f"{first_last(self.history, 'teacher_entropy')[1]:.3f}"
        return rows


def first_last(history: list[HistoryRow], key: str) -> tuple[float, float]:
    """The first and last logged value of ``key`` (NaN when it was never logged)."""
    rows = [r for r in history if key in r]
    return (rows[0][key], rows[-1][key]) if rows else (float("nan"), float("nan"))


# -- the stage ------------------------------------------------------------------------------------


def run(config: TrainJointConfig) -> TrainJointResult:
    """Check the inputs, train (on ``config.gpus`` processes), publish ``OUT/model.pt`` atomically.

    Raises:
        UserError: another run is writing ``config.out`` (one run per output folder); unusable manifest, units, speaker checkpoint or settings; an output folder that
            may not be replaced; a leftover unfinished run without ``resume``, or nothing to resume.
    """
    with output_lock(config.out):
        return _run(config)


def _run(config: TrainJointConfig) -> TrainJointResult:
    """:func:`run` under its output-folder lock."""
    out, work = Path(config.out), work_folder(Path(config.out))
    _check_settings(config, out)
    resume_from = resume_point(config.resume, work, out, kind=TRAIN_KIND)
    check_unfinished(work, resume_from)
    plan = make_plan(config, resume_from)
    log.info(
        "%d utterances of %d speakers; %d + %d steps (last layer, then whole encoder); speaker loss %s",
        len(plan.examples),
        len(plan.speakers),
        config.phase1_steps,
        config.phase2_steps,
        "none (frozen encoder)" if config.freeze_speaker else config.speaker_loss,
    )

    start_work(work, config, resume_from=resume_from)
    from stages.train_joint_loop import train  # the loop imports the heavy modules

    started = time.perf_counter()
    with clean_up_unstarted(work):
        trained = launch(
            train, config.gpus, config, plan, resume_from, work, device=config.device, threads=config.threads
        )
    seconds = time.perf_counter() - started

    generator = VitsGenerator(VitsConfig(**plan.vits))
    generator.load_state_dict(trained.generator)
    encoder = build_speaker_encoder(plan.speaker_init["model_config"])
    encoder.load_state_dict(trained.encoder)
    history, steps = trained.history, trained.step
    parameters = {
        "generator": sum(p.numel() for p in generator.parameters()),
        "encoder": sum(p.numel() for p in encoder.parameters()),
    }
    info = {
        "steps": steps,
        "phase1_steps": config.phase1_steps,
        "phase2_steps": config.phase2_steps,
        "speaker_loss": "none" if config.freeze_speaker else config.speaker_loss,
        "speaker_encoder": "byol-a" if isinstance(encoder, ByolaEncoder) else "campplus",
        "ref_augment": config.ref_augment,
        "freeze_speaker": config.freeze_speaker,
        "dedup": config.dedup and config.content == "units",
        "content": config.content,
        "speakers": len(plan.speakers),
    }
    inputs = {"manifest": Path(config.manifest).resolve()}
    if config.content == "units":
        inputs["units"] = Path(config.units).resolve()
    if config.speaker is not None:
        inputs["speaker"] = Path(config.speaker).resolve()
    encoder_name = "BYOL-A" if isinstance(encoder, ByolaEncoder) else "CAM++"
    with stage_output(out, stage="train-joint", config=config, inputs=inputs) as tmp:
        save_joint(tmp / MODEL_FILE, generator, encoder, plan.units, **info)
        write_history(tmp / "train.tsv", history)
        plot_history(history, tmp / "train.png", f"dv train-joint: {steps} steps")
        first, last = first_last(history, "loss_mel")
        write_model_card(
            tmp,
            title=(
                f"VITS voice-cloning model on a frozen {encoder_name} speaker encoder ({config.model})"
                if config.freeze_speaker
                else f"DINO-VITS voice-cloning model ({config.model})"
            ),
            summary=f"VITS over {'phonemes' if config.content == 'text' else 'content units'}, conditioned on a "
            f"{encoder_name} speaker encoder "
            f"{'kept frozen' if config.freeze_speaker else 'trained jointly with it'} "
            f"(speaker loss: {info['speaker_loss']}); clones a voice from one reference clip.",
            facts={
                "trained on": f"`{Path(config.manifest).name}`: {len(plan.examples)} utterances of "
                f"{len(plan.speakers)} speaker{'s' if len(plan.speakers) != 1 else ''}",
                "units": f"k = {plan.units.k} ({'espeak-ng phonemes of the text' if config.content == 'text' else 'deduplicated' if config.dedup else 'one per frame'})",
                "steps": f"{steps} (speaker encoder frozen)"
                if config.freeze_speaker
                else f"{steps} ({config.phase1_steps} encoder last layer + {config.phase2_steps} whole encoder)",
                "parameters": f"generator {parameters['generator']:,}, speaker encoder {parameters['encoder']:,}",
                "output rate": f"{generator.config.sample_rate} Hz",
                "mel L1, first -> last logged": f"{first:.3f} -> {last:.3f}",
            },
            usage=(
                "dv synthesize --model THIS_FOLDER --ref clip.wav --text 'Hello.' -o out.wav"
                if config.content == "text"
                else "dv synthesize --model THIS_FOLDER --t2u T2U_FOLDER --ref clip.wav --text 'Hello.' -o out.wav"
            ),
            files={
                MODEL_FILE: "generator + speaker encoder + unit vocabulary (what dv synthesize loads)",
                "train.tsv": "losses every log_every steps; train.png plots them",
                "checkpoints/": "the last training state (dv train-joint --resume continues it)",
                "tensorboard/": "TensorBoard logs",
            },
        )
        add_meta(
            tmp,
            parameters=parameters,
            utterances=len(plan.examples),
            speakers=len(plan.speakers),
            mel_l1_first=first,
            mel_l1_last=last,
            **{k: v for k, v in info.items() if k != "speakers"},
        )
    finish_work(work, out)
    return TrainJointResult(
        out=out,
        steps=steps,
        utterances=len(plan.examples),
        speakers=len(plan.speakers),
        parameters=parameters,
        history=history,
        seconds=seconds,
    )


def _check_settings(config: TrainJointConfig, out: Path) -> None:
    """Fail before hours of training, not after."""
    check_output(out)
    if config.phase1_steps < 0 or config.phase2_steps < 0 or config.steps < 1:
        raise UserError("need phase1_steps >= 0, phase2_steps >= 0 and at least one step in all")
    if config.batch_size < 2 or config.gpus < 1:
        raise UserError("need batch_size >= 2 (batch norm and DINO centering need a batch) and gpus >= 1")
    if config.crop_seconds < MIN_SECONDS or config.ref_seconds < MIN_SECONDS:
        raise UserError(f"crop_seconds and ref_seconds must be at least {MIN_SECONDS:g} (CAM++'s shortest input)")
    if config.speaker is not None and not Path(config.speaker).exists():
        raise UserError(f"{config.speaker}: speaker checkpoint not found (a dv pretrain-speaker folder or campplus.pt)")
    if config.content == "units" and not Path(config.units).exists():
        raise UserError(f"{config.units}: units not found; give --units (a dv cluster folder) or --content text")
    for name in ("log_every", "sample_every", "checkpoint_every"):
        if getattr(config, name) < 1:
            raise UserError(f"{name} must be >= 1")


def make_plan(config: TrainJointConfig, resume_from: Path | None = None) -> Plan:
    """Read and check the manifest, units and speaker checkpoint; resolve the model configurations.

    Raises:
        UserError: no training utterances, an utterance without units, unit ids beyond the
            k-means size, a speaker checkpoint of the wrong kind, or unknown VITS settings.
    """
    manifest = Path(config.manifest)
    train = [u for u in read_manifest(manifest) if u.split != "heldout"]
    if not train:
        raise UserError(f"{manifest}: no utterances outside split=heldout to train on")
    source = _phoneme_source(manifest, train) if config.content == "text" else read_unit_source(config.units)
    missing = [u.id for u in train if u.id not in source.units]
    if missing:
        raise UserError(
            f"{source.path}: no units for utterance {missing[0]!r} of {manifest}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
            "run dv extract-units / dv cluster on this manifest"
        )
    largest = max((max(source.units[u.id], default=0) for u in train), default=0)
    smallest = min((min(source.units[u.id], default=0) for u in train), default=0)
    k = unit_vocabulary(source, largest, smallest)

    speakers = sorted({u.speaker for u in train})
    index = {s: i for i, s in enumerate(speakers)}
    if config.speaker_loss == "aam" and not config.freeze_speaker and len(speakers) < 2:
        raise UserError(f"{manifest}: --speaker-loss aam needs at least two training speakers")

    if resume_from is not None:
        state = load_checkpoint(resume_from, kind=TRAIN_KIND)
        vits_dict, speaker_config = dict(state["vits_config"]), dict(state["speaker_config"])
        speaker_init = {"model": {}, "model_config": speaker_config}  # the weights come from the checkpoint
    else:
        encoder = _speaker_encoder(config)
        speaker_init = {"model": encoder.state_dict(), "model_config": dataclasses.asdict(encoder.config)}
        overrides = {"n_units": k, "speaker_embedding_dim": encoder.embedding_size, **config.vits}
        try:
            vits_config = VitsConfig.preset(config.model, **overrides)
        except TypeError as err:
            raise UserError(f"vits: {err} (see dvcli/models/vits/config.py for the settings)") from None
        if vits_config.n_units != k or vits_config.speaker_embedding_dim != encoder.embedding_size:
            raise UserError(f"vits: n_units must be {k} and speaker_embedding_dim {encoder.embedding_size} here")
        vits_dict = dataclasses.asdict(vits_config)
    vits_config = VitsConfig(**vits_dict)
    rate, hop = vits_config.sample_rate, vits_config.hop_length

    examples, too_long, too_many = [], 0, 0
    for u in train:
        units = source.units[u.id]
        if config.dedup and config.content == "units":  # a phoneme repeated is pronounced twice
            units, _ = deduplicate(units)
        samples = round(u.duration * rate)
        tokens = len(units) * 2 + 1 if vits_config.add_blank else len(units)
        if u.duration > config.max_seconds:
            too_long += 1
        elif tokens > samples // hop or not units:
            too_many += 1
        else:
            examples.append(JointExample(u.id, u.audio, tuple(units), index[u.speaker], samples))
    if too_long:
        log.warning("skipping %d utterances longer than max_seconds=%g", too_long, config.max_seconds)
    if too_many:
        log.warning("skipping %d utterances with no units or more unit tokens than spectrogram frames", too_many)
    if len(examples) < config.batch_size:
        raise UserError(
            f"{manifest}: {len(examples)} usable utterances, fewer than batch_size {config.batch_size} (lower --set batch_size)"
        )
    check_readable(((e.id, e.audio) for e in examples), manifest)
    units_info = UnitInfo(
        k=k,
        frame_rate=source.frame_rate,
        kmeans_sha256=source.kmeans_sha256,
        content="phonemes" if config.content == "text" else "units",
    )
    return Plan(examples, speakers, vits_dict, speaker_init, units_info)


def _phoneme_source(manifest: Path, rows: list[Utterance]) -> UnitSource:
    """The manifest's text as espeak-ng phoneme ids, in the shape of a units file (k = the phoneme table)."""
    from dvcli.phonemes import phoneme_ids, vocabulary_size

    units = {u.id: phoneme_ids(u.text) for u in rows if u.text.strip()}
    if not units:
        raise UserError(f"{manifest}: --content text needs the utterances' text, and no training row has any")
    return UnitSource(path=manifest, units=units, k=vocabulary_size(), frame_rate=None, kmeans_sha256=None)


def _speaker_encoder(config: TrainJointConfig) -> SpeakerEncoder:
    if config.speaker is not None:
        return load_speaker_encoder(config.speaker)
    log.warning(
        "no --speaker checkpoint: starting from a randomly initialised CAM++ (%s); "
        "pretrain one with dv pretrain-speaker for real use",
        config.speaker_model,
    )
    torch.manual_seed(config.seed)
    return CAMPPlus(SPEAKER_PRESETS[config.speaker_model]())
