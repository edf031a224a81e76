"""Manifest and units TSV: round trips, path resolution, and the errors users hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from dvcli.errors import UserError
from dvcli.manifest import Utterance, read_manifest, read_units, write_manifest, write_units

HEADER = "id\taudio\tspeaker\tduration\ttext\n"


def test_round_trip_with_relative_and_absolute_paths(tmp_path: Path) -> None:
    inside = tmp_path / "data" / "wavs" / "a.wav"
    outside = Path("/somewhere/else/b.wav")
    rows = [
        Utterance("a", inside, "s1", 1.5, "hello\tworld", condition="clean", split="train"),
        Utterance("b", outside, "s2", 2.25, "", condition="noisy", split="heldout", extra={"snr": "0"}),
    ]
    write_manifest(tmp_path / "data" / "manifest.tsv", rows)
    text = (tmp_path / "data" / "manifest.tsv").read_text()
    assert text.splitlines()[0] == "id\taudio\tspeaker\tduration\ttext\tcondition\tsplit\tsnr"
    assert "\twavs/a.wav\t" in text and f"\t{outside}\t" in text
    back = read_manifest(tmp_path / "data" / "manifest.tsv")
    assert back[0].audio == inside.resolve() and back[1].audio == outside
    assert back[0].text == "hello world"  # a tab inside a field would break the table
    assert (back[1].condition, back[1].split, back[1].extra) == ("noisy", "heldout", {"snr": "0"})
    assert back[0].duration == 1.5


def test_reading_a_folder_reads_its_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.tsv").write_text(HEADER + "u1\tx.wav\ts\t1.0\t\n")
    assert read_manifest(tmp_path)[0].audio == (tmp_path / "x.wav").resolve()


@pytest.mark.parametrize(
    "content,needle",
    [
        ("", "manifest is empty"),
        ("id\taudio\tspeaker\n", "lacks column(s) duration, text"),
        (HEADER, "no utterances"),
        (HEADER + "a\tx.wav\ts\tlong\t\n", "duration 'long' is not a number"),
        (HEADER + "a\tx.wav\ts\t1\t\na\ty.wav\ts\t1\t\n", ":3: duplicate id 'a'"),
        (HEADER + "a\tx.wav\ts\t1\tt\textra\n", "6 fields for 5 columns"),
    ],
)
def test_malformed_manifests(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "manifest.tsv"
    path.write_text(content)
    with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(path)


def test_missing_manifest_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dv prepare"):
        read_manifest(tmp_path / "nope.tsv")


def test_units_round_trip_and_errors(tmp_path: Path) -> None:
    units = {"a": [1, 2, 2, 999], "b": [], "c": [0]}
    write_units(tmp_path / "units.tsv", units)
    assert (tmp_path / "units.tsv").read_text().splitlines()[0] == "a\t1 2 2 999"
    assert read_units(tmp_path / "units.tsv") == units
    (tmp_path / "bad.tsv").write_text("a\t1 x\n")
    with pytest.raises(UserError, match="bad.tsv:1: units must be integers"):
        read_units(tmp_path / "bad.tsv")
