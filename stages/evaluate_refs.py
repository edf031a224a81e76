"""``dv evaluate refs``: the zero-shot test list — reference clips, clean and noisy, and what to say.

The paper's protocol: for every test utterance of an unseen speaker, the system clones the voice
from a *different* utterance of that speaker, cropped to a few seconds, and says the test
utterance's text; the same test is repeated with noise added to the reference. This stage writes:

- ``OUT/refs/clean/ID.wav``: the reference crops (16 kHz mono);
- ``OUT/refs/noisy-SNRdB/ID.wav``: the same crops with noise at each SNR (``noise`` folder, e.g.
  CHiME or MUSAN backgrounds, or white noise);
- ``OUT/batch.tsv``: ``id``, ``text``, ``ref``, ``condition``, ``speaker``, ``snr``, ``noise``,
  ``ref_clean``, ``recording`` — the ``dv synthesize --batch`` input, whose extra columns pass through
  to ``synth.tsv`` for ``dv evaluate run`` (``ref_clean`` lets SECS compare against the clean clip,
  ``recording`` is the real recording of the test sentence);
- with ``denoise``: ``OUT/refs/clean-DENOISER/`` and ``OUT/refs/noisy-SNRdB-DENOISER/``, every
  reference enhanced (the paper's denoiser front-end, :mod:`dvcli.denoise`); ``ref`` points at
  them, ``ref_clean`` stays the unprocessed clean crop, and a ``denoise`` column names the denoiser
  so ``dv evaluate run`` reports the arm as its own system.
"""

from __future__ import annotations

import csv
import dataclasses
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dvcli.audio import SAMPLE_RATE, load_audio, save_audio
from dvcli.config import StageConfig
from dvcli.denoise import DenoiseName, Denoiser, load_denoiser
from dvcli.errors import UserError, path_error
from dvcli.evaluation.noise import NoiseSource, mix_at_snr
from dvcli.manifest import Utterance, read_manifest
from dvcli.outputs import add_meta, stage_output

BATCH_FILE = "batch.tsv"
COLUMNS = ("id", "text", "ref", "condition", "speaker", "snr", "noise", "ref_clean", "recording")


@dataclasses.dataclass(kw_only=True)
class RefsConfig(StageConfig):
    """Settings of ``dv evaluate refs``."""

    manifest: Path  # manifest.tsv (or its folder) holding the test speakers
    out: Path  # output folder: refs/ and batch.tsv
    split: str = "heldout"  # take speakers of this split ("" = every speaker)
    per_speaker: int = 5  # test sentences per speaker
    ref_seconds: float = 3.0  # crop of each reference clip (the paper: 3 s)
    snrs: list[float] = dataclasses.field(default_factory=lambda: [0.0])  # a noisy condition per SNR (dB)
    noise: Path | None = None  # folder of noise clips (default: white noise)
    denoise: DenoiseName = "none"  # enhance every reference (clean and noisy) as the denoiser front-end baseline


@dataclasses.dataclass
class RefsResult:
    out: Path
    speakers: int
    tests: int
    rows: int

    def summary(self) -> dict[str, object]:
        return {
            "speakers": self.speakers,
            "test sentences": self.tests,
            "rows": self.rows,
            "batch list": self.out / BATCH_FILE,
        }


def run(config: RefsConfig) -> RefsResult:
    """Pick test sentences and reference clips per speaker; write the clips and ``batch.tsv``.

    Raises:
        UserError: no speaker of the split has two utterances with text, or a bad noise folder.
    """
    rows = [u for u in read_manifest(config.manifest) if not config.split or u.split == config.split]
    if config.ref_seconds <= 0 or config.per_speaker < 1:
        raise UserError("ref_seconds must be > 0 and per_speaker >= 1")
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in rows:
        by_speaker[u.speaker].append(u)
    usable = {
        s: sorted(us, key=lambda u: u.id)
        for s, us in sorted(by_speaker.items())
        if len(us) >= 2 and any(u.text.strip() for u in us)
    }
    if not usable:
        where = f"split '{config.split}'" if config.split else "the manifest"
        raise path_error(
            config.manifest,
            f"no speaker of {where} has two utterances with text",
            "mark test speakers with `dv prepare --speakers-heldout N` or pass --split ''",
        )
    noise = NoiseSource(config.noise)
    denoiser = load_denoiser(config.denoise) if config.denoise != "none" else None
    rng = np.random.default_rng(config.seed)
    pick = random.Random(config.seed)
    crop = int(config.ref_seconds * SAMPLE_RATE)
    table: list[dict[str, str]] = []
    tests = 0
    inputs = {"manifest": Path(config.manifest).resolve()}
    with stage_output(Path(config.out), stage="evaluate-refs", config=config, inputs=inputs) as tmp:
        for speaker, utts in usable.items():
            tests_here = [u for u in utts if u.text.strip()]
            pick.shuffle(tests_here)
            for test in tests_here[: config.per_speaker]:
                tests += 1
                # The reference: another utterance of the speaker, the longest of three random ones.
                others = [u for u in utts if u.id != test.id]
                ref = max(pick.sample(others, min(3, len(others))), key=lambda u: u.duration)
                wav = load_audio(ref.audio)
                start = int(rng.integers(0, max(1, len(wav) - crop + 1)))
                wav = wav[start : start + crop].numpy()
                peak = float(np.abs(wav).max())
                if peak > 0:
                    wav = wav * (0.5 / peak)  # a common level for every reference
                clean_rel = Path("refs") / "clean" / f"{test.id}.wav"
                save_audio(tmp / clean_rel, wav, SAMPLE_RATE)
                common = {
                    "text": test.text,
                    "speaker": speaker,
                    "noise": "",
                    "snr": "",
                    "ref_clean": str(clean_rel),
                    "recording": str(Path(test.audio).resolve()),
                }
                if denoiser is not None:
                    common["denoise"] = config.denoise
                    clean_rel = _save_denoised(tmp, "clean", test.id, wav, denoiser)
                table.append({"id": f"{test.id}-clean", "ref": str(clean_rel), "condition": "clean", **common})
                for snr in config.snrs:
                    noisy = mix_at_snr(wav, noise.sample(len(wav), rng), snr, rng)
                    noisy_rel = Path("refs") / f"noisy-{snr:g}dB" / f"{test.id}.wav"
                    save_audio(tmp / noisy_rel, noisy, SAMPLE_RATE)
                    if denoiser is not None:
                        noisy_rel = _save_denoised(tmp, f"noisy-{snr:g}dB", test.id, noisy, denoiser)
                    table.append(
                        {
                            "id": f"{test.id}-noisy{snr:g}",
                            "ref": str(noisy_rel),
                            "condition": "noisy",
                            **common,
                            "noise": noise.name,
                            "snr": f"{snr:g}",
                        }
                    )
        with open(tmp / BATCH_FILE, "w", newline="", encoding="utf-8") as f:
            columns = COLUMNS + (("denoise",) if denoiser is not None else ())
            writer = csv.DictWriter(f, columns, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(table)
        add_meta(tmp, speakers=len(usable), tests=tests, rows=len(table))
    return RefsResult(Path(config.out), len(usable), tests, len(table))


def _save_denoised(tmp: Path, condition: str, uid: str, wav: np.ndarray, denoiser: Denoiser) -> Path:
    """Write the enhanced reference to ``refs/CONDITION-DENOISER/ID.wav``; its path relative to ``tmp``."""
    rel = Path("refs") / f"{condition}-{denoiser.name}" / f"{uid}.wav"
    save_audio(tmp / rel, denoiser(torch.from_numpy(np.asarray(wav, dtype=np.float32))), SAMPLE_RATE)
    return rel
