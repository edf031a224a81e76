"""Settings of ``dv train-t2u`` (:mod:`stages.train_t2u`), apart so the loop can import them too."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from dvcli.config import StageConfig

#: The kind tag of train-t2u's training checkpoints.
CHECKPOINT_KIND = "t2u"
#: The unit error rate per evaluation (one row per checkpoint).
METRICS_FILE = "metrics.tsv"
#: The training loss every ``log_every`` steps.
HISTORY_FILE = "train.tsv"


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
    log_every: int = 50  # steps between loss rows (train.tsv)
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
