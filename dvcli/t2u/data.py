"""Training pairs for text-to-unit: manifest text matched with units, split by sentence, batched.

The units come from ``dv cluster`` (``units.tsv`` of frame-level units, 50 per second for HuBERT)
or any ``units.tsv``, read by :func:`dvcli.units.read_unit_source`; the k-means folder's
``meta.json`` says how many units there are. Runs of a
repeated unit are collapsed here (``dedup``) whatever the file holds, so the model always learns the
sequences that train-joint consumes.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import torch

from dvcli.errors import path_error
from dvcli.manifest import Utterance
from dvcli.t2u.inference import unreadable_characters
from dvcli.t2u.vocab import UnitVocab
from dvcli.text import normalize_text
from dvcli.units.sequences import UnitSource, deduplicate, unit_vocabulary

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclasses.dataclass
class Example:
    """One training pair."""

    id: str
    speaker: str
    text: str  # normalised text
    units: list[int]  # unit ids (collapsed when dedup)


@dataclasses.dataclass
class PairCounts:
    """What happened to the manifest's rows."""

    used: int = 0
    empty_text: int = 0  # no text, or nothing left after normalisation: skipped
    empty_units: int = 0  # a units line with no units: skipped
    other_speakers: int = 0  # held-out speakers, or not among the requested speakers
    unreadable_text: int = 0  # used rows that lost characters the normaliser cannot read (warned)


def pair_examples(
    rows: Sequence[Utterance],
    source: UnitSource,
    *,
    manifest: Path,
    dedup: bool = True,
    speakers: Sequence[str] = (),
) -> tuple[list[Example], PairCounts]:
    """Match manifest rows with their units.

    Rows of ``heldout`` speakers (the ``split`` column) are left for evaluation; with ``speakers``
    only those speakers are used. Rows with empty text or empty units are skipped and counted.
    Characters the normaliser cannot read (Cyrillic, emoji...) are dropped with one warning.

    Raises:
        UserError: a used row has no units (names the first such id), or no pair is left.
    """
    counts = PairCounts()
    examples: list[Example] = []
    wanted = set(speakers)
    dropped: list[str] = []
    for row in rows:
        if row.split == "heldout" or (wanted and row.speaker not in wanted):
            counts.other_speakers += 1
            continue
        text = normalize_text(row.text)
        if not text:
            counts.empty_text += 1
            continue
        if row.id not in source.units:
            raise path_error(
                source.path,
                f"no units for utterance '{row.id}' of {manifest}",
                "the units file does not match the manifest; run dv cluster on this manifest's features",
            )
        units = source.units[row.id]
        if dedup:
            units = deduplicate(units)[0]
        if not units:
            counts.empty_units += 1
            continue
        unreadable = unreadable_characters(row.text)
        if unreadable:
            counts.unreadable_text += 1
            dropped += unreadable
        examples.append(Example(row.id, row.speaker, text, units))
    counts.used = len(examples)
    if dropped:
        log.warning(
            "%s: dropped characters the English normaliser cannot read from %d row(s): %r",
            manifest,
            counts.unreadable_text,
            "".join(dict.fromkeys(dropped))[:20],
        )
    if wanted and not any(row.speaker in wanted for row in rows):
        raise path_error(manifest, f"none of the speakers {sorted(wanted)} is in the manifest", "check --set speakers")
    if not examples:
        raise path_error(
            manifest,
            f"no usable text-unit pairs ({counts.empty_text} rows with empty text, {counts.empty_units} with empty "
            f"units, {counts.other_speakers} of held-out or unselected speakers)",
            "text-to-unit training needs transcribed utterances",
        )
    return examples, counts


def unit_vocabulary_size(examples: Sequence[Example], source: UnitSource, k: int = 0) -> int:
    """The number of units of ``examples``' units (:func:`dvcli.units.unit_vocabulary`).

    Raises:
        UserError: as :func:`~dvcli.units.unit_vocabulary`.
    """
    largest = max(max(e.units) for e in examples)
    smallest = min(min(e.units) for e in examples)
    return unit_vocabulary(source, largest, smallest, k)


def split_by_sentence(
    examples: Sequence[Example], valid_fraction: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Hold out whole sentences (every speaker's reading of them), so validation text is unseen text.

    At least one sentence is held out when ``valid_fraction > 0`` and there are two or more.
    """
    sentences = sorted({e.text for e in examples})
    count = round(valid_fraction * len(sentences))
    if valid_fraction > 0 and len(sentences) > 1:
        count = min(max(count, 1), len(sentences) - 1)
    held = set(random.Random(seed).sample(sentences, count)) if count else set()
    return [e for e in examples if e.text not in held], [e for e in examples if e.text in held]


def generation_caps(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> tuple[float, int]:
    """``(units_per_token, extra_units)`` for :meth:`UnitVocab.max_units`, from the training pairs.

    Generous (1.5x the largest ratio seen) so a correct output is never cut, but finite so a model
    that fails to stop ends quickly.
    """
    ratio = max(len(t) / max(1, len(s)) for s, t in zip(sources, targets))
    return round(1.5 * ratio, 3), 16


@dataclasses.dataclass
class Batch:
    """Padded tensors for one step (token ids in the shared vocabulary)."""

    input_ids: torch.Tensor  # (B, S) source tokens, padded
    attention_mask: torch.Tensor  # (B, S) 1 = token
    decoder_input_ids: torch.Tensor  # (B, T) </s> then the unit tokens
    decoder_attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T) index into vocab.target_ids (0 = </s>, 1 + u = unit u); -100 = padding

    def to(self, device: torch.device) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


def collate(sources: Sequence[Sequence[int]], units: Sequence[Sequence[int]], vocab: UnitVocab) -> Batch:
    """Pad a batch; targets are ``units </s>``, the decoder reads ``</s> units`` (teacher forcing)."""
    batch = len(sources)
    width = max(len(s) for s in sources)
    length = max(len(u) for u in units) + 1
    input_ids = torch.full((batch, width), vocab.pad_id, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    decoder_ids = torch.full((batch, length), vocab.pad_id, dtype=torch.long)
    decoder_attention = torch.zeros((batch, length), dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    for row, (src, seq) in enumerate(zip(sources, units)):
        input_ids[row, : len(src)] = torch.tensor(src)
        attention[row, : len(src)] = 1
        tokens = vocab.tokens_of(seq)
        decoder_ids[row, : len(seq) + 1] = torch.tensor([vocab.eos_id] + tokens)
        decoder_attention[row, : len(seq) + 1] = 1
        labels[row, : len(seq) + 1] = torch.tensor([1 + u for u in seq] + [0])
    return Batch(input_ids, attention, decoder_ids, decoder_attention, labels)
