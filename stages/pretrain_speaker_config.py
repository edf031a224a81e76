"""Settings of ``dv pretrain-speaker`` and its data split, apart so that both objectives' modules
(:mod:`stages.pretrain_speaker`, :mod:`stages.pretrain_speaker_byola`) import them without importing
each other."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from dvcli.augment.augmenter import AugmentConfig
from dvcli.config import StageConfig
from dvcli.manifest import Utterance


@dataclasses.dataclass(kw_only=True)
class ByolaTrainConfig:
    """BYOL-A's training settings (``byola.*``; defaults from BYOL-A v1's ``config.yaml`` and paper)."""

    segment_seconds: float = 0.95  # one random segment per utterance and step (BYOL-A's unit_sec)
    learning_rate: float = 3e-4  # Adam, constant
    ema_decay: float = 0.99  # the target network's moving-average decay
    hidden_dim: int = 4096  # projector / predictor hidden width
    projection_size: int = 256  # projector / predictor output
    mixup_ratio: float = 0.4  # the largest mixup weight
    mixup_memory: int = 2048  # earlier inputs mixup draws from
    virtual_crop: tuple[float, float] = (1.0, 1.5)  # random resize crop canvas, x (frequency, time)
    freq_scale: tuple[float, float] = (0.6, 1.5)  # crop height range, x the input's
    time_scale: tuple[float, float] = (0.6, 1.5)  # crop width range, x the input's
    norm_utterances: int = 1000  # training utterances whose log-mel gives the normalisation statistics
    pca_utterances: int = 4000  # training utterances whose representations fit the PCA projection


@dataclasses.dataclass(kw_only=True)
class PretrainSpeakerConfig(StageConfig):
    """Settings of ``dv pretrain-speaker``."""

    RENAMED = {
        "lr": "learning_rate",
        "scale": "aam_scale",
        "margin": "aam_margin",
        "noisy_snrs": "snrs",
        "amp": "precision",
    }

    manifest: Path = Path("data/manifest.tsv")  # from dv prepare; split=heldout rows are unseen speakers
    out: Path = Path("runs/campplus")  # output folder
    objective: Literal["aam", "byol-a"] = "aam"  # aam: CAM++ speaker classification; byol-a: BYOL-A, no labels
    model: Literal["campplus", "tiny", "byol-a", "byol-a-tiny"] | None = (
        None  # preset: campplus | tiny (aam), byol-a | byol-a-tiny (byol-a); None = the objective's full one
    )
    embedding_size: int = 192  # embedding dimension (3D-Speaker ships 192 and 512; byol-a: the PCA's size)
    init: Path | None = (
        None  # start from these weights (3D-Speaker campplus_*.bin or dv checkpoint; sets the architecture)
    )
    steps: int = 20000  # optimizer steps; 0 = only evaluate (the --init weights or a random init)
    batch_size: int = 64  # crops per step and process
    utterances_per_speaker: int = 2  # aam: crops per speaker in a batch (batches are speaker-balanced)
    crop_seconds: float = 3.0  # aam: length of the random training crops (byol-a: byola.segment_seconds)
    optimizer: Literal["sgd", "adamw"] = (
        "sgd"  # aam: SGD (momentum 0.9, Nesterov) as 3D-Speaker, or AdamW (byol-a: Adam)
    )
    learning_rate: float = 0.1  # aam: peak learning rate (byol-a: byola.learning_rate)
    weight_decay: float = 1e-4  # L2 / decoupled weight decay
    warmup: float = 0.05  # aam: fraction of the steps spent warming the learning rate up linearly
    min_lr_ratio: float = 0.005  # final learning rate of the cosine decay, relative to the peak
    aam_scale: float = 32.0  # AAM-Softmax logit scale
    aam_margin: float = 0.2  # final AAM-Softmax margin (radians)
    margin_ramp: tuple[float, float] = (0.15, 0.35)  # fractions of the steps where the margin rises from 0
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)  # noise and reverberation (aam)
    byola: ByolaTrainConfig = dataclasses.field(default_factory=ByolaTrainConfig)  # objective byol-a
    eval_utterances: int = 4  # utterances per training speaker held out for the seen-speaker trials
    eval_speakers: int = 200  # at most this many training speakers in the seen-speaker trials
    max_trials: int = 20000  # at most this many trials per list (all target pairs first)
    trials: Path | None = None  # an extra trial list to score (dv's trial TSV: audio paths or manifest ids)
    snrs: tuple[float, ...] = (10.0, 5.0, 0.0)  # SNRs (dB) of the noisy evaluation conditions
    export_embeddings: bool = True  # write embeddings.npy + embeddings.tsv for every manifest utterance
    gpus: int = 1  # data-parallel processes on this machine (gloo on CPU); torchrun overrides
    workers: int = 2  # data-loading processes (0 = load in the training process)
    threads: int = (
        0  # CPU threads per training process (0 = torch's default; 1 is fastest for tiny models on busy CPUs)
    )
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # autocast; auto = bf16 on CUDA, fp32 on CPU
    log_every: int = 10  # steps between loss lines in TensorBoard and train.tsv
    checkpoint_every: int = 1000  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 3  # checkpoints kept (older ones are deleted)
    resume: bool = False  # continue from the latest checkpoint of OUT.partial (or OUT/checkpoints)


@dataclasses.dataclass
class Split:
    """Which utterances train, which evaluate."""

    train: list[Utterance]
    seen: list[Utterance]  # held-out utterances of training speakers
    unseen: list[Utterance]  # utterances of held-out speakers
    speakers: list[str]  # training speakers; label i = speakers[i]
