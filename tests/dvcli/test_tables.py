"""Text files as editors and spreadsheets save them: every table dv reads accepts a UTF-8 byte-order
mark, and a file that is not UTF-8 gives one line naming the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dvcli.errors import UserError
from dvcli.manifest import read_manifest, read_units, read_utf8, write_manifest
from dvcli.speaker.verification import read_trials
from dvcli.testing import make_corpus
from stages.prepare import PrepareConfig
from stages.prepare import run as prepare

BOM = "\ufeff"


def test_read_utf8_drops_a_bom_and_names_the_line_of_a_bad_byte(tmp_path: Path) -> None:
    (tmp_path / "bom.tsv").write_text(BOM + "id\ttext\nu1\thé\n", encoding="utf-8")
    assert read_utf8(tmp_path / "bom.tsv") == "id\ttext\nu1\thé\n"
    (tmp_path / "latin1.tsv").write_bytes("id\ttext\nu1\tok\nu2\thé\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.tsv:3: not UTF-8 text \(byte 0xe9\)"):
        read_utf8(tmp_path / "latin1.tsv")


def _with_bom(path: Path) -> None:
    path.write_text(BOM + path.read_text(encoding="utf-8"), encoding="utf-8")


def _with_latin1_on_last_line(path: Path) -> int:
    text = path.read_text(encoding="utf-8").lstrip(BOM).rstrip("\n") + "\u00e9\n"
    path.write_bytes(text.encode("latin-1"))
    return text.count("\n")


@pytest.fixture
def corpus(tmp_path: Path) -> list:
    return make_corpus(tmp_path / "c", speakers=2, utterances=2, seconds=(0.6, 0.8))


def test_manifest_units_and_trials_read_the_same_with_a_bom(corpus: list, tmp_path: Path) -> None:
    write_manifest(tmp_path / "m.tsv", corpus)
    plain = read_manifest(tmp_path / "m.tsv")
    _with_bom(tmp_path / "m.tsv")
    assert read_manifest(tmp_path / "m.tsv") == plain
    line = _with_latin1_on_last_line(tmp_path / "m.tsv")
    with pytest.raises(UserError, match=rf"m.tsv:{line}: not UTF-8"):
        read_manifest(tmp_path / "m.tsv")

    (tmp_path / "units.tsv").write_text(BOM + "u1\t1 2 3\nu2\t4 5\n", encoding="utf-8")
    assert read_units(tmp_path / "units.tsv") == {"u1": [1, 2, 3], "u2": [4, 5]}

    (tmp_path / "trials.tsv").write_text(
        BOM + f"enrol\ttest\tlabel\n{corpus[0].audio}\t{corpus[1].audio}\t1\n", encoding="utf-8"
    )
    assert read_trials(tmp_path / "trials.tsv")[0].label == 1


def test_prepare_keeps_the_first_text_of_a_metadata_tsv_with_a_bom(tmp_path: Path) -> None:
    """The issue's example: a BOM silently dropped the first utterance's text (exit 0)."""
    corpus = tmp_path / "corpus"
    make_corpus(corpus, speakers=2, utterances=2, seconds=(0.6, 0.8))
    for txt in corpus.rglob("*.txt"):
        txt.unlink()
    for spk in ("spk0", "spk1"):
        names = sorted(p.name for p in (corpus / spk).glob("*.wav"))
        (corpus / spk / "metadata.tsv").write_text(
            BOM + "".join(f"{n}\tsentence {i} of {spk}\n" for i, n in enumerate(names)), encoding="utf-8"
        )
    (corpus / "speakers.tsv").write_text(BOM + "speaker\tsplit\nspk1\theldout\n", encoding="utf-8")
    rows = read_manifest(prepare(PrepareConfig(source=corpus, out=tmp_path / "data")).manifest)
    assert all(r.text.startswith("sentence ") for r in rows) and len(rows) == 4
    assert {r.speaker for r in rows if r.split == "heldout"} == {"spk1"}
    # A transcript that is not UTF-8 is refused, naming it, instead of being read with replacement characters.
    (corpus / "spk0" / "spk0_000.txt").write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(UserError, match=r"spk0_000.txt:1: not UTF-8"):
        prepare(PrepareConfig(source=corpus, out=tmp_path / "data2"))


@pytest.mark.parametrize("duration", ["nan", "inf", "-1.5"])
def test_manifest_durations_must_be_finite_and_not_negative(corpus: list, tmp_path: Path, duration: str) -> None:
    """The issue's example: a duration of nan reached extract-units and train-joint as an internal error."""
    write_manifest(tmp_path / "m.tsv", corpus)
    lines = (tmp_path / "m.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    cells = lines[2].split("\t")
    cells[header.index("duration")] = duration
    lines[2] = "\t".join(cells)
    (tmp_path / "m.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"m.tsv:3: field 'duration' is '{duration}'"):
        read_manifest(tmp_path / "m.tsv")


def test_unit_ids_are_range_checked_when_read(tmp_path: Path) -> None:
    import json

    from dvcli.units.sequences import read_unit_source

    (tmp_path / "units.tsv").write_text("u1\t1 2 -3\n")
    with pytest.raises(UserError, match=r"units.tsv:1: unit ids must be >= 0"):
        read_units(tmp_path / "units.tsv")
    (tmp_path / "units.tsv").write_text("u1\t1 2 3\nu2\t4 100\n")
    (tmp_path / "meta.json").write_text(json.dumps({"k": 100}))
    with pytest.raises(UserError, match=r"utterance 'u2' has unit 100, outside the k-means size 100"):
        read_unit_source(tmp_path)
