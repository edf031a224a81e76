"""Checks for the offline toy speech corpus in examples/toy.

The fast test only reads the shipped files. The slow one regenerates the
corpus with examples/toy/make_corpus.sh --check (needs flite, espeak-ng, sox
and flac) and compares it with SHA256SUMS.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TOY = Path(__file__).resolve().parents[1] / "examples" / "toy"

SAMPLE_RATE = 16_000
MIN_SECONDS, MAX_SECONDS = 0.5, 8.0
MIN_RMS = 0.01  # about -40 dBFS; the corpus is normalised to a -6 dBFS peak
MAX_BYTES = 10_000_000  # 10 MB, counted like `du -sb`


def _speakers() -> list[dict[str, str]]:
    with open(TOY / "speakers.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _flacs() -> list[Path]:
    return sorted(TOY.glob("*/*.flac"))


def _apparent_size(root: Path) -> int:
    """Sum of apparent sizes of root and everything below it (as `du -sb`)."""
    total = root.stat().st_size
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def test_toy_corpus_layout_and_audio():
    assert TOY.is_dir(), f"missing corpus folder {TOY}"

    rows = _speakers()
    assert rows, "speakers.tsv is empty"
    assert list(rows[0].keys()) == ["speaker", "voice", "split", "gender"]
    names = [r["speaker"] for r in rows]
    assert len(set(names)) == len(names), "duplicate speaker in speakers.tsv"
    for r in rows:
        assert (TOY / r["speaker"]).is_dir(), f"no folder for speaker {r['speaker']}"
        assert r["voice"].strip(), f"no voice for {r['speaker']}"
        assert r["split"] in {"train", "heldout"}, r
        assert r["gender"] in {"f", "m"}, r
    heldout = [r["speaker"] for r in rows if r["split"] == "heldout"]
    assert len(heldout) == 2, f"expected exactly 2 heldout speakers, got {heldout}"

    sentences = {
        line.strip() for line in (TOY / "sentences.txt").read_text(encoding="utf-8").splitlines() if line.strip()
    }
    assert sentences, "sentences.txt is empty"

    flacs = _flacs()
    assert len(flacs) >= 200, f"only {len(flacs)} utterances"
    speakers_with_audio = {p.parent.name for p in flacs}
    assert len(speakers_with_audio) >= 8, f"only {len(speakers_with_audio)} speakers"
    assert speakers_with_audio <= set(names), "speaker folders missing from speakers.tsv"

    for path in flacs:
        assert path.stem.startswith(path.parent.name + "_"), f"bad file name {path}"
        info = sf.info(str(path))
        assert info.samplerate == SAMPLE_RATE, f"{path}: {info.samplerate} Hz"
        assert info.channels == 1, f"{path}: {info.channels} channels"
        assert info.subtype == "PCM_16", f"{path}: {info.subtype}"
        audio, sr = sf.read(str(path), dtype="float64")
        seconds = len(audio) / sr
        assert MIN_SECONDS <= seconds <= MAX_SECONDS, f"{path}: {seconds:.2f} s"
        rms = float(np.sqrt(np.mean(np.square(audio))))
        assert rms > MIN_RMS, f"{path}: RMS {rms:.4f} (silent?)"

        txt = path.with_suffix(".txt")
        assert txt.is_file(), f"no transcript for {path}"
        text = txt.read_text(encoding="utf-8").strip()
        assert text, f"empty transcript {txt}"
        assert "\n" not in text, f"transcript {txt} has more than one line"
        assert text in sentences, f"{txt}: {text!r} is not in sentences.txt"

    size = _apparent_size(TOY)
    assert size <= MAX_BYTES, f"examples/toy is {size} bytes (> {MAX_BYTES})"


@pytest.mark.slow
def test_toy_corpus_regenerates_byte_for_byte():
    missing = [t for t in ("flite", "espeak-ng", "sox", "flac", "bash") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install -y flite espeak-ng sox libsox-fmt-all flac)")
    result = subprocess.run(
        ["bash", str(TOY / "make_corpus.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _make_sentences(tmp_path: Path, *args: str) -> list[str]:
    import sys

    out = tmp_path / "sentences.txt"
    subprocess.run([sys.executable, str(TOY / "make_sentences.py"), *args, "-o", str(out)], check=True, timeout=60)
    return out.read_text(encoding="utf-8").splitlines()


def test_make_sentences_is_seeded_distinct_and_leaves_the_test_sentences_out(tmp_path: Path) -> None:
    sentences = _make_sentences(tmp_path, "720", "--exclude", str(TOY / "sentences.txt"))
    assert len(sentences) == len(set(sentences)) == 720
    assert sentences == _make_sentences(tmp_path, "720", "--exclude", str(TOY / "sentences.txt"))
    assert sentences != _make_sentences(tmp_path, "720", "--seed", "1")
    test_sentences = {s.lower() for s in (TOY / "sentences.txt").read_text().splitlines()}
    assert not test_sentences & {s.lower() for s in sentences}
    assert all(s[0].isupper() and s.endswith(".") and 4 <= len(s.split()) <= 12 for s in sentences)


def test_make_corpus_reads_other_sentences_into_another_folder(tmp_path: Path) -> None:
    missing = [t for t in ("flite", "espeak-ng", "sox", "flac", "bash") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install -y flite espeak-ng sox libsox-fmt-all flac)")
    sentences = _make_sentences(tmp_path, "2")
    out = tmp_path / "corpus"
    subprocess.run(
        ["bash", str(TOY / "make_corpus.sh"), "--sentences", str(tmp_path / "sentences.txt"), str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert (out / "flite_slt" / "flite_slt_002.txt").read_text().strip() == sentences[1]
    assert len(list(out.glob("*/*.flac"))) == 2 * len(_speakers())
    refused = subprocess.run(
        ["bash", str(TOY / "make_corpus.sh"), "--sentences", str(tmp_path / "sentences.txt"), str(TOY)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "not over the shipped corpus" in refused.stderr
