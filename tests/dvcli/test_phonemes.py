"""espeak-ng phonemes through piper-tts (dvcli.phonemes), the transcript arms' VITS input."""

from __future__ import annotations

import pytest

pytest.importorskip("piper.phonemize_espeak")

from dvcli.phonemes import phoneme_ids, vocabulary_size  # noqa: E402


def test_phonemes_are_piper_ids_of_espeak_ng_output() -> None:
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    ids = phoneme_ids("Hello world.")
    table = {v[0]: k for k, v in DEFAULT_PHONEME_ID_MAP.items()}
    # espeak-ng en-us: həlˈoʊ wˈɜːld. (IPA split into code points, the stress mark its own symbol)
    assert "".join(table[i] for i in ids) == "həlˈoʊ wˈɜːld."
    assert all(0 <= i < vocabulary_size() for i in ids) and vocabulary_size() == max(table) + 1


def test_sentences_are_joined_and_nothing_pronounceable_gives_nothing() -> None:
    space = phoneme_ids(" ")
    two = phoneme_ids("Yes. No.")
    assert two == phoneme_ids("Yes.") + [3] + phoneme_ids("No.") and not space
