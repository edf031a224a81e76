"""Settings of ``dv train-joint`` and the resolved plan its training processes run
(:mod:`stages.train_joint`), apart so the loop (:mod:`stages.train_joint_loop`) imports them without
importing the stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from dvcli.augment.augmenter import AugmentConfig
from dvcli.config import StageConfig
from dvcli.dino import DinoConfig
from dvcli.joint.data import JointExample
from dvcli.joint.model import UnitInfo
from dvcli.ssl import SslConfig


@dataclasses.dataclass(kw_only=True)
class TrainJointConfig(StageConfig):
    """Settings of ``dv train-joint``."""

    manifest: Path = Path("data/manifest.tsv")  # from dv prepare; split=heldout rows are never trained on
    units: Path = Path("data/units")  # a dv cluster folder or a units.tsv with every training utterance
    # what VITS reads: content units (units), or espeak-ng phonemes of the manifest's text (text: the
    # paper's transcript arms, e.g. on a dv transcribe manifest; units is then not read)
    content: Literal["units", "text"] = "units"
    speaker: Path | None = None  # dv pretrain-speaker folder, campplus.pt or 3D-Speaker .bin; none = random CAM++
    out: Path = Path("runs/joint")  # output folder
    model: Literal["base", "tiny", "medium", "low"] = (
        "base"  # VITS preset (base: the paper's ~40M; medium, low: piper's)
    )
    vits: dict[str, Any] = dataclasses.field(
        default_factory=dict
    )  # VITS settings over the preset, e.g. {add_blank: true}
    speaker_model: Literal["campplus", "tiny"] = "campplus"  # CAM++ preset when no --speaker is given
    dedup: bool = True  # collapse repeated units (the duration predictor learns the run lengths)
    max_seconds: float = 15.0  # skip longer utterances (memory)
    phase1_steps: int = 95000  # steps training only the encoder's last layer (+ head) with VITS
    phase2_steps: int = 175000  # then steps training the whole encoder
    batch_size: int = 40  # utterances per step and process (paper: 80 on 2 GPUs)
    # the encoder's sidecar loss: dino (the paper), aam, none, or another self-supervised objective
    # (simclr, moco, byol, vicreg: dvcli.ssl, the seed's cross-loss ablation)
    speaker_loss: Literal["dino", "aam", "none", "simclr", "moco", "byol", "vicreg"] = "dino"
    speaker_loss_weight: float = 1.0  # lambda: total = VITS loss + lambda * sidecar loss
    ref_augment: bool = True  # noise/reverb-augment the reference that conditions VITS
    freeze_speaker: bool = False  # keep the encoder fixed (YourTTS-style frozen verifier; no sidecar)
    ref_seconds: float = 8.0  # longest reference crop fed to the encoder
    crop_seconds: float = 2.0  # length of the two sidecar crops (shorter utterances are tiled)
    dino: DinoConfig = dataclasses.field(default_factory=DinoConfig)  # head sizes, temperatures, EMA
    ssl: SslConfig = dataclasses.field(default_factory=SslConfig)  # simclr/moco/byol/vicreg projector and weights
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
class Plan:
    """Everything the training processes need, checked and resolved before any of them starts."""

    examples: list[JointExample]
    speakers: list[str]
    vits: dict[str, Any]  # VitsConfig as a dict
    speaker_init: dict[str, Any]  # {"model": state dict, "model_config": dict}
    units: UnitInfo
