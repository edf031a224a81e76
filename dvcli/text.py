"""English text normalisation for text-to-unit (training and inference): text as a speaker says it.

Steps: Unicode folding to ASCII where possible; times (``8:55 AM``), clock hours (``3pm``), decades
(``1990s``), currencies, percentages, units after numbers (``5 km``), ordinals, decimals, years and
integers to words (the words from ``num2words``, American style: no "and" inside numbers);
abbreviations by context (``No. 5`` is "number five" but "No." alone is "no"; ``St. Paul`` is "saint",
``Main St.`` "street"); signs (``&``, ``+``, ``=``, ``@``, ``#``); lower case; punctuation other than
apostrophes inside words removed; whitespace collapsed.

CER scoring does not use this: it uses Whisper's own English normaliser
(:func:`dvcli.evaluation.asr.normalize_for_cer`), the convention recognisers are compared with.
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

#: Abbreviations with one reading whatever follows (lower case, without the full stop).
_ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miss",
    "jr": "junior",
    "sr": "senior",
    "vs": "versus",
    "etc": "et cetera",
    "prof": "professor",
    "mt": "mount",
    "ave": "avenue",
    "rd": "road",
    "blvd": "boulevard",
    "approx": "approximately",
    "dept": "department",
    "govt": "government",
    "e.g": "for example",
    "i.e": "that is",
}
#: Units read after a number: (singular, plural).
_UNITS = {
    "km": ("kilometer", "kilometers"),
    "m": ("meter", "meters"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"),
    "mi": ("mile", "miles"),
    "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "ml": ("milliliter", "milliliters"),
    "l": ("liter", "liters"),
    "min": ("minute", "minutes"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "sec": ("second", "seconds"),
    "ms": ("millisecond", "milliseconds"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "°C": ("degree celsius", "degrees celsius"),
    "°F": ("degree fahrenheit", "degrees fahrenheit"),
    "°": ("degree", "degrees"),
}
# Case matters: "5 g" is grams, "5G" a network; units are matched exactly as listed.
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
}


def _clean(words: str) -> str:
    """num2words' British punctuation and 'and' out: ``one thousand, two hundred and five`` -> ``... two hundred five``."""
    words = words.replace(",", " ").replace("-", " ")
    return " ".join(w for w in words.split() if w != "and")


def number_to_words(n: int) -> str:
    """Spell an integer in English words (``1205`` -> ``one thousand two hundred five``)."""
    return _clean(num2words(n, lang="en"))


def ordinal_to_words(n: int) -> str:
    """``21`` -> ``twenty first``."""
    return _clean(num2words(n, lang="en", to="ordinal"))


def year_to_words(n: int) -> str:
    """``1999`` -> ``nineteen ninety nine``; ``1905`` -> ``nineteen oh five``; ``2005`` -> ``two thousand five``."""
    return _clean(num2words(n, lang="en", to="year"))


def _plural_words(words: str) -> str:
    """``nineteen ninety`` -> ``nineteen nineties``, ``eighty`` -> ``eighties`` (a decade)."""
    *head, last = words.split()
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return " ".join([*head, last])


def _clock(hour: str, minute: str | None, meridiem: str | None) -> str:
    words = number_to_words(int(hour))
    if minute is not None and int(minute):
        words += (" oh " if int(minute) < 10 else " ") + number_to_words(int(minute))
    elif minute is not None and meridiem is None:
        words += " o'clock"
    if meridiem:
        words += f" {meridiem[0].lower()} m"
    return words


def _currency(match: re.Match[str]) -> str:
    symbol, whole, cents, scale = match.group(1), int(match.group(2).replace(",", "")), match.group(3), match.group(4)
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    if scale:  # $5 million -> five million dollars; $1.5 billion -> one point five billion dollars
        amount = f"{whole}.{cents}" if cents else str(whole)
        return f"{_decimal_words(amount)} {scale.lower()} {many}"
    words = f"{number_to_words(whole)} {one if whole == 1 else many}"
    if cents and int(cents):
        c = int(cents.ljust(2, "0")[:2])
        words += f" {number_to_words(c)} {sub_one if c == 1 else sub_many}"
    return words


def _decimal_words(text: str) -> str:
    whole, _, frac = text.partition(".")
    words = number_to_words(int(whole.replace(",", "") or 0))
    return f"{words} point {' '.join(number_to_words(int(d)) for d in frac)}" if frac else words


def _integer(match: re.Match[str]) -> str:
    digits = match.group(0).replace(",", "")
    n = int(digits)
    if len(digits) == 4 and 1000 <= n <= 2099 and "," not in match.group(0):
        return year_to_words(n)
    return number_to_words(n)


def _with_unit(match: re.Match[str]) -> str:
    number, unit = match.group(1), match.group(2)
    one, many = _UNITS[unit]
    return f"{_decimal_words(number)} {one if number in ('1', '1.0') else many}"


_UNIT_PATTERN = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))


def expand_numbers(text: str) -> str:
    """Replace digits by words: times, decades, currency, percentages, units, ordinals, decimals,
    years and plain integers (in that order, so the longer patterns win)."""
    text = re.sub(r"\b(\d{1,2}):(\d{2})\s*([AaPp])\.?\s?[Mm]\.?(?![a-z])", lambda m: _clock(*m.groups()), text)
    text = re.sub(r"\b(\d{1,2}):(\d{2})\b", lambda m: _clock(m.group(1), m.group(2), None), text)
    text = re.sub(r"\b(\d{1,2})\s*([AaPp])\.?\s?[Mm]\.?(?![a-z])", lambda m: _clock(m.group(1), None, m.group(2)), text)
    text = re.sub(r"\b(1\d|20)(\d0)'?s\b", lambda m: _plural_words(year_to_words(int(m.group(1) + m.group(2)))), text)
    text = re.sub(r"(?<![\w])'(\d0)s\b", lambda m: _plural_words(number_to_words(int(m.group(1)))), text)
    text = re.sub(
        r"([$£€])\s?(\d[\d,]*)(?:\.(\d+))?(?:\s(million|billion|trillion|thousand)\b)?",
        _currency,
        text,
        flags=re.IGNORECASE,
    )
    text = re.sub(r"(\d+(?:\.\d+)?)\s?%", lambda m: f"{_decimal_words(m.group(1))} percent", text)
    text = re.sub(rf"(\d+(?:\.\d+)?)\s?({_UNIT_PATTERN})(?![\w/])", _with_unit, text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal_to_words(int(m.group(1))), text, flags=re.IGNORECASE)
    text = re.sub(r"(?<![\d.])-(\d)", r"minus \1", text)
    text = re.sub(r"(?<=\d)(?=[A-Za-z])|(?<=[A-Za-z])(?=\d)", " ", text)  # "5G" -> "5 G": a number, then a letter
    text = re.sub(r"\d[\d,]*\.\d+", lambda m: _decimal_words(m.group(0)), text)
    text = re.sub(r"\d{1,3}(?:,\d{3})+|\d+", _integer, text)
    return text


def _abbreviations(text: str) -> str:
    """Abbreviations whose reading depends on the words around them, then the fixed ones."""
    text = re.sub(r"\bNo\.\s*(?=\d)", "number ", text)  # "No. 5"; "No." elsewhere is the word no
    text = re.sub(r"#\s*(?=\d)", "number ", text)
    text = re.sub(r"\b([A-Z][a-z]+)\s+St\.", r"\1 street", text)  # "Main St."
    text = re.sub(r"\bSt\.\s*(?=[A-Z])", "saint ", text)  # "St. Paul"
    text = re.sub(r"\b([A-Z][a-z]+)\s+Dr\.", r"\1 drive", text)  # "Elm Dr."
    text = re.sub(r"\bDr\.\s*", "doctor ", text)
    text = re.sub(
        r"\b([A-Za-z]+(?:\.[A-Za-z])?)\.", lambda m: _ABBREVIATIONS.get(m.group(1).lower(), m.group(1)) + " ", text
    )
    return text


def normalize_text(text: str) -> str:
    """Normalise English text for text-to-unit input: everything as a speaker would say it.

    >>> normalize_text("Dr. Smith paid $3.50 on the 21st, in 1999!")
    'doctor smith paid three dollars fifty cents on the twenty first in nineteen ninety nine'
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("’", "'").replace("‘", "'").replace("&", " and ")
    text = text.replace("+", " plus ").replace("=", " equals ").replace("@", " at ")
    text = _abbreviations(text)
    text = expand_numbers(text)
    text = text.lower()
    text = re.sub(r"[-‐–—/]", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quotes, not apostrophes inside words
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(text.split())


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences at ``. ! ?`` (and ``;``/``:`` for very long spans)."""
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return [p.strip() for p in parts if p.strip()]
