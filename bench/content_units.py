"""Do the content units carry the words or the voice?  MFCC vs Whisper-encoder units on one corpus.

For each feature kind, the corpus goes through ``dv extract-units`` and ``dv cluster --k K --dedup``
(the stages' own ``run``), and the deduplicated units are scored three ways:

- cross-speaker distance: for every sentence that several speakers read, the edit distance between
  two speakers' unit sequences divided by the longer one's length, averaged over all speaker pairs
  and sentences (0 = every voice gives the same units; near 1 = nothing in common);
- the speaker-blind bound of ``bench/t2u_speaker_bound.py``: the lowest unit error rate a
  text-to-unit model without a speaker input can reach on the training speakers;
- speaker identification from units alone: each utterance's unit histogram against every speaker's
  mean histogram over the *other* sentences (cosine, nearest wins); chance = 1 / speakers.

    python bench/content_units.py                          # examples/toy, k=100, mfcc + whisper (full, trim)
    python bench/content_units.py --kinds mfcc whisper-trim --k 50 --threads 2

Results go to bench/results/content_units.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from t2u_speaker_bound import bounds, readings_by_sentence  # noqa: E402

from dvcli.manifest import read_manifest  # noqa: E402
from dvcli.metrics import edit_distance  # noqa: E402
from dvcli.text import normalize_text  # noqa: E402
from dvcli.units.sequences import deduplicate, read_unit_source  # noqa: E402

KINDS = {
    "mfcc": {"features": "mfcc"},
    "whisper-full": {"features": "whisper", "whisper_window": "full"},
    "whisper-trim": {"features": "whisper", "whisper_window": "trim"},
}


def cross_speaker_distance(manifest: Path, units: dict[str, list[int]]) -> float:
    """Mean over sentences and speaker pairs of d(a, b) / max(|a|, |b|), deduplicated units."""
    by_sentence: dict[str, dict[str, list[int]]] = collections.defaultdict(dict)
    for row in read_manifest(manifest):
        if row.id in units and normalize_text(row.text):
            by_sentence[normalize_text(row.text)][row.speaker] = deduplicate(units[row.id])[0]
    distances = [
        edit_distance(a, b) / max(len(a), len(b), 1)
        for readings in by_sentence.values()
        for a, b in itertools.combinations(readings.values(), 2)
    ]
    return float(np.mean(distances))


def speaker_id_accuracy(manifest: Path, units: dict[str, list[int]], k: int) -> float:
    """Nearest speaker-mean unit histogram (cosine), each speaker's mean over the other sentences."""
    rows = [r for r in read_manifest(manifest) if r.id in units]
    hist = {}
    for r in rows:
        h = np.bincount(np.asarray(units[r.id]), minlength=k).astype(np.float64)
        hist[r.id] = h / max(np.linalg.norm(h), 1e-9)
    speakers = sorted({r.speaker for r in rows})
    correct = 0
    for r in rows:
        text = normalize_text(r.text)
        means = []
        for s in speakers:
            others = [hist[o.id] for o in rows if o.speaker == s and normalize_text(o.text) != text]
            m = np.mean(others, axis=0)
            means.append(m / max(np.linalg.norm(m), 1e-9))
        correct += speakers[int(np.argmax(np.stack(means) @ hist[r.id]))] == r.speaker
    return correct / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT / "examples" / "toy")
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=["mfcc", "whisper-full", "whisper-trim"])
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="keep the stages' outputs here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from stages import cluster, extract_units, prepare

    work = args.work or Path(tempfile.mkdtemp(prefix="content-units-"))
    data = work / "data"
    if not (data / "manifest.tsv").is_file():
        prepare.run(prepare.PrepareConfig(source=args.corpus, out=data))
    manifest = data / "manifest.tsv"
    results = {}
    for kind in args.kinds:
        started = time.perf_counter()
        extract_units.run(
            extract_units.ExtractUnitsConfig(manifest=data, out=work / f"feats-{kind}", device="cpu", **KINDS[kind])
        )
        seconds = time.perf_counter() - started
        cluster.run(
            cluster.ClusterConfig(features=[work / f"feats-{kind}"], out=work / f"km-{kind}", k=args.k, device="cpu")
        )
        units = read_unit_source(work / f"km-{kind}").units
        bound = bounds(readings_by_sentence(manifest, units))
        results[kind] = {
            "extract_seconds": round(seconds, 1),
            "cross_speaker_distance": round(cross_speaker_distance(manifest, units), 3),
            "blind_bound_closest_pair": round(bound["closest_pair"][1], 3),
            "blind_bound_all_speakers": round(bound["all_speakers_medoid"], 3),
            "speaker_id_accuracy": round(speaker_id_accuracy(manifest, units, args.k), 3),
            "speakers": len({r.speaker for r in read_manifest(manifest)}),
        }
        print(kind, results[kind], flush=True)

    lines = [
        f"Corpus {args.corpus.name}, k={args.k}, deduplicated units, {args.threads} thread(s).",
        "",
        "| units | cross-speaker distance | blind bound, closest pair | blind bound, all training speakers "
        "| speaker ID from units | extraction |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        lines.append(
            f"| {kind} | {r['cross_speaker_distance']:.2f} | {100 * r['blind_bound_closest_pair']:.1f}% "
            f"| {100 * r['blind_bound_all_speakers']:.1f}% | {100 * r['speaker_id_accuracy']:.0f}% "
            f"(chance {100 / r['speakers']:.0f}%) | {r['extract_seconds']:.0f} s |"
        )
    table = "\n".join(lines)
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "content_units.json").write_text(
        json.dumps({"k": args.k, "threads": args.threads, "results": results}, indent=2) + "\n"
    )
    (out / "content_units.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
