"""VITS (Kim et al., 2021) reading discrete content units, conditioned on a speaker embedding.

Read top to bottom: :mod:`config` -> :mod:`spectral` -> :mod:`modules` -> :mod:`attention` ->
:mod:`text_encoder`, :mod:`posterior_encoder`, :mod:`flow`, :mod:`duration`, :mod:`decoder` ->
:mod:`model` (the generator) and :mod:`discriminators` -> :mod:`losses` -> :mod:`train_step`.
"""

from dvcli.models.vits.config import VitsConfig
from dvcli.models.vits.discriminators import VitsDiscriminator
from dvcli.models.vits.model import VitsGenerator, VitsOutput
from dvcli.models.vits.train_step import TrainStepConfig, VitsBatch, VitsTrainer

__all__ = [
    "TrainStepConfig",
    "VitsBatch",
    "VitsConfig",
    "VitsDiscriminator",
    "VitsGenerator",
    "VitsOutput",
    "VitsTrainer",
]
