"""report.html, the listening page of dv evaluate run: its files, its numbers, and the page in a real browser."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dvcli.errors import UserError
from dvcli.evaluation.clips import Clip, write_synth_table
from dvcli.evaluation.noise import mix_at_snr
from dvcli.manifest import read_manifest
from dvcli.testing import make_manifest
from stages import evaluate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _report(root: Path, **settings: object) -> Path:
    """Ground truth (2 speakers x 2 clips) and a clone system, clean and 0 dB, each row with its recording."""
    pytest.importorskip("resemblyzer")
    manifest = make_manifest(root / "gt", speakers=2, utterances=2, seconds=(1.0, 1.2))
    utts = read_manifest(manifest)
    rng = np.random.default_rng(0)
    clips = []
    for u in utts[::2]:
        ref = next(v.audio for v in utts if v.speaker == u.speaker and v.id != u.id)
        wav, rate = sf.read(u.audio, dtype="float32")
        noisy = root / "clone dir" / f"{u.id} 0dB.wav"  # spaces: the page must quote its URLs
        noisy.parent.mkdir(parents=True, exist_ok=True)
        sf.write(noisy, mix_at_snr(wav, rng.standard_normal(len(wav)), 0.0, rng), rate)
        extra = {"recording": str(u.audio)}
        clips.append(
            Clip("clone", f"{u.id}-clean", u.audio, u.text, ref, speaker=u.speaker, condition="clean", extra=extra)
        )
        clips.append(
            Clip(
                "clone", f"{u.id}-noisy", noisy, u.text, ref, speaker=u.speaker, condition="noisy", snr=0.0, extra=extra
            )
        )
    write_synth_table(root / "clone dir" / "synth.tsv", clips)
    out = root / "report"
    evaluate.run(
        evaluate.EvaluateConfig(
            systems=[root / "clone dir" / "synth.tsv"], ground_truth=manifest, out=out, metrics=["secs"], **settings
        )
    )
    return out


def _sources(page: str) -> list[str]:
    return [urllib.parse.unquote(html.unescape(s)) for s in re.findall(r'<(?:audio|img)[^>]* src="([^"]+)"', page)]


def test_page_shows_every_clip_with_reference_clone_and_ground_truth(tmp_path: Path) -> None:
    out = _report(tmp_path)
    page = (out / "report.html").read_text(encoding="utf-8")
    report = json.loads((out / "report.json").read_text())
    sections = re.findall(r'<section data-system="([^"]+)" data-condition="([^"]+)">(.*?)</section>', page, re.S)
    assert [(s, c) for s, c, _ in sections] == [(g["system"], g["condition"]) for g in report["groups"]]
    for system, _, body in sections:
        rows = re.findall(r"<tr><td>.*?</tr>", body, re.S)
        assert len(rows) == (4 if system == "ground truth" else 2)
        for row in rows:
            players = row.count("<audio")
            # a clone row: its reference, itself and the real recording; ground truth: the other clip of
            # the speaker its SECS is measured against, and itself as the recording
            assert players == (2 if system == "ground truth" else 3), row
    for source in _sources(page):
        assert (out / source).is_file(), source
    # one copy per distinct file: 4 recordings (2 of them also references) + 2 noisy clones
    assert len(list((out / "listen" / "audio").iterdir())) == 6
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in (out / "listen" / "spec").iterdir())
    assert '<img class="plot" src="secs.png"' in page


def test_missing_recordings_are_shown_as_dashes_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = _report(tmp_path)
    synth = tmp_path / "clone dir" / "synth.tsv"
    rows = list(csv.DictReader(synth.open(encoding="utf-8"), delimiter="\t"))
    with synth.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "recording": str(tmp_path / "gone.wav")} for r in rows)
    with caplog.at_level("WARNING"):
        evaluate.run(evaluate.EvaluateConfig(systems=[synth], out=tmp_path / "again", metrics=["secs"]))
    assert "audio file(s) the tables name are missing" in caplog.text
    with pytest.raises(UserError, match="page_rows -1"):
        evaluate.run(evaluate.EvaluateConfig(systems=[synth], out=tmp_path / "neg", metrics=["secs"], page_rows=-1))
    assert out.is_dir()


def test_page_rows_limit_and_switch_off(tmp_path: Path) -> None:
    out = _report(tmp_path / "one", page_rows=1)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<tr><td>", page)) == 3  # one row for each of the three system x condition cells
    out = _report(tmp_path / "none", page_rows=0)
    assert not (out / "report.html").exists() and not (out / "listen").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="needs a Chromium binary (apt-get install chromium)")
def test_page_in_headless_chromium_plays_every_clip_and_matches_report_json(tmp_path: Path) -> None:
    out = _report(tmp_path)
    dom = subprocess.run(
        [
            CHROMIUM,
            *("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"),
            *("--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"),
            "--virtual-time-budget=10000",  # let every player fetch its metadata before the DOM is dumped
            "--dump-dom",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    status = re.search(r'<p id="players" data-loaded="(\d+)" data-failed="(\d+)" data-total="(\d+)"', dom)
    assert status, dom[-2000:]
    loaded, failed, total = map(int, status.groups())
    assert total == dom.count("<audio") == 4 * 2 + 4 * 3 and (loaded, failed) == (total, 0)
    report = json.loads((out / "report.json").read_text())
    shown = {
        (html.unescape(s), html.unescape(c), m): float(v)
        for s, c, cells in re.findall(r'<tr data-system="([^"]+)" data-condition="([^"]+)">(.*?)</tr>', dom, re.S)
        for m, v in re.findall(r'data-metric="(\w+)" data-mean="([^"]+)"', cells)
    }
    expected = {(g["system"], g["condition"], m): s["mean"] for g in report["groups"] for m, s in g["metrics"].items()}
    assert shown == pytest.approx(expected) and len(shown) == 3
