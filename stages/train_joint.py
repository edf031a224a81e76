"""``dv train-joint``: VITS over content units, conditioned on a CAM++ trained jointly under DINO.

Each step (:func:`stages.train_joint_loop._step`):

1. a batch of (units, waveform) pairs from the length-bucketed sampler;
2. the **reference**: a random crop of each utterance (as long as the batch's shortest, at most
   ``ref_seconds``), noise/reverb-augmented unless ``ref_augment`` is off; its student embedding
   conditions VITS;
3. the **sidecar**: two ``crop_seconds`` crops of every utterance, each augmented independently;
   ``dino``: student (CAM++ + head) and EMA teacher see them, loss over both pairings
   (:mod:`dvcli.dino`); ``aam``: AAM-Softmax over the manifest's speakers; ``none``: nothing;
4. one VITS discriminator + generator update (:class:`VitsTrainer`) with ``lambda * sidecar`` added
   to the generator loss, so the encoder and head step with the generator (same clipping and
   non-finite guard); then the teacher's EMA update.

Phase 1 (``phase1_steps``) trains only the encoder's final dense layer and the head; phase 2
(``phase2_steps``) the whole encoder. The phase follows from the step number, so ``--resume`` lands
in the right one. ``freeze_speaker`` keeps the encoder fixed (the YourTTS-style baseline).

Outputs (``OUT/``): ``model.pt`` (generator + student encoder, :mod:`dvcli.joint`, read by ``dv
synthesize``), ``train.tsv`` (losses every ``log_every`` steps), ``checkpoints/`` (generator,
discriminators, encoder, head, teacher, optimisers: everything to resume), ``tensorboard/``. While
training they live in ``OUT.partial/``; ``resume`` continues from there.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import torch

from dvcli.atomic import output_lock
from dvcli.audio import check_readable
from dvcli.augment import AugmentConfig
from dvcli.checkpoint import load_checkpoint
from dvcli.config import StageConfig
from dvcli.dino import DinoConfig
from dvcli.distributed import launch
from dvcli.errors import UserError
from dvcli.joint import MODEL_FILE, TRAIN_KIND, UnitInfo, save_joint
from dvcli.joint_data import JointExample
from dvcli.manifest import read_manifest
from dvcli.models.campplus import PRESETS as SPEAKER_PRESETS
from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
from dvcli.models.vits import VitsConfig, VitsGenerator
from dvcli.outputs import add_meta, stage_output
from dvcli.speaker import MIN_SECONDS, load_speaker_encoder
from dvcli.training import (
    HistoryRow,
    check_output,
    check_unfinished,
    clean_up_unstarted,
    resume_point,
    start_work,
    work_folder,
    write_history,
)
from dvcli.units import deduplicate, read_unit_source

log = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class TrainJointConfig(StageConfig):
    """Settings of ``dv train-joint``."""

    manifest: Path = Path("data/manifest.tsv")  # from dv prepare; split=heldout rows are never trained on
    units: Path = Path("data/units")  # a dv cluster folder or a units.tsv with every training utterance
    speaker: Path | None = None  # dv pretrain-speaker folder, campplus.pt or 3D-Speaker .bin; none = random CAM++
    out: Path = Path("runs/joint")  # output folder
    model: Literal["base", "tiny"] = "base"  # VITS preset (base = the paper's ~40M generator)
    vits: dict[str, Any] = dataclasses.field(
        default_factory=dict
    )  # VITS settings over the preset, e.g. {add_blank: true}
    speaker_model: Literal["campplus", "tiny"] = "campplus"  # CAM++ preset when no --speaker is given
    dedup: bool = True  # collapse repeated units (the duration predictor learns the run lengths)
    max_seconds: float = 15.0  # skip longer utterances (memory)
    phase1_steps: int = 95000  # steps training only the encoder's last layer (+ head) with VITS
    phase2_steps: int = 175000  # then steps training the whole encoder
    batch_size: int = 40  # utterances per step and process (paper: 80 on 2 GPUs)
    speaker_loss: Literal["dino", "aam", "none"] = "dino"  # the encoder's sidecar loss (ablations: aam, none)
    speaker_loss_weight: float = 1.0  # lambda: total = VITS loss + lambda * sidecar loss
    ref_augment: bool = True  # noise/reverb-augment the reference that conditions VITS
    freeze_speaker: bool = False  # keep the encoder fixed (YourTTS-style frozen verifier; no sidecar)
    ref_seconds: float = 8.0  # longest reference crop fed to the encoder
    crop_seconds: float = 2.0  # length of the two sidecar crops (shorter utterances are tiled)
    dino: DinoConfig = dataclasses.field(default_factory=DinoConfig)  # head sizes, temperatures, EMA
    aam_scale: float = 32.0  # AAM-Softmax scale (speaker_loss=aam)
    aam_margin: float = 0.2  # AAM-Softmax margin (speaker_loss=aam)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)  # noise and reverberation
    learning_rate: float = 2e-4  # AdamW learning rate of generator and discriminators
    speaker_lr: float | None = None  # learning rate of the encoder and head (None = learning_rate)
    betas: tuple[float, float] = (0.8, 0.99)  # AdamW betas
    lr_decay: float = 0.999875  # learning-rate factor per epoch
    c_mel: float = 45.0  # weight of the mel L1 loss
    c_kl: float = 1.0  # weight of the KL loss
    grad_clip: float = 1000.0  # clip each optimiser's gradient norm (0 = no clipping)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # autocast; auto = bf16 on CUDA, fp32 on CPU
    gpus: int = 1  # data-parallel processes on this machine (gloo on CPU); torchrun overrides
    workers: int = 2  # data-loading processes (0 = load in the training process)
    threads: int = (
        0  # CPU threads per training process (0 = torch's default; 1 is fastest for tiny models on busy CPUs)
    )
    log_every: int = 50  # steps between loss rows (train.tsv, TensorBoard scalars)
    sample_every: int = 1000  # steps between TensorBoard mel/alignment images and audio
    checkpoint_every: int = 2000  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 3  # checkpoints kept
    resume: bool = False  # continue from the latest checkpoint in OUT.partial (or OUT/checkpoints)

    @property
    def steps(self) -> int:
        return self.phase1_steps + self.phase2_steps


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


@dataclasses.dataclass
class Plan:
    """Everything the training processes need, checked and resolved before any of them starts."""

    examples: list[JointExample]
    speakers: list[str]
    vits: dict[str, Any]  # VitsConfig as a dict
    speaker_init: dict[str, Any]  # {"model": state dict, "model_config": dict}
    units: UnitInfo


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
    generator.load_state_dict(trained["generator"])
    encoder = CAMPPlus(CAMPPlusConfig(**plan.speaker_init["model_config"]))
    encoder.load_state_dict(trained["encoder"])
    history, steps = trained["history"], trained["step"]
    parameters = {
        "generator": sum(p.numel() for p in generator.parameters()),
        "encoder": sum(p.numel() for p in encoder.parameters()),
    }
    info = {
        "steps": steps,
        "phase1_steps": config.phase1_steps,
        "phase2_steps": config.phase2_steps,
        "speaker_loss": "none" if config.freeze_speaker else config.speaker_loss,
        "ref_augment": config.ref_augment,
        "freeze_speaker": config.freeze_speaker,
        "dedup": config.dedup,
        "speakers": len(plan.speakers),
    }
    inputs = {"manifest": Path(config.manifest).resolve(), "units": Path(config.units).resolve()}
    if config.speaker is not None:
        inputs["speaker"] = Path(config.speaker).resolve()
    with stage_output(out, stage="train-joint", config=config, inputs=inputs) as tmp:
        save_joint(tmp / MODEL_FILE, generator, encoder, plan.units, **info)
        write_history(tmp / "train.tsv", history)
        first, last = first_last(history, "loss_mel")
        add_meta(
            tmp,
            parameters=parameters,
            utterances=len(plan.examples),
            speakers=len(plan.speakers),
            mel_l1_first=first,
            mel_l1_last=last,
            **{k: v for k, v in info.items() if k != "speakers"},
        )
    for name in ("checkpoints", "tensorboard"):
        if (work / name).is_dir():
            shutil.rmtree(out / name, ignore_errors=True)
            shutil.move(str(work / name), str(out / name))
    shutil.rmtree(work, ignore_errors=True)
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
    source = read_unit_source(config.units)
    missing = [u.id for u in train if u.id not in source.units]
    if missing:
        raise UserError(
            f"{source.path}: no units for utterance {missing[0]!r} of {manifest}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
            "run dv extract-units / dv cluster on this manifest"
        )
    largest = max((max(source.units[u.id], default=0) for u in train), default=0)
    k = source.k if source.k is not None else largest + 1
    if source.k is None:
        log.warning("%s: no k-means size recorded beside the units; assuming %d units (largest id + 1)", source.path, k)
    if largest >= k:
        raise UserError(
            f"{source.path}: unit id {largest} is outside the k-means size {k}; the units and meta.json disagree"
        )

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
        if config.dedup:
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
    units_info = UnitInfo(k=k, frame_rate=source.frame_rate, kmeans_sha256=source.kmeans_sha256)
    return Plan(examples, speakers, vits_dict, speaker_init, units_info)


def _speaker_encoder(config: TrainJointConfig) -> CAMPPlus:
    if config.speaker is not None:
        return load_speaker_encoder(config.speaker)
    log.warning(
        "no --speaker checkpoint: starting from a randomly initialised CAM++ (%s); "
        "pretrain one with dv pretrain-speaker for real use",
        config.speaker_model,
    )
    torch.manual_seed(config.seed)
    return CAMPPlus(SPEAKER_PRESETS[config.speaker_model]())
