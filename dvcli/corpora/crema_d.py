"""CREMA-D (Cao et al. 2014): 7442 clips of 91 actors saying 12 sentences in six emotions.

Files ``AudioWAV/ACTOR_SENTENCE_EMOTION_LEVEL.wav`` (e.g. ``1001_DFA_ANG_XX.wav``; the corpus root
or its ``AudioWAV`` folder may be given): the speaker is the actor id, the text the sentence the code
names, and two label columns go into the manifest: ``emotion`` (anger, disgust, fear, happy,
neutral, sad) and ``intensity`` (low, medium, high, unspecified), for ``dv evaluate style-probe``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from dvcli.corpora.entry import CorpusEntry

SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")


def audio_folder(source: Path) -> Path | None:
    """The folder holding CREMA-D's clips (``source/AudioWAV`` or ``source``), or None."""
    for folder in (source / "AudioWAV", source):
        if folder.is_dir() and any(_NAME.match(p.stem) for p in folder.glob("*.wav")):
            return folder
    return None


def scan_crema_d(source: Path) -> Iterator[CorpusEntry]:
    """Every clip named as CREMA-D names them (others are passed over)."""
    folder = audio_folder(source) or source
    for path in sorted(folder.glob("*.wav")):
        match = _NAME.match(path.stem)
        if not match or match["emotion"] not in EMOTIONS:
            continue
        yield CorpusEntry(
            path.stem,
            path,
            match["actor"],
            SENTENCES.get(match["sentence"], ""),
            extra={"emotion": EMOTIONS[match["emotion"]], "intensity": INTENSITIES.get(match["level"], match["level"])},
        )
