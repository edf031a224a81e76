"""The unit vocabulary of a text-to-unit model (``unit_vocab.json``): where the units sit among the
token ids, how many there are, and which k-means model they come from."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from dvcli.atomic import write_json
from dvcli.errors import UserError, path_error

log = logging.getLogger(__name__)

UNIT_VOCAB_FILE = "unit_vocab.json"


def unit_token(unit: int) -> str:
    """The token string of unit ``unit`` (``<u17>``)."""
    return f"<u{unit}>"


# -- the unit vocabulary --------------------------------------------------------------------------


@dataclasses.dataclass
class UnitVocab:
    """Where the units sit in the token vocabulary, and what they are (saved as ``unit_vocab.json``).

    ``synthesize`` compares ``k`` (and ``kmeans_sha256`` when both sides know it) with the joint
    model's, so a text-to-unit model never feeds units from another k-means model to VITS.
    """

    k: int  # number of units (k-means clusters); unit ids are 0..k-1
    offset: int  # token id of unit 0; unit u is token offset + u
    eos_id: int  # </s>: ends a unit sequence (and starts the decoder, as in BART)
    pad_id: int  # padding token
    dedup: bool = True  # trained on run-collapsed units, and output collapsed too
    frame_rate: float | None = None  # unit frames per second before deduplication (from the k-means meta)
    kmeans_sha256: str | None = None  # fingerprint of the k-means centroids the units came from
    units_per_token: float = 8.0  # generation cap: units per source token (from the training data)
    extra_units: int = 16  # generation cap: units allowed on top of units_per_token * tokens

    @property
    def target_ids(self) -> list[int]:
        """Token ids the decoder may emit: ``</s>`` first, then the units in order (label i <-> here i)."""
        return [self.eos_id] + list(range(self.offset, self.offset + self.k))

    def tokens_of(self, units: Sequence[int]) -> list[int]:
        """Unit ids -> token ids."""
        return [self.offset + u for u in units]

    def units_of(self, token_ids: Sequence[int]) -> list[int]:
        """Token ids -> unit ids, stopping at ``</s>`` and skipping anything that is not a unit."""
        units = []
        for t in token_ids:
            if t == self.eos_id:
                break
            if self.offset <= t < self.offset + self.k:
                units.append(t - self.offset)
        return units

    def max_units(self, source_tokens: int) -> int:
        """How many units beam search may generate for a source of ``source_tokens`` tokens."""
        return int(math.ceil(self.units_per_token * source_tokens)) + self.extra_units

    def check_compatible(self, k: int, kmeans_sha256: str | None = None, *, where: str = "the joint model") -> None:
        """Refuse to feed these units to a model trained on other units (``dv synthesize`` calls this).

        Raises:
            UserError: different unit counts, or different k-means models when both fingerprints are known.
        """
        if k != self.k:
            raise UserError(
                f"{where} reads {k} units but the text-to-unit model writes {self.k}: "
                "train both on the same dv cluster output"
            )
        if kmeans_sha256 and self.kmeans_sha256 and kmeans_sha256 != self.kmeans_sha256:
            raise UserError(
                f"{where} and the text-to-unit model were trained on units of different k-means "
                "models (centroids differ): train both on the same dv cluster output"
            )

    def save(self, folder: Path) -> None:
        write_json(Path(folder) / UNIT_VOCAB_FILE, dataclasses.asdict(self))

    @classmethod
    def load(cls, folder: Path) -> UnitVocab:
        """Read ``folder/unit_vocab.json``.

        Raises:
            UserError: the file is missing or malformed.
        """
        path = Path(folder) / UNIT_VOCAB_FILE
        if not path.is_file():
            raise path_error(
                folder, f"no {UNIT_VOCAB_FILE}: not a dv text-to-unit folder", "train one with dv train-t2u"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{key: value for key, value in data.items() if key in names})
        except (json.JSONDecodeError, TypeError) as err:
            raise path_error(path, f"unreadable unit vocabulary ({err})", "retrain with dv train-t2u") from None
