"""How low can a text-to-unit model's unit error rate go on a multi-speaker corpus?

The model has no speaker input, so when speakers read the same sentence with different units it can
give only one answer h for all of them. For two speakers a and b, d(a, h) + d(b, h) >= d(a, b)
(the triangle inequality of the edit distance), so no model scores below d(a, b) / (|a| + |b|) on
that pair; answering with one speaker's own sequence reaches exactly that. For more speakers the
medoid (the speaker sequence closest to the others) is an upper bound on the best possible answer.

    python bench/t2u_speaker_bound.py data/toy/manifest.tsv data/km

Uses deduplicated units and the speakers not marked ``heldout``, as ``dv train-t2u`` does.
"""

from __future__ import annotations

import argparse
import collections
import itertools
from pathlib import Path

from dvcli.manifest import read_manifest
from dvcli.metrics import edit_distance
from dvcli.text import normalize_text
from dvcli.units.sequences import deduplicate, read_unit_source


def readings_by_sentence(manifest: Path, units: dict[str, list[int]]) -> dict[str, dict[str, list[int]]]:
    """``{normalised sentence: {speaker: deduplicated units}}`` over the speakers not marked heldout."""
    readings: dict[str, dict[str, list[int]]] = collections.defaultdict(dict)
    for row in read_manifest(manifest):
        if row.split != "heldout" and row.id in units and normalize_text(row.text):
            readings[normalize_text(row.text)][row.speaker] = deduplicate(units[row.id])[0]
    return readings


def medoid_uer(readings: dict[str, dict[str, list[int]]], group: tuple[str, ...]) -> float:
    """The unit error rate of answering each sentence with the group's medoid reading (a bound)."""
    errors = reference = 0
    for by_speaker in readings.values():
        seqs = [by_speaker[s] for s in group if s in by_speaker]
        if len(seqs) < len(group):
            continue  # only sentences that every speaker of the group read
        errors += min(sum(edit_distance(r, h) for r in seqs) for h in seqs)
        reference += sum(len(r) for r in seqs)
    return errors / max(1, reference)


def bounds(readings: dict[str, dict[str, list[int]]]) -> dict[str, object]:
    """Closest and farthest speaker pair, and the all-speaker medoid bound."""
    speakers = sorted({s for by_speaker in readings.values() for s in by_speaker})
    pairs = sorted((medoid_uer(readings, pair), pair) for pair in itertools.combinations(speakers, 2))
    return {
        "sentences": len(readings),
        "speakers": speakers,
        "closest_pair": (pairs[0][1], pairs[0][0]) if pairs else None,
        "farthest_pair": (pairs[-1][1], pairs[-1][0]) if pairs else None,
        "all_speakers_medoid": medoid_uer(readings, tuple(speakers)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("units", type=Path, help="units.tsv or a dv cluster folder")
    args = parser.parse_args()
    found = bounds(readings_by_sentence(args.manifest, read_unit_source(args.units).units))
    print(f"{found['sentences']} sentences, {len(found['speakers'])} speakers")
    print("one speaker: 0% (a model can memorise every sentence)")
    if found["closest_pair"]:
        (near, near_uer), (far, far_uer) = found["closest_pair"], found["farthest_pair"]
        print(
            f"two speakers, lowest possible UER: {100 * near_uer:.1f}% (closest pair {near}), "
            f"{100 * far_uer:.1f}% (farthest pair {far})"
        )
        print(f"all {len(found['speakers'])} speakers, medoid answer: {100 * found['all_speakers_medoid']:.1f}%")


if __name__ == "__main__":
    main()
