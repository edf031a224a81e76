"""espeak-ng phonemes of English text, the content of the transcript arms (the paper's Table 4).

Phonemes come from espeak-ng through ``piper-tts`` (its ``espeakbridge`` with bundled espeak-ng data:
no system espeak-ng, no download), and map to ids with piper's default phoneme table, as piper's
VITS voices read them: IPA symbols split into Unicode code points (NFD), punctuation and spaces
kept, sentences joined by a space. Symbols outside the table are dropped. dv's VITS adds its blank
tokens itself, so piper's pad/BOS/EOS ids are not inserted.
"""

from __future__ import annotations

import functools
from typing import Any

from dvcli.errors import UserError

#: The espeak-ng voice.
VOICE = "en-us"


@functools.lru_cache(maxsize=1)
def _piper() -> tuple[Any, dict[str, int]]:
    try:
        from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP
        from piper.phonemize_espeak import EspeakPhonemizer
    except ImportError:
        raise UserError("phoneme content needs piper-tts (espeak-ng): pip install 'dino-vits[phonemes]'") from None
    return EspeakPhonemizer(), {symbol: ids[0] for symbol, ids in DEFAULT_PHONEME_ID_MAP.items()}


def vocabulary_size() -> int:
    """Phoneme ids run 0 .. vocabulary_size() - 1."""
    return max(_piper()[1].values()) + 1


def phoneme_ids(text: str) -> list[int]:
    """The phoneme ids of ``text`` (every sentence, separated by a space); [] when nothing is pronounceable.

    Raises:
        UserError: piper-tts is not installed.
    """
    phonemizer, table = _piper()
    ids: list[int] = []
    for sentence in phonemizer.phonemize(VOICE, text):
        if ids:
            ids.append(table[" "])
        ids += [table[p] for p in sentence if p in table]
    return ids
