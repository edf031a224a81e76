"""Text-to-unit speed: training steps per second and beam-search seconds per sentence.

    python bench/t2u_speed.py                      # trains a tiny model on pseudo units first
    python bench/t2u_speed.py --model runs/t2u     # times an existing dv train-t2u folder

Beam search is timed for beams 1 and 5, one sentence at a time (what a user typing a sentence
waits for) and in batches of 16 (dv synthesize on a TSV); ratios are against greedy decoding of the
same sentences in the same run, which stay meaningful on a busy machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from dvcli.t2u.inference import TextToUnit
from dvcli.testing import make_sentences, make_t2u_data
from stages.train_t2u import TrainT2UConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a dv train-t2u output folder (default: train a tiny one)")
    parser.add_argument("--sentences", type=int, default=16, help="sentences to decode")
    parser.add_argument("--steps", type=int, default=300, help="training steps when no --model is given")
    parser.add_argument("--seed", type=int, default=0, help="which made-up sentences (dvcli.testing.make_sentences)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = make_sentences(args.sentences, seed=args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if folder is None:
            manifest, units = make_t2u_data(Path(tmp), sentences, k=100)
            started = time.perf_counter()
            result = run(
                TrainT2UConfig(
                    manifest=manifest,
                    units=units,
                    out=Path(tmp) / "t2u",
                    steps=args.steps,
                    batch_size=16,
                    eval_every=args.steps,
                    valid_fraction=0.0,
                    device="cpu",
                )
            )
            elapsed = time.perf_counter() - started
            print(
                f"training: {args.steps} steps, batch 16, in {elapsed:.1f} s "
                f"({args.steps / result.seconds:.2f} steps/s in the loop), UER {100 * result.train_uer:.1f}%"
            )
            folder = result.out
        t2u = TextToUnit.load(folder)
        t2u.units(sentences[:2], beams=1)  # warm-up
        lengths = [len(u) for u in t2u.units(sentences, beams=5)]
        print(
            f"{len(sentences)} sentences, {sum(lengths) / len(lengths):.0f} units on average, {args.threads} thread(s)"
        )
        timings = {}
        for beams in (1, 5):
            for batch in (1, 16):
                started = time.perf_counter()
                t2u.units(sentences, beams=beams, batch_size=batch)
                timings[beams, batch] = (time.perf_counter() - started) / len(sentences)
        reference = timings[1, 1]
        for (beams, batch), seconds in timings.items():
            print(
                f"beams {beams}, batch {batch:2d}: {seconds:.3f} s/sentence  ({seconds / reference:.2f}x greedy one-by-one)"
            )


if __name__ == "__main__":
    main()
