"""Can a trained joint model speak?  Resynthesis from ground-truth units, scored by Whisper.

Every chosen utterance is synthesised from its own units (``dv cluster``'s labels, no text-to-unit
model involved) with its own recording as the reference, then ``dv evaluate run`` transcribes the
clips (Whisper base by default) and scores CER against the transcript; the same utterances'
recordings are scored beside them. This is the first target of the "dv speaks" issue and the
quantity to plot against training steps.

    python bench/resynthesis.py runs/joint data/toy/manifest.tsv data/units -o runs/resynth
    python bench/resynthesis.py runs/joint data/toy/manifest.tsv data/units -o runs/resynth --split heldout

Prints the CER of the resynthesised clips and of the recordings, and appends a row (model, steps,
CER mean and median) to OUT/../resynthesis.tsv so rounds of training build a learning curve.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvcli.manifest import read_manifest, write_manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="dv train-joint output folder")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("units", type=Path, help="dv cluster folder (or units.tsv) with these utterances' units")
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--split", default="", help="only rows of this split (default: every row not held out)")
    parser.add_argument("--per-speaker", type=int, default=1, help="utterances per speaker")
    parser.add_argument("--asr", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from stages import evaluate, synthesize

    torch.set_num_threads(args.threads)
    rows = [r for r in read_manifest(args.manifest) if (r.split == args.split if args.split else r.split != "heldout")]
    # Evenly spaced through each speaker's utterances, offset per speaker: different sentences.
    by_speaker: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: r.id):
        if r.text.strip():
            by_speaker.setdefault(r.speaker, []).append(r)
    chosen = []
    for number, speaker in enumerate(sorted(by_speaker)):
        own = by_speaker[speaker]
        step = max(1, len(own) // args.per_speaker)
        chosen += [own[(number + i * step) % len(own)] for i in range(min(args.per_speaker, len(own)))]
    args.out.mkdir(parents=True, exist_ok=True)
    batch = args.out.parent / f"{args.out.name}.batch.tsv"
    with batch.open("w", encoding="utf-8") as f:
        f.write("id\ttext\tref\tspeaker\tcondition\n")
        for r in chosen:
            f.write(f"{r.id}\t{r.text}\t{Path(r.audio).resolve()}\t{r.speaker}\tresynthesis\n")
    units = args.units / "units.tsv" if args.units.is_dir() else args.units
    synth = args.out / "synth"
    synthesize.run(
        synthesize.SynthesizeConfig(
            model=args.model, out=synth, batch=batch, units=str(units), device="cpu", noise_scale=0.667
        )
    )
    gt = args.out / "ground_truth.tsv"
    write_manifest(gt, chosen)  # the recordings of the same utterances, scored beside the resynthesis
    result = evaluate.run(
        evaluate.EvaluateConfig(
            systems=[synth / "synth.tsv"],
            names=["resynthesis"],
            ground_truth=gt,
            out=args.out / "report",
            metrics=["cer"],
            asr=args.asr,
            plots=False,
            device="cpu",
        )
    )
    cer = {g.system: g.stats["cer"] for g in result.groups}
    report = json.loads((args.out / "report" / "report.json").read_text())
    # Whisper invents sentences from babble ("that that that ..."), so a clip's CER can pass 100%:
    # the median is the steadier figure while the output is still far from speech.
    with (args.out / "report" / "clips.tsv").open(encoding="utf-8") as f:
        clips = [r for r in csv.DictReader(f, delimiter="\t") if r["system"] == "resynthesis"]
    median = statistics.median(float(r["cer"]) for r in clips)
    steps = json.loads((Path(args.model) / "meta.json").read_text()).get("steps")
    line = (
        f"{args.model}\t{steps}\t{100 * cer['resynthesis']['mean']:.1f}\t{100 * median:.1f}\t"
        f"{100 * cer['ground truth']['mean']:.1f}\t{len(chosen)}\t{report['asr']}\n"
    )
    curve = args.out.parent / "resynthesis.tsv"
    if not curve.exists():
        curve.write_text("model\tsteps\tcer_resynthesis\tcer_resynthesis_median\tcer_recordings\tclips\tasr\n")
    with curve.open("a") as f:
        f.write(line)
    print(
        f"resynthesis CER {100 * cer['resynthesis']['mean']:.1f}% (median {100 * median:.1f}%; recordings "
        f"{100 * cer['ground truth']['mean']:.1f}%), {len(chosen)} clips, steps {steps}, {report['asr']}"
    )


if __name__ == "__main__":
    main()
