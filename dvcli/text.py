"""English text normalisation shared by text-to-unit (training and inference) and evaluation (CER).

The same function must run on both sides: a CER computed on differently normalised text would
measure the normaliser, not the speech. Steps: Unicode folding to ASCII where possible, lowercase,
numbers (integers, decimals, ordinals, years, currency, percentages) to words, a few common
abbreviations expanded, punctuation other than sentence-internal apostrophes removed, whitespace
collapsed.
"""

from __future__ import annotations

import re
import unicodedata

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]
_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}
_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "st": "saint", "jr": "junior",
    "sr": "senior", "vs": "versus", "etc": "et cetera", "no": "number", "prof": "professor",
}


def number_to_words(n: int) -> str:
    """Spell a non-negative or negative integer in English words (``1205`` -> ``one thousand two hundred five``)."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            words = f"{number_to_words(head)} {name}"
            return words + (f" {number_to_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal_to_words(n: int) -> str:
    """``21`` -> ``twenty first``."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_to_words(n: int) -> str:
    """``1999`` -> ``nineteen ninety nine``; ``2005`` -> ``two thousand five``."""
    if 2000 <= n < 2010 or n % 1000 == 0 or not 1000 <= n <= 2999:
        return number_to_words(n)
    head, tail = divmod(n, 100)
    if tail == 0:
        return f"{number_to_words(head)} hundred"
    return f"{number_to_words(head)} {'oh ' if tail < 10 else ''}{number_to_words(tail)}"


def _decimal(match: re.Match[str]) -> str:
    whole, frac = match.group(1), match.group(2)
    return f"{number_to_words(int(whole))} point {' '.join(_ONES[int(d)] for d in frac)}"


def _currency(match: re.Match[str]) -> str:
    symbol, whole, cents = match.group(1), int(match.group(2).replace(",", "")), match.group(3)
    unit = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent")}[symbol]
    words = f"{number_to_words(whole)} {unit[0]}{'' if whole == 1 else 's'}"
    if cents and int(cents):
        c = int(cents.ljust(2, "0")[:2])
        sub = unit[1] if c == 1 else ("pence" if unit[1] == "penny" else unit[1] + "s")
        words += f" {number_to_words(c)} {sub}"
    return words


def _integer(match: re.Match[str]) -> str:
    digits = match.group(0).replace(",", "")
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 2099 and "," not in match.group(0):
        return year_to_words(n)
    return number_to_words(n)


def expand_numbers(text: str) -> str:
    """Replace digits by words: currency, percentages, ordinals, decimals, years, plain integers."""
    text = re.sub(r"([$£€])\s?(\d[\d,]*)(?:\.(\d+))?", _currency, text)
    text = re.sub(r"(\d+(?:\.\d+)?)\s?%", lambda m: f"{m.group(1)} percent", text)
    text = re.sub(
        r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal_to_words(int(m.group(1))), text, flags=re.IGNORECASE
    )
    text = re.sub(r"(\d+)\.(\d+)", _decimal, text)
    text = re.sub(r"\d{1,3}(?:,\d{3})+|\d+", _integer, text)
    return text


def normalize_text(text: str) -> str:
    """Normalise English text for text-to-unit input and for CER/WER scoring.

    >>> normalize_text("Dr. Smith paid $3.50 on the 21st, in 1999!")
    'doctor smith paid three dollars fifty cents on the twenty first in nineteen ninety nine'
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("’", "'").replace("‘", "'").replace("&", " and ")
    text = expand_numbers(text)
    text = text.lower()
    text = re.sub(r"\b([a-z]+)\.", lambda m: _ABBREVIATIONS.get(m.group(1), m.group(1)) + " ", text)
    text = re.sub(r"[-‐–—/]", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quotes, not apostrophes inside words
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(text.split())


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences at ``. ! ?`` (and ``;``/``:`` for very long spans)."""
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return [p.strip() for p in parts if p.strip()]
