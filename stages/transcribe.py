"""``dv transcribe``: a manifest whose text is what a recogniser hears (the paper's Whisper-C / Whisper-N arms).

Table 4 of the DINO-VITS paper trains the same VITS on transcripts instead of units: ``Whisper-C``
on the clean corpus, ``Whisper-N`` on a noisy one, where recognition errors enter the training text.
This stage writes ``OUT/manifest.tsv``: every row of the input manifest with ``text`` replaced by the
transcript of an offline recogniser (``asr``: Whisper base by default, as ``dv evaluate run`` uses;
see :func:`dvcli.evaluation.asr.load_asr`) and the original text kept in a ``text_original``
column. When the rows had text, the character and word error rates of the transcripts against it
(Whisper's English normalisation on both sides) go to ``meta.json`` and the summary.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from dvcli.audio import load_audio
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.evaluation.asr import AUTO, load_asr, score_transcript
from dvcli.logs import track
from dvcli.manifest import read_manifest, write_manifest
from dvcli.outputs import add_meta, stage_output
from dvcli.runtime import resolve_device

log = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class TranscribeConfig(StageConfig):
    """Settings of ``dv transcribe``."""

    manifest: Path  # the utterances to transcribe
    out: Path  # folder: manifest.tsv with the transcripts as text
    asr: str = AUTO  # auto (Whisper base when installed, else pocketsphinx), whisper-base, pocketsphinx, or a folder
    split: str = ""  # transcribe only this split ("" = every row; the others are left out)


@dataclasses.dataclass
class TranscribeResult:
    manifest: Path
    utterances: int
    asr: str
    cer: float | None  # against the original text, when the rows had text
    wer: float | None

    def summary(self) -> dict[str, object]:
        rows: dict[str, object] = {"manifest": self.manifest, "utterances": self.utterances, "recogniser": self.asr}
        if self.cer is not None:
            rows["CER / WER against the original text"] = f"{100 * self.cer:.1f}% / {100 * (self.wer or 0):.1f}%"
        return rows


def run(config: TranscribeConfig) -> TranscribeResult:
    """Transcribe every utterance and write the manifest.

    Raises:
        UserError: an unreadable manifest, no rows in the split, a recogniser that does not load.
    """
    rows = [u for u in read_manifest(config.manifest) if not config.split or u.split == config.split]
    if not rows:
        raise UserError(f"{config.manifest}: no utterances{f' in split {config.split!r}' if config.split else ''}")
    asr = load_asr(config.asr, str(resolve_device(config.device)))
    errors = [0, 0, 0, 0]  # char errors, chars, word errors, words
    for u in track(rows, f"transcribing ({asr.name})"):
        heard = " ".join(asr.transcribe(load_audio(u.audio).numpy()).split())
        if u.text.strip():
            scored = score_transcript(u.text, heard)
            for i, n in enumerate((scored.char_errors, scored.chars, scored.word_errors, scored.words)):
                errors[i] += n
        u.extra = {**u.extra, "text_original": u.text}
        u.text = heard
    cer = errors[0] / errors[1] if errors[1] else None
    wer = errors[2] / errors[3] if errors[3] else None
    out = Path(config.out)
    inputs = {"manifest": Path(config.manifest).resolve()}
    with stage_output(out, stage="transcribe", config=config, inputs=inputs) as tmp:
        write_manifest(tmp / "manifest.tsv", rows, relative_to=out.resolve())
        add_meta(tmp, utterances=len(rows), asr=asr.name, cer=cer, wer=wer)
    return TranscribeResult(out / "manifest.tsv", len(rows), asr.name, cer, wer)
