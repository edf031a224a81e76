"""How much speech the reference preparation finds in noisy clips, and what it keeps.

A real utterance (``tests/data/please_call_me_back.flac``, 2.8 s, with 0.5 s of silence on each
side) is mixed with white noise and with babble (six toy voices summed) at several SNRs, and with
20 s of silence or quiet noise on each side, then prepared as ``dv synthesize`` prepares a
reference with ``--ref-seconds 3`` (:func:`dvcli.reference.prepare_reference`). For each clip: the
detected speech, the seconds kept, or the refusal.

    python bench/reference_vad.py

Results go to bench/results/reference_vad.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvcli.audio import SAMPLE_RATE, load_audio, tile_to  # noqa: E402
from dvcli.errors import UserError  # noqa: E402
from dvcli.reference import ReferenceOptions, prepare_reference  # noqa: E402

SNRS = (20, 10, 5, 0, -5)


def _mix(speech: torch.Tensor, noise: torch.Tensor, snr: float) -> torch.Tensor:
    gain = speech.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt() * 10 ** (-snr / 20)
    return speech + gain * noise


def _row(name: str, clip: torch.Tensor) -> str:
    try:
        ref = prepare_reference(clip, ReferenceOptions(max_seconds=3.0))
    except UserError as err:
        heard = str(err).split("heard ")[-1].split(")")[0]
        return f"| {name} | {clip.shape[0] / SAMPLE_RATE:.1f} | {heard} | refused (exit 2) |"
    return f"| {name} | {clip.shape[0] / SAMPLE_RATE:.1f} | {ref.speech_seconds:.2f} s | {ref.seconds:.2f} s |"


def main() -> None:
    speech = load_audio(ROOT / "tests" / "data" / "please_call_me_back.flac", SAMPLE_RATE)
    padded = torch.cat([torch.zeros(SAMPLE_RATE // 2), speech, torch.zeros(SAMPLE_RATE // 2)])
    rng = np.random.default_rng(0)
    white = torch.from_numpy(rng.standard_normal(padded.shape[0]).astype(np.float32))
    voices = sorted((ROOT / "examples" / "toy").glob("espeak_*/*.flac"))[:6]
    babble = sum(tile_to(load_audio(f, SAMPLE_RATE), padded.shape[0]) for f in voices)
    rows = ["| clip | seconds | speech detected | kept (3 s crop) |", "|---|---|---|---|"]
    for name, noise in (("white noise", white), ("babble", babble)):
        for snr in SNRS:
            rows.append(_row(f"{name}, {snr} dB SNR", _mix(padded, noise, snr)))
    pad = 20 * SAMPLE_RATE
    for name, level in (("20 s silence each side", None), ("20 s noise at -40 dBFS each side", -40)):
        around = torch.zeros(pad) if level is None else torch.from_numpy(rng.standard_normal(pad).astype(np.float32))
        around = around * (10 ** (level / 20) if level is not None else 0.0)
        rows.append(_row(name, torch.cat([around, speech, around])))
    text = "\n".join(rows) + "\n"
    out = ROOT / "bench" / "results" / "reference_vad.md"
    out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
