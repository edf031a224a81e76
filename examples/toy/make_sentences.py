"""Write N short, grammatical English sentences for a larger toy training corpus (stdlib only, seeded).

The toy corpus's 27 sentences are too few for a text-to-unit model that must read sentences it never
saw. This grammar makes as many new ones as asked, in the style of the Harvard lists (one clause,
6-10 common words, everyday nouns and verbs), from a fixed vocabulary, so every run with the same
seed writes the same file. Sentences of ``--exclude`` (the toy test sentences) never appear.

    python examples/toy/make_sentences.py 720 -o exp/speak/sentences.txt
    python examples/toy/make_sentences.py 720 --exclude examples/toy/sentences.txt -o sentences.txt
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

ADJECTIVES = (
    "old young small large quiet loud bright dark warm cold wet dry soft hard heavy light clean dirty "
    "green red blue brown yellow white black round flat long short sharp smooth rough sweet bitter fresh "
    "empty full busy tired happy narrow wide deep thin thick"
).split()
NOUNS = (
    "farmer sailor teacher child doctor baker driver painter singer neighbour girl boy woman man dog cat "
    "horse bird fox goat hen mouse garden river bridge road house window door table chair basket bottle "
    "letter candle kettle lamp coat hat boot rope stone field hill forest market station kitchen boat "
    "train wagon bucket ladder fence apple bread cheese soup coffee ribbon pencil drum clock"
).split()
PEOPLE = "farmer sailor teacher child doctor baker driver painter singer neighbour girl boy woman man".split()
TRANSITIVE = (
    "carried painted found lifted washed mended dropped opened closed pushed pulled cleaned filled "
    "bought sold brought watched fixed packed wrapped moved kept raised"
).split()
INTRANSITIVE = "waited slept laughed sang walked stopped rested shouted worked jumped ran smiled".split()
PLACES = (
    "near the river|across the field|behind the house|under the bridge|by the window|at the station|"
    "in the kitchen|on the hill|beside the road|inside the barn|along the fence|through the forest|"
    "at the market|in the garden|before dawn|after supper|all morning|late at night|in the rain"
).split("|")
ADVERBS = "slowly quickly gently carefully quietly loudly twice again early".split()
NAMES = "Anna Peter Maria Thomas Clara David Ruth Henry Alice Frank Nora Simon".split()
IMPERATIVES = "Bring Take Carry Wash Paint Mend Open Close Fill Pack Wrap Move Clean Fetch Hold".split()


def sentence(rng: random.Random) -> str:
    """One sentence from one of the grammar's templates."""
    a, n = rng.choice, rng.choice
    templates = (
        lambda: f"The {a(ADJECTIVES)} {n(PEOPLE)} {a(TRANSITIVE)} the {a(ADJECTIVES)} {n(NOUNS)} {a(PLACES)}.",
        lambda: f"A {a(ADJECTIVES)} {n(NOUNS)} {a(INTRANSITIVE)} {a(PLACES)}.",
        lambda: f"{a(NAMES)} {a(TRANSITIVE)} a {a(ADJECTIVES)} {n(NOUNS)} {a(ADVERBS)}.",
        lambda: f"{a(IMPERATIVES)} the {a(ADJECTIVES)} {n(NOUNS)} {a(PLACES)}.",
        lambda: f"The {n(PEOPLE)} and the {n(NOUNS)} {a(INTRANSITIVE)} {a(PLACES)}.",
        lambda: f"Her {a(ADJECTIVES)} {n(NOUNS)} was {a(ADJECTIVES)} {a(PLACES)}.",
        lambda: f"We {a(TRANSITIVE)} the {n(NOUNS)} and the {n(NOUNS)} {a(ADVERBS)}.",
    )
    return rng.choice(templates)()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", type=int, help="how many distinct sentences (at most 999: make_corpus.sh's limit)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--exclude", type=Path, action="append", default=[], help="sentences never to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 1 <= args.count <= 999:
        parser.error("count must be between 1 and 999")
    banned = {line.strip().lower() for path in args.exclude for line in path.read_text(encoding="utf-8").splitlines()}
    rng = random.Random(args.seed)
    chosen: dict[str, None] = {}
    while len(chosen) < args.count:
        text = sentence(rng)
        if text.lower() not in banned:
            chosen[text] = None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(chosen) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
