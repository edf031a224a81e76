"""Unit sequences on disk: frame-level units and their run-length-collapsed ("deduplicated") form.

At 50 Hz a unit often repeats for several frames. VITS (train-joint) reads the frame-level units;
text-to-unit models read the collapsed sequence, and a duration model the run lengths. Files (all
``id`` TAB space-separated integers, one utterance per line, see :mod:`dvcli.manifest`):

- ``units.tsv``: one unit per 20 ms frame;
- ``units.dedup.tsv``: runs of a repeated unit collapsed to one;
- ``durations.tsv``: the length in frames of each run (same count as ``units.dedup.tsv``).

:func:`read_unit_source` reads a units file with what its ``dv cluster`` folder says about it (the
unit count ``k``, the frame rate, a fingerprint of the centroids), which every consumer of units
(train-joint, train-t2u, synthesize) records so that models trained on different k-means never meet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dvcli.errors import UserError
from dvcli.manifest import read_units, write_units

log = logging.getLogger(__name__)

UNITS_FILE = "units.tsv"
DEDUP_FILE = "units.dedup.tsv"
DURATIONS_FILE = "durations.tsv"


def deduplicate(units: Sequence[int] | np.ndarray) -> tuple[list[int], list[int]]:
    """Collapse runs: ``[5, 5, 7, 5] -> ([5, 7, 5], [2, 1, 1])``."""
    seq = np.asarray(units)
    if seq.size == 0:
        return [], []
    starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    lengths = np.diff(np.r_[starts, seq.size])
    return seq[starts].tolist(), lengths.tolist()


def write_unit_files(folder: Path, units: Mapping[str, Sequence[int] | np.ndarray], *, dedup: bool) -> list[str]:
    """Write ``units.tsv`` (and with ``dedup`` the collapsed units and durations); return the file names."""
    write_units(folder / UNITS_FILE, units)
    if not dedup:
        return [UNITS_FILE]
    collapsed, durations = {}, {}
    for uid, seq in units.items():
        collapsed[uid], durations[uid] = deduplicate(seq)
    write_units(folder / DEDUP_FILE, collapsed)
    write_units(folder / DURATIONS_FILE, durations)
    return [UNITS_FILE, DEDUP_FILE, DURATIONS_FILE]


@dataclasses.dataclass
class UnitSource:
    """A units file and what its folder says about it."""

    path: Path  # the units.tsv read
    units: dict[str, list[int]]  # utterance id -> frame-level (or already collapsed) units
    k: int | None  # unit vocabulary size from meta.json / config.yaml, when recorded
    frame_rate: float | None  # unit frames per second, when recorded
    kmeans_sha256: str | None  # sha256 of centroids.npy beside the units, when present


def read_unit_source(path: str | Path) -> UnitSource:
    """Read ``units.tsv`` (or a ``dv cluster`` folder holding one) and its folder's metadata.

    Raises:
        UserError: missing or malformed units file.
    """
    path = Path(path)
    file = path / UNITS_FILE if path.is_dir() else path
    units = read_units(file)
    folder = file.parent
    meta = _read_mapping(folder / "meta.json", json.loads)
    config = _read_mapping(folder / "config.yaml", yaml.safe_load)
    k = _first(int, meta, config, keys=("k", "n_clusters", "num_clusters", "clusters", "num_units"))
    frame_rate = _first(float, meta, config, keys=("frame_rate", "frames_per_second", "fps"))
    centroids = folder / "centroids.npy"
    sha = hashlib.sha256(centroids.read_bytes()).hexdigest() if centroids.is_file() else None
    if k is not None:
        for uid, seq in units.items():
            if seq and max(seq) >= k:
                raise UserError(
                    f"{file}: utterance '{uid}' has unit {max(seq)}, outside the k-means size {k} its "
                    f"folder records (units of another k-means model?)"
                )
    return UnitSource(path=file, units=units, k=k, frame_rate=frame_rate, kmeans_sha256=sha)


#: The most units dv infers from the ids alone (no ``k`` given or recorded); k-means models for
#: speech units use 50-2000. A larger id is a broken file far more often than a real unit.
MAX_INFERRED_UNITS = 65536


def unit_vocabulary(source: UnitSource, largest: int, smallest: int = 0, k: int = 0) -> int:
    """The number of units ``k``: given, else recorded beside the units, else the largest id + 1.

    ``largest``/``smallest``: the extreme unit ids of the utterances that will be used.

    Raises:
        UserError: a negative id; an id outside ``range(k)``; no ``k`` known and an id of
            :data:`MAX_INFERRED_UNITS` or more (names the units file and the fix).
    """
    if smallest < 0:
        raise UserError(f"{source.path}: negative unit id {smallest} (unit ids run from 0 to k-1)")
    size = k or source.k or 0
    if not size:
        if largest >= MAX_INFERRED_UNITS:
            raise UserError(
                f"{source.path}: unit id {largest}, and no meta.json with k beside the units "
                f"(more than {MAX_INFERRED_UNITS} units is not a k-means model of speech); "
                "fix the file, or put the dv cluster meta.json beside it (or pass --set k=K)"
            )
        size = largest + 1
        log.warning(
            "%s: no meta.json with k beside it; unit vocabulary taken as the largest unit + 1 = %d "
            "(pass --set k=K to match the other models)",
            source.path,
            size,
        )
    if largest >= size:
        raise UserError(
            f"{source.path}: unit id {largest} is outside the k-means size {size} "
            "(the units file and its k-means model disagree; pass --set k=K or recluster)"
        )
    return size


def _read_mapping(path: Path, parse: Any) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except Exception:  # a foreign or broken side file only costs us the metadata
        log.warning("could not read %s; ignoring it", path)
        return {}
    return data if isinstance(data, dict) else {}


def _first(cast: Any, *mappings: dict[str, Any], keys: Sequence[str]) -> Any:
    for mapping in mappings:
        for node in (mapping, mapping.get("kmeans") if isinstance(mapping.get("kmeans"), dict) else {}):
            for key in keys:
                value = node.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return cast(value)
    return None
