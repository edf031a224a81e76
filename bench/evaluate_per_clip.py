"""Per-clip CPU cost of dv evaluate's scorers (the recogniser, resemblyzer, DNSMOS) at several clip lengths.

Reports seconds per clip and the real-time factor (compute seconds / audio seconds), the median of
``--repeats`` runs after one warm-up, plus an A/B ratio measured in the same run: resemblyzer's
LSTM with torch's default thread count against one thread (what dv uses).

    python bench/evaluate_per_clip.py            # ~1-3 minutes on 2 cores
    python bench/evaluate_per_clip.py --lengths 2 4 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from timing import median_seconds

from dvcli.audio import load_audio
from dvcli.evaluation.asr import load_asr
from dvcli.evaluation.dnsmos import load_dnsmos
from dvcli.evaluation.verifiers import load_verifier

SPEECH = Path(__file__).resolve().parents[1] / "tests" / "data" / "please_call_me_back.flac"


def clip(seconds: float) -> np.ndarray:
    """The shipped espeak-ng sentence (2.8 s), tiled or cut to ``seconds``."""
    wav = load_audio(SPEECH).numpy()
    n = int(seconds * 16000)
    return np.tile(wav, n // len(wav) + 1)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=float, nargs="+", default=[1.5, 3.0, 6.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--asr", default="auto", help="recogniser: auto (whisper-base when installed), pocketsphinx, ..."
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    asr, verifier, dnsmos = load_asr(args.asr), load_verifier("resemblyzer"), load_dnsmos()
    print(
        f"loading all three scorers (once per process): {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}"
        f"; recogniser {asr.name}"
    )
    print(f"{'metric':<12}{'clip s':>8}{'s/clip':>10}{'RTF':>8}")
    for seconds in args.lengths:
        wav = clip(seconds)
        for name, fn in (
            ("asr", lambda wav=wav: asr.transcribe(wav)),
            ("secs", lambda wav=wav: verifier.embed([wav])),
            ("dnsmos", lambda wav=wav: dnsmos.score(wav)),
        ):
            s = median_seconds(fn, args.repeats)
            print(f"{name:<12}{seconds:>8.1f}{s:>10.3f}{s / seconds:>8.3f}")

    # A/B: resemblyzer's LSTM with the default thread count vs one thread, same input, same run.
    wav = clip(3.0)
    encoder = verifier.encoder
    default = median_seconds(lambda: encoder.embed_utterance(wav), args.repeats)
    verifier_1 = median_seconds(lambda: verifier.embed([wav]), args.repeats)
    print(
        f"resemblyzer 3 s clip: {torch.get_num_threads()} threads {default:.3f} s, 1 thread (dv) {verifier_1:.3f} s, "
        f"ratio {default / verifier_1:.1f}x"
    )


if __name__ == "__main__":
    main()
