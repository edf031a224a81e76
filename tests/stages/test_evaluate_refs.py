"""dv evaluate refs: the zero-shot test list (clean and noisy references, sentences to say)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from dvcli.cli import app
from dvcli.manifest import read_manifest
from dvcli.testing import make_manifest

runner = CliRunner()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_refs_are_other_utterances_of_the_speaker_at_the_asked_snr(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "data", speakers=3, utterances=3, seconds=(1.0, 2.0))
    out = tmp_path / "refs"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "refs",
            str(manifest),
            "-o",
            str(out),
            "--split",
            "",
            "--per-speaker",
            "2",
            "--snrs",
            "0,10",
            "--ref-seconds",
            "0.8",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = _rows(out / "batch.tsv")
    assert len(rows) == 3 * 2 * 3  # speakers x sentences x (clean + two SNRs)
    utts = {u.id: u for u in read_manifest(manifest)}
    for row in rows:
        test_id = row["id"].rsplit("-", 1)[0]
        assert row["text"] == utts[test_id].text and row["speaker"] == utts[test_id].speaker
        ref, clean = sf.read(out / row["ref"])[0], sf.read(out / row["ref_clean"])[0]
        assert len(ref) == len(clean) == int(0.8 * 16000)
        # the reference is not the test utterance itself: its audio differs from the test recording's start
        test_audio = sf.read(utts[test_id].audio)[0]
        assert not np.allclose(clean[:1000] / np.abs(clean).max(), test_audio[:1000] / np.abs(test_audio).max())
        if row["condition"] == "clean":
            assert row["ref"] == row["ref_clean"] and row["snr"] == ""
        else:
            noise = ref - clean
            snr = 10 * math.log10(np.mean(clean**2) / np.mean(noise**2))
            assert abs(snr - float(row["snr"])) < 0.2  # 16-bit rounding only


def test_refs_without_test_speakers_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "data", speakers=2, utterances=2)
    out = tmp_path / "refs"
    result = runner.invoke(app, ["evaluate", "refs", str(manifest), "-o", str(out)])
    assert result.exit_code == 2 and "dv prepare --speakers-heldout" in result.output
    assert not out.exists()
