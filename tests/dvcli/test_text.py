"""Text normalisation: what text-to-unit reads and what CER is computed on."""

from __future__ import annotations

import pytest

from dvcli.text import normalize_text, number_to_words, ordinal_to_words, split_sentences, year_to_words


@pytest.mark.parametrize(
    "n,words",
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (99, "ninety nine"),
        (100, "one hundred"),
        (1205, "one thousand two hundred five"),
        (2000000, "two million"),
        (-7, "minus seven"),
    ],
)
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


def test_ordinals_and_years() -> None:
    assert [ordinal_to_words(n) for n in (1, 2, 3, 5, 12, 20, 21, 100)] == [
        "first",
        "second",
        "third",
        "fifth",
        "twelfth",
        "twentieth",
        "twenty first",
        "one hundredth",
    ]
    assert year_to_words(1999) == "nineteen ninety nine"
    assert year_to_words(1905) == "nineteen oh five"
    assert year_to_words(2005) == "two thousand five"
    assert year_to_words(1900) == "nineteen hundred"


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "Dr. Smith paid $3.50 on the 21st, in 1999!",
            "doctor smith paid three dollars fifty cents on the twenty first in nineteen ninety nine",
        ),
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


@pytest.mark.parametrize(
    "text,expected",
    [
        # times and clock hours (the issue: "8:55AM" became "fiveam", "3pm" "threepm")
        ("Meet me at 8:55AM.", "meet me at eight fifty five a m"),
        ("Meet me at 8:55 a.m.", "meet me at eight fifty five a m"),
        ("Call at 3pm", "call at three p m"),
        ("Call at 3 PM sharp", "call at three p m sharp"),
        ("at 7:05", "at seven oh five"),
        ("at 10:00", "at ten o'clock"),
        ("at 12:30 pm", "at twelve thirty p m"),
        # abbreviations by context (the issue: "No." always "number", "Main St." "main saint")
        ("No. 5 is here", "number five is here"),
        ("No. I will not.", "no i will not"),
        ("Main St. is busy", "main street is busy"),
        ("St. Paul is a city", "saint paul is a city"),
        ("Elm Dr. and Dr. Who", "elm drive and doctor who"),
        ("Mr. and Mrs. Jones", "mister and missus jones"),
        ("Mt. Everest", "mount everest"),
        ("e.g. apples", "for example apples"),
        ("Room #12", "room number twelve"),
        # decades
        ("the 1990s", "the nineteen nineties"),
        ("the 1800s", "the eighteen hundreds"),
        ("the '80s", "the eighties"),
        ("the 2010s", "the twenty tens"),
        # units
        ("It is 5 km away", "it is five kilometers away"),
        ("It weighs 1 kg", "it weighs one kilogram"),
        ("a 2.5 kg bag", "a two point five kilograms bag"),
        ("20°C today", "twenty degrees celsius today"),
        ("60 mph", "sixty miles per hour"),
        ("a 5G network", "a five g network"),
        ("10 MB left", "ten megabytes left"),
        # currencies and signs
        ("$5 million", "five million dollars"),
        ("$1.5 billion", "one point five billion dollars"),
        ("£2.01", "two pounds one penny"),
        ("€1", "one euro"),
        ("$1", "one dollar"),
        ("It was -5 degrees", "it was minus five degrees"),
        ("2+2=4", "two plus two equals four"),
        ("email me @ home", "email me at home"),
        ("Tom & Jerry", "tom and jerry"),
        ("12.5%", "twelve point five percent"),
        # plain numbers, ordinals, years
        ("The 3rd of May", "the third of may"),
        ("the 101st time", "the one hundred first time"),
        ("version 2.0", "version two point zero"),
        ("The year 2005", "the year two thousand five"),
        ("in 1066", "in ten sixty six"),
        ("1,000,000 people", "one million people"),
        ("3 cats and 42 dogs", "three cats and forty two dogs"),
    ],
)
def test_normalize_text_says_what_a_speaker_says(text: str, expected: str) -> None:
    assert normalize_text(text) == expected
