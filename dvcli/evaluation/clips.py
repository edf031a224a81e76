"""The rows ``dv evaluate`` scores: one synthesized (or real) clip each, grouped by system and condition.

A *system* is one table of clips. Two kinds of table are read:

- ``synth.tsv`` from ``dv synthesize``: header, columns ``id``, ``out`` (the synthesized audio),
  ``text`` (what it should say), ``ref`` (the reference clip it cloned), ``condition``
  (``clean``/``noisy``...), and optionally ``speaker``, ``noise``, ``snr``, ``ref_clean`` (the clean
  original of a noisy reference: SECS is then measured against it) and anything else (kept).
- a ``manifest.tsv`` (``id``, ``audio``, ``speaker``, ``duration``, ``text``): real recordings as a
  *ground-truth* system. Each clip's reference is another utterance of the same speaker, so SECS of
  ground truth is the same-speaker similarity a perfect clone would reach, and CER the recogniser's
  floor on real speech.

Paths are relative to the table's folder or absolute. The condition a clip is grouped under is
``condition`` plus ``noise`` and ``snr`` when present: ``noisy babble 5 dB``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from dvcli.errors import UserError
from dvcli.manifest import read_manifest, read_utf8

SYNTH_FILE = "synth.tsv"
GROUND_TRUTH = "ground truth"


@dataclasses.dataclass
class Clip:
    """One clip to score."""

    system: str  # the system (table) it comes from
    id: str
    audio: Path  # the speech being scored
    text: str = ""  # what it should say ("" = no CER for this clip)
    ref: Path | None = None  # the reference clip the system was given
    target: Path | None = None  # real audio of the target voice for SECS (default: ref)
    speaker: str = ""
    condition: str = "all"  # clean / noisy / ...
    noise: str = ""  # noise type, when the table says
    snr: float | None = None  # reference SNR in dB, when the table says
    extra: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def group(self) -> str:
        """The condition label this clip is reported under, e.g. ``noisy babble 5 dB``."""
        parts = [self.condition or "all"]
        if self.noise:
            parts.append(self.noise)
        if self.snr is not None:
            parts.append(f"{self.snr:g} dB")
        return " ".join(parts)


def condition_order(clips: Sequence[Clip]) -> list[str]:
    """Condition labels in reading order: clean first, then by name, noise type and falling SNR."""
    keys: dict[str, tuple[object, ...]] = {}
    for c in clips:
        keys[c.group] = (
            c.condition != "clean",
            c.condition,
            c.noise,
            -(c.snr if c.snr is not None else math.inf),
        )
    return sorted(keys, key=lambda g: keys[g])


def system_order(clips: Sequence[Clip]) -> list[str]:
    """Systems in the order given, ground truth first (it is the reference row of the table)."""
    names = list(dict.fromkeys(c.system for c in clips))
    return sorted(names, key=lambda n: n != GROUND_TRUTH)


def read_system(path: str | Path, name: str | None = None, split: str | None = None) -> list[Clip]:
    """Read one system's clips from a ``synth.tsv`` (or a folder holding one) or a ``manifest.tsv``.

    Args:
        path: the table, or a folder with ``synth.tsv`` (or ``manifest.tsv``) in it.
        name: the system's name (default: the table's folder name; ``ground truth`` for a manifest).
        split: for a manifest, keep only this split (e.g. ``heldout``).

    Raises:
        UserError: missing table, missing columns, empty table, duplicate ids.
    """
    path = Path(path)
    if path.is_dir():
        for candidate in (SYNTH_FILE, "manifest.tsv"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise UserError(f"{path}: no {SYNTH_FILE} or manifest.tsv in this folder (give the table's path)")
    if not path.is_file():
        raise UserError(f"{path}: table not found (expected a synth.tsv from `dv synthesize` or a manifest.tsv)")
    header = read_utf8(path).partition("\n")[0].rstrip("\r").split("\t")
    if "out" in header:
        return _read_synth(path, name or path.resolve().parent.name)
    if "audio" in header:
        return ground_truth_clips(path, name=name or GROUND_TRUTH, split=split)
    raise UserError(f"{path}: header has neither an 'out' column (synth.tsv) nor an 'audio' column (manifest.tsv)")


def gather_clips(
    systems: Sequence[str | Path],
    names: Sequence[str] = (),
    ground_truth: str | Path | None = None,
    split: str = "",
    max_clips: int = 0,
) -> list[Clip]:
    """The clips of several systems (and optionally a manifest's recordings as ``ground truth``).

    Args:
        systems: ``synth.tsv`` files or folders (manifests are read as ground truth).
        names: one name per system, or empty for the tables' folder names.
        ground_truth: a manifest scored as the ``ground truth`` system.
        split: for manifests, keep only this split.
        max_clips: keep the first N clips of each system (0 = all).

    Raises:
        UserError: nothing to read, a name count that does not match, two systems with one name.
    """
    if not systems and not ground_truth:
        raise UserError("no systems given (pass synth.tsv files, or --ground-truth MANIFEST)")
    if names and len(names) != len(systems):
        raise UserError(f"--name given {len(names)} times for {len(systems)} systems (give one per system)")
    tables: list[list[Clip]] = []
    if ground_truth:
        tables.append(ground_truth_clips(ground_truth, split=split or None))
    seen = {t[0].system for t in tables}
    for i, path in enumerate(systems):
        rows = read_system(path, names[i] if names else None, split=split or None)
        if rows[0].system in seen:
            raise UserError(f"{path}: a second system named '{rows[0].system}' (give each one a --name)")
        seen.add(rows[0].system)
        tables.append(rows)
    return [c for rows in tables for c in (rows[:max_clips] if max_clips > 0 else rows)]


def ground_truth_clips(manifest: str | Path, *, name: str = GROUND_TRUTH, split: str | None = None) -> list[Clip]:
    """Real recordings of a manifest as a system: each clip's reference is the next utterance of its speaker.

    Speakers with one utterance get no reference (their SECS is left out). Condition: the manifest's
    ``condition`` column, else ``clean``.

    Raises:
        UserError: unreadable manifest, or no utterance in ``split``.
    """
    rows = read_manifest(manifest)
    if split:
        rows = [u for u in rows if u.split == split]
        if not rows:
            raise UserError(f"{manifest}: no utterance has split '{split}' (check the manifest's split column)")
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(rows):
        by_speaker[u.speaker].append(i)
    clips = []
    for i, u in enumerate(rows):
        mates = by_speaker[u.speaker]
        ref = rows[mates[(mates.index(i) + 1) % len(mates)]].audio if len(mates) > 1 else None
        clips.append(
            Clip(
                system=name,
                id=u.id,
                audio=u.audio,
                text=u.text,
                ref=ref,
                target=ref,
                speaker=u.speaker,
                condition=u.condition or "clean",
                extra=dict(u.extra),
            )
        )
    return clips


_SYNTH_KNOWN = {"id", "out", "text", "ref", "ref_clean", "condition", "speaker", "noise", "snr", "denoise"}


def _read_synth(path: Path, name: str) -> list[Clip]:
    base = path.parent.resolve()
    rows = list(csv.DictReader(io.StringIO(read_utf8(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise UserError(f"{path}: table has a header but no rows")
    clips: list[Clip] = []
    seen: set[str] = set()
    for lineno, row in enumerate(rows, start=2):
        uid = (row.get("id") or "").strip()
        out = (row.get("out") or "").strip()
        if not uid or not out:
            raise UserError(f"{path}:{lineno}: empty 'id' or 'out' field")
        if uid in seen:
            raise UserError(f"{path}:{lineno}: duplicate id '{uid}'")
        seen.add(uid)
        snr_text = (row.get("snr") or "").strip()
        try:
            snr = float(snr_text) if snr_text else None
        except ValueError:
            raise UserError(f"{path}:{lineno}: snr '{snr_text}' is not a number (dB)") from None
        ref = _resolve(base, row.get("ref"))
        denoise = (row.get("denoise") or "").strip()
        clips.append(
            Clip(
                system=f"{name} + {denoise}" if denoise and denoise != "none" else name,
                id=uid,
                audio=_resolve(base, out) or base / out,
                text=row.get("text") or "",
                ref=ref,
                target=_resolve(base, row.get("ref_clean")) or ref,
                speaker=row.get("speaker") or "",
                condition=(row.get("condition") or "").strip() or "all",
                noise=(row.get("noise") or "").strip(),
                snr=snr,
                extra={k: v or "" for k, v in row.items() if k not in _SYNTH_KNOWN and k is not None},
            )
        )
    return clips


def _resolve(base: Path, value: str | None) -> Path | None:
    value = (value or "").strip()
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else base / p


def write_synth_table(path: str | Path, clips: Sequence[Clip]) -> None:
    """Write clips as a ``synth.tsv`` (absolute paths); the inverse of :func:`read_system` for tests and tools."""
    from dvcli.atomic import atomic_write_text

    extras: list[str] = []
    for c in clips:
        extras += [k for k in c.extra if k not in extras]
    header = ["id", "text", "ref", "ref_clean", "speaker", "condition", "noise", "snr", "out", *extras]
    lines = ["\t".join(header)]
    for c in clips:
        cells = [
            c.id,
            c.text,
            str(c.ref or ""),
            str(c.target or "") if c.target != c.ref else "",
            c.speaker,
            c.condition,
            c.noise,
            "" if c.snr is None else f"{c.snr:g}",
            str(c.audio),
            *(c.extra.get(k, "") for k in extras),
        ]
        lines.append("\t".join(" ".join(str(x).split()) for x in cells))
    atomic_write_text(path, "\n".join(lines) + "\n")
