"""dv transcribe: a manifest whose text is the recogniser's (the transcript-content arm's training data)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvcli.audio import audio_info
from dvcli.cli import app
from dvcli.manifest import Utterance, read_manifest, write_manifest

TOY = Path(__file__).resolve().parents[2] / "examples" / "toy" / "flite_slt"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    rows = []
    for i in (1, 2, 3):
        audio = TOY / f"flite_slt_{i:03d}.flac"
        text = audio.with_suffix(".txt").read_text(encoding="utf-8").strip()
        rows.append(Utterance(audio.stem, audio, "slt", audio_info(audio).duration, text, split="train"))
    write_manifest(tmp_path / "m" / "manifest.tsv", rows)
    return tmp_path / "m" / "manifest.tsv"


@pytest.mark.skipif(not TOY.is_dir(), reason="examples/toy is not in this checkout")
def test_transcripts_replace_the_text_and_are_scored_against_it(manifest: Path, tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper")
    result = CliRunner().invoke(
        app, ["transcribe", str(manifest), "-o", str(tmp_path / "out"), "--asr", "whisper-base"]
    )
    assert result.exit_code == 0, result.output
    before, after = read_manifest(manifest), read_manifest(tmp_path / "out" / "manifest.tsv")
    assert [u.id for u in after] == [u.id for u in before] and [u.audio for u in after] == [u.audio for u in before]
    assert [u.extra["text_original"] for u in after] == [u.text for u in before]
    assert all(u.text for u in after) and [u.text for u in after] != [u.text for u in before]  # punctuation, casing...
    assert "CER / WER against the original text" in result.output  # Whisper base reads the toy voice: low CER
    import json

    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["asr"] == "whisper-base" and meta["cer"] < 0.25


def test_an_empty_split_is_one_line_and_writes_nothing(manifest: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["transcribe", str(manifest), "-o", str(tmp_path / "o"), "--split", "heldout"])
    assert result.exit_code == 2 and "no utterances in split 'heldout'" in result.output
    assert not (tmp_path / "o").exists()
