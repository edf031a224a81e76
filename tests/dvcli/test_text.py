"""Text normalisation: what text-to-unit reads and what CER is computed on."""

from __future__ import annotations

import pytest

from dvcli.text import normalize_text, number_to_words, ordinal_to_words, split_sentences, year_to_words


@pytest.mark.parametrize(
    "n,words",
    [(0, "zero"), (13, "thirteen"), (40, "forty"), (99, "ninety nine"), (100, "one hundred"),
     (1205, "one thousand two hundred five"), (2000000, "two million"), (-7, "minus seven")],
)
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


def test_ordinals_and_years() -> None:
    assert [ordinal_to_words(n) for n in (1, 2, 3, 5, 12, 20, 21, 100)] == [
        "first", "second", "third", "fifth", "twelfth", "twentieth", "twenty first", "one hundredth"]
    assert year_to_words(1999) == "nineteen ninety nine"
    assert year_to_words(1905) == "nineteen oh five"
    assert year_to_words(2005) == "two thousand five"
    assert year_to_words(1900) == "nineteen hundred"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Dr. Smith paid $3.50 on the 21st, in 1999!", "doctor smith paid three dollars fifty cents on the twenty first in nineteen ninety nine"),
        ("It's 3.14 — roughly.", "it's three point one four roughly"),
        ("50% of 1,200 people", "fifty percent of one thousand two hundred people"),
        ("Café “quotes” and 'single' rock & roll", "cafe quotes and single rock and roll"),
        ("   The  BIRCH canoe\tslid. ", "the birch canoe slid"),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_split_sentences() -> None:
    assert split_sentences("One two. Three? Four!  Five") == ["One two.", "Three?", "Four!", "Five"]
