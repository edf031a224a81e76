"""Unit sequences on disk: frame-level units and their run-length-collapsed ("deduplicated") form.

At 50 Hz a unit often repeats for several frames. VITS (train-joint) reads the frame-level units;
text-to-unit models read the collapsed sequence, and a duration model the run lengths. Files (all
``id`` TAB space-separated integers, one utterance per line, see :mod:`dvcli.manifest`):

- ``units.tsv``: one unit per 20 ms frame;
- ``units.dedup.tsv``: runs of a repeated unit collapsed to one;
- ``durations.tsv``: the length in frames of each run (same count as ``units.dedup.tsv``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dvcli.manifest import write_units

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
