"""The trained DINO-VITS model: the file ``dv train-joint`` writes and ``dv synthesize`` reads.

One checkpoint, ``OUT/model.pt`` (``dv_kind`` = ``dino-vits``), holds everything inference needs:

- ``vits_config`` / ``generator``: the :class:`VitsConfig` as a dict and the generator's weights;
- ``speaker``: the jointly trained CAM++ (or the frozen BYOL-A encoder) as ``{"model": state dict, "model_config": dict}`` (the
  layout of ``dv pretrain-speaker``'s ``campplus.pt``, so :func:`load_speaker_encoder` reads it);
- ``units``: which units the generator reads (:class:`UnitInfo`), so a text-to-unit model trained on
  another k-means is refused;
- ``info``: free-form facts about the run (steps, speaker loss, ...).

The DINO head, the teacher and the discriminators are training state: they live in the run's
training checkpoints, never here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from dvcli.checkpoint import load_checkpoint, save_checkpoint
from dvcli.errors import UserError, path_error
from dvcli.models.vits import VitsConfig, VitsGenerator
from dvcli.speaker.encoder import SpeakerEncoder, SpeakerFrontend, load_speaker_encoder

JOINT_KIND = "dino-vits"
MODEL_FILE = "model.pt"
#: ``dv_kind`` of the training checkpoints ``dv train-joint`` writes (``checkpoints/``), not loadable as a model.
TRAIN_KIND = "train-joint"


@dataclasses.dataclass
class UnitInfo:
    """The unit vocabulary a generator reads."""

    k: int  # unit ids 0 .. k-1 (the k-means cluster count)
    frame_rate: float | None = None  # unit frames per second (50 for HuBERT and dv's MFCC)
    kmeans_sha256: str | None = None  # fingerprint of the k-means centroids, when known
    content: str = "units"  # units (dv cluster ids) or phonemes (espeak-ng ids of the text: dvcli.phonemes)


@dataclasses.dataclass
class JointModel:
    """A loaded joint model, in eval mode."""

    generator: VitsGenerator
    speaker: SpeakerFrontend
    units: UnitInfo
    info: dict[str, Any]
    path: Path

    @property
    def sample_rate(self) -> int:
        return self.generator.config.sample_rate

    def to(self, device: torch.device | str) -> JointModel:
        self.generator.to(device)
        self.speaker.to(device)
        return self


def save_joint(
    path: str | Path,
    generator: VitsGenerator,
    encoder: SpeakerEncoder,
    units: UnitInfo,
    **info: Any,
) -> None:
    """Write ``model.pt`` atomically (``path`` is the file, e.g. ``tmp / MODEL_FILE``)."""
    if generator.config.n_units != units.k:
        raise ValueError(f"the generator reads {generator.config.n_units} units, the unit info says {units.k}")
    payload = {
        "vits_config": dataclasses.asdict(generator.config),
        "generator": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
        "speaker": {
            "model": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
            "model_config": dataclasses.asdict(encoder.config),
        },
        "units": dataclasses.asdict(units),
        "info": info,
    }
    save_checkpoint(payload, path, kind=JOINT_KIND)


def load_joint(source: str | Path, *, map_location: str | torch.device = "cpu") -> JointModel:
    """Load a ``dv train-joint`` output folder (or its ``model.pt``), in eval mode.

    Raises:
        UserError: a missing folder or file, a checkpoint of another kind, or weights that do not
            fit their recorded configuration.
    """
    path = Path(source)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise path_error(path, f"no {MODEL_FILE} in this folder", "give a `dv train-joint` output folder")
        path = path / MODEL_FILE
    obj = load_checkpoint(path, kind=JOINT_KIND, map_location=map_location)
    try:
        config = VitsConfig(**obj["vits_config"])
        units = UnitInfo(**obj["units"])
        generator = VitsGenerator(config)
        generator.load_state_dict(obj["generator"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a usable dv train-joint model ({first}); train it again") from None
    speaker = SpeakerFrontend(load_speaker_encoder(obj["speaker"], map_location=map_location))
    return JointModel(generator.eval(), speaker.eval(), units, dict(obj.get("info", {})), path)
