"""The listening-test (MOS) kit: items, balanced orders, attention checks, and scoring of ratings.

A kit is a folder with ``index.html`` (a static page: open it in a browser or put it on any web
server), ``audio/`` (copies of the clips under anonymous names, so the file names give no system
away), and ``items.tsv``, the key from anonymous item ids to systems and conditions that stays with
the experimenter and is read back when the ratings are scored.

Orders: the page holds ``lists`` precomputed orders; a rater gets one by ``?list=K`` in the URL or
by a hash of their rater id. Every list has the same number of clips from every (system,
condition) group, dealt out in rounds of one clip per group in a random group order, so no system
clusters at the start or end of a session; with ``per_group`` smaller than a group, successive
lists take successive slices of that group so that the lists together cover every clip.

Attention checks: clips of 1-5 beeps in place of speech; the instructions ask raters to answer
both questions with the number of beeps. Raters who miss checks are dropped when scoring.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from dvcli.audio import SAMPLE_RATE
from dvcli.errors import UserError
from dvcli.manifest import read_utf8

ITEMS_FILE = "items.tsv"
#: Columns of a ratings CSV as the page writes it.
RATING_COLUMNS = ("rater", "list", "position", "item", "naturalness", "similarity", "seconds")
CHECK_SYSTEM = "(attention check)"


@dataclasses.dataclass
class KitItem:
    """One clip of the listening test."""

    item: str  # anonymous id shown to the page, e.g. i0007 (c01 for checks)
    system: str
    condition: str
    clip_id: str  # the clip's id in its synth.tsv
    audio: str  # path inside the kit
    ref: str = ""  # reference audio of the target voice, inside the kit ("" = no similarity question)
    check: int = 0  # attention checks: the expected answer (number of beeps); 0 for real clips


@dataclasses.dataclass
class Rating:
    """One row of a ratings CSV."""

    rater: str
    item: str
    naturalness: float
    similarity: float  # NaN when the item had no similarity question
    source: Path


def beeps(count: int, sample_rate: int = SAMPLE_RATE, freq: float = 880.0) -> np.ndarray:
    """``count`` short beeps (0.2 s tone, 0.35 s gap) with silence around them: ``(T,)`` float32."""
    tone_t = np.arange(int(0.2 * sample_rate)) / sample_rate
    ramp = np.minimum(1.0, np.minimum(tone_t, tone_t[::-1]) / 0.01)  # 10 ms fades: no clicks
    tone = 0.3 * np.sin(2 * math.pi * freq * tone_t) * ramp
    gap = np.zeros(int(0.35 * sample_rate))
    parts = [np.zeros(int(0.5 * sample_rate))]
    for _ in range(count):
        parts += [tone, gap]
    parts.append(np.zeros(int(0.3 * sample_rate)))
    return np.concatenate(parts).astype(np.float32)


def build_orders(items: Sequence[KitItem], *, lists: int, per_group: int = 0, seed: int = 0) -> list[list[str]]:
    """Balanced, randomised presentation orders (lists of item ids), attention checks included.

    Args:
        items: real clips and checks (``check > 0``).
        lists: how many distinct orders to make.
        per_group: clips per (system, condition) group in each list; 0 = the whole group.
        seed: makes the orders reproducible.
    """
    groups: dict[tuple[str, str], list[KitItem]] = defaultdict(list)
    for it in items:
        if not it.check:
            groups[(it.system, it.condition)].append(it)
    checks = [it for it in items if it.check]
    # One fixed shuffle per group; lists take successive slices of it.
    decks = {key: random.Random(f"{seed}/{key}").sample(members, len(members)) for key, members in groups.items()}
    orders = []
    for k in range(lists):
        rng = random.Random(f"{seed}/list{k}")
        hands = []
        for deck in decks.values():
            n = len(deck) if per_group <= 0 else min(per_group, len(deck))
            start = (k * n) % len(deck)
            hand = [deck[(start + j) % len(deck)] for j in range(n)]
            rng.shuffle(hand)
            hands.append(hand)
        order: list[KitItem] = []
        for r in range(max((len(h) for h in hands), default=0)):
            round_ = [h[r] for h in hands if r < len(h)]
            rng.shuffle(round_)
            order += round_
        for check in rng.sample(checks, len(checks)):
            order.insert(rng.randint(1, max(1, len(order))), check)  # never first: let raters settle in
        orders.append([it.item for it in order])
    return orders


def write_items(path: Path, items: Sequence[KitItem]) -> None:
    """Write the kit's key, ``items.tsv``."""
    fields = [f.name for f in dataclasses.fields(KitItem)]
    lines = ["\t".join(fields)]
    for it in items:
        lines.append("\t".join(" ".join(str(getattr(it, f)).split()) for f in fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_items(kit: str | Path) -> dict[str, KitItem]:
    """Read a kit's ``items.tsv`` (give the kit folder or the file).

    Raises:
        UserError: missing or malformed key.
    """
    path = Path(kit)
    if path.is_dir():
        path = path / ITEMS_FILE
    if not path.is_file():
        raise UserError(f"{path}: kit key not found (give the folder written by `dv evaluate mos-kit`)")
    rows = list(csv.DictReader(io.StringIO(read_utf8(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    try:
        return {r["item"]: KitItem(**{**r, "check": int(r["check"])}) for r in rows}
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not a kit key written by `dv evaluate mos-kit`") from None


def read_ratings(paths: Sequence[str | Path], items: dict[str, KitItem]) -> list[Rating]:
    """Read ratings CSVs (files, or folders of ``*.csv``); a rater's later answer to an item wins.

    Raises:
        UserError: missing file, missing columns, an item the kit does not have, or a score outside 1-5.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.csv"))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p}: ratings file not found")
    if not files:
        given = ", ".join(str(p) for p in paths)
        raise UserError(f"{given}: no ratings CSV files found (give the files the listening page downloaded)")
    latest: dict[tuple[str, str], Rating] = {}
    for path in files:
        with io.StringIO(read_utf8(path), newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("rater", "item", "naturalness") if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: not a ratings CSV from the listening page (no column {', '.join(missing)})")
            for lineno, row in enumerate(reader, start=2):
                item = row["item"]
                if item not in items:
                    raise UserError(f"{path}:{lineno}: item '{item}' is not in this kit (ratings from another kit?)")
                nat = _score(row.get("naturalness"), path, lineno)
                sim = _score(row.get("similarity"), path, lineno)
                latest[(row["rater"], item)] = Rating(row["rater"], item, nat, sim, path)
    return list(latest.values())


def _score(text: str | None, path: Path, lineno: int) -> float:
    text = (text or "").strip()
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{path}:{lineno}: score '{text}' is not a number 1-5") from None
    if not 1 <= value <= 5:
        raise UserError(f"{path}:{lineno}: score {value:g} is outside the 1-5 scale")
    return value


def screen_raters(
    ratings: Sequence[Rating], items: dict[str, KitItem], min_accuracy: float = 1.0
) -> tuple[list[str], dict[str, str]]:
    """Split raters into kept and dropped by their attention checks.

    A check is passed when every answer given to it equals the number of beeps. A rater is kept
    when the fraction of checks passed is at least ``min_accuracy``; a rater who answered no check
    at all is dropped (nothing shows they listened), unless the kit has no checks.

    Returns:
        ``(kept raters, {dropped rater: reason})``.
    """
    kit_has_checks = any(it.check for it in items.values())
    by_rater: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_rater[r.rater].append(r)
    kept, dropped = [], {}
    for rater, rows in sorted(by_rater.items()):
        checks = [r for r in rows if items[r.item].check]
        if not kit_has_checks:
            kept.append(rater)
            continue
        if not checks:
            dropped[rater] = "answered no attention check"
            continue
        passed = sum(
            all(v == items[r.item].check for v in (r.naturalness, r.similarity) if not math.isnan(v)) for r in checks
        )
        if passed / len(checks) >= min_accuracy:
            kept.append(rater)
        else:
            dropped[rater] = f"passed {passed} of {len(checks)} attention checks"
    return kept, dropped


def rating_records(
    ratings: Sequence[Rating], items: dict[str, KitItem], raters: Iterable[str]
) -> list[dict[str, object]]:
    """Real-clip ratings of the given raters as report records (system, condition, naturalness, similarity)."""
    keep = set(raters)
    return [
        {
            "system": items[r.item].system,
            "condition": items[r.item].condition,
            "rater": r.rater,
            "item": r.item,
            "naturalness": r.naturalness,
            "similarity": r.similarity,
        }
        for r in ratings
        if r.rater in keep and not items[r.item].check
    ]
