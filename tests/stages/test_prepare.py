"""dv prepare on every corpus layout, built small in tmp_path, and on the bundled toy corpus."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dvcli.errors import UserError
from dvcli.manifest import read_manifest
from dvcli.testing import make_corpus
from stages.demo import default_corpus
from stages.prepare import PrepareConfig, detect_format, run


def _wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.full(int(seconds * rate), 0.1, np.float32), rate)


def _prepare(source: Path, out: Path, **kwargs: object):
    return run(PrepareConfig(source=source, out=out, **kwargs))


def test_folder_layout(tmp_path: Path) -> None:
    rows = make_corpus(tmp_path / "corpus", speakers=3, utterances=2, seconds=(1.0, 1.0))
    result = _prepare(tmp_path / "corpus", tmp_path / "out")
    assert (result.format, result.utterances, result.speakers) == ("folder", 6, 3)
    manifest = read_manifest(result.manifest)
    assert [u.id for u in manifest] == [r.id for r in rows]
    assert manifest[0].text == "speaker 0 says sentence number 0."
    assert manifest[0].duration == pytest.approx(1.0)
    assert manifest[0].audio == rows[0].audio
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"manifest.tsv", "config.yaml", "meta.json"}


def test_folder_layout_metadata_tsv_and_speakers_tsv(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    for spk in ("alice", "bob", "carol"):
        _wav(corpus / spk / f"{spk}1.flac")
        (corpus / spk / "metadata.tsv").write_text(f"{spk}1.flac\tHi, I am {spk}.\n")
    (corpus / "speakers.tsv").write_text("speaker\tsplit\nalice\ttrain\nbob\theldout\ncarol\ttrain\n")
    result = _prepare(corpus, tmp_path / "out")
    manifest = {u.id: u for u in read_manifest(result.manifest)}
    assert manifest["bob1"].text == "Hi, I am bob." and manifest["bob1"].split == "heldout"
    assert manifest["alice1"].split == "train" and result.heldout_speakers == ["bob"]


def test_speakers_heldout_is_seeded_and_validated(tmp_path: Path) -> None:
    make_corpus(tmp_path / "c", speakers=4, utterances=1)
    first = _prepare(tmp_path / "c", tmp_path / "o1", speakers_heldout=2, seed=3)
    again = _prepare(tmp_path / "c", tmp_path / "o2", speakers_heldout=2, seed=3)
    assert len(first.heldout_speakers) == 2 and first.heldout_speakers == again.heldout_speakers
    splits = {u.speaker: u.split for u in read_manifest(first.manifest)}
    assert sorted(s for s, v in splits.items() if v == "heldout") == first.heldout_speakers
    with pytest.raises(UserError, match="no speaker would be left"):
        _prepare(tmp_path / "c", tmp_path / "o3", speakers_heldout=4)


def test_ljspeech_layout(tmp_path: Path) -> None:
    src = tmp_path / "LJSpeech-1.1"
    for i in range(3):
        _wav(src / "wavs" / f"LJ001-000{i}.wav", 22050 / 22050, 22050)
    (src / "metadata.csv").write_text(
        "LJ001-0000|Printing, in 1850|Printing, in eighteen fifty\nLJ001-0001|raw|\nLJ001-0002|x|y\n"
    )
    assert detect_format(src) == "ljspeech"
    manifest = read_manifest(_prepare(src, tmp_path / "out").manifest)
    assert [u.text for u in manifest] == ["Printing, in eighteen fifty", "raw", "y"]
    assert {u.speaker for u in manifest} == {"LJ"}


def test_vctk_layout_keeps_one_microphone(tmp_path: Path) -> None:
    src = tmp_path / "VCTK"
    for spk in ("p225", "p226"):
        for n in (1, 2):
            for mic in (1, 2):
                _wav(src / "wav48_silence_trimmed" / spk / f"{spk}_00{n}_mic{mic}.flac")
            (src / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (src / "txt" / spk / f"{spk}_00{n}.txt").write_text(f"Sentence {n} of {spk}.\n")
    assert detect_format(src) == "vctk"
    manifest = read_manifest(_prepare(src, tmp_path / "out").manifest)
    assert [u.id for u in manifest] == ["p225_001", "p225_002", "p226_001", "p226_002"]
    assert manifest[0].audio.name == "p225_001_mic1.flac" and manifest[3].text == "Sentence 2 of p226."
    mic2 = read_manifest(_prepare(src, tmp_path / "out2", vctk_mic=2).manifest)
    assert mic2[0].audio.name == "p225_001_mic2.flac"


def test_libritts_layout(tmp_path: Path) -> None:
    src = tmp_path / "LibriTTS"
    for spk, chapter in (("19", "198"), ("103", "1240")):
        folder = src / "train-clean-100" / spk / chapter
        for n in range(2):
            stem = f"{spk}_{chapter}_000000_00000{n}"
            _wav(folder / f"{stem}.wav", 1.0, 24000)
            (folder / f"{stem}.normalized.txt").write_text(f"Text {n}.")
            (folder / f"{stem}.original.txt").write_text(f"TEXT {n}")
    assert detect_format(src) == "libritts"
    result = _prepare(src, tmp_path / "out")
    manifest = read_manifest(result.manifest)
    assert result.speakers == 2 and len(manifest) == 4
    assert {u.speaker for u in manifest} == {"19", "103"} and manifest[0].text in ("Text 0.", "Text 1.")


def test_bad_files_are_listed_and_skipped(tmp_path: Path) -> None:
    make_corpus(tmp_path / "c", speakers=2, utterances=2)
    (tmp_path / "c" / "spk0" / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (tmp_path / "c" / "spk0" / "empty.wav").write_bytes(b"")
    sf.write(str(tmp_path / "c" / "spk1" / "zero.wav"), np.zeros(0, np.float32), 16000)
    result = _prepare(tmp_path / "c", tmp_path / "out")
    assert result.utterances == 4
    assert sorted(p.name for p, _ in result.unreadable) == ["corrupt.wav", "empty.wav", "zero.wav"]
    assert "corrupt.wav" in (tmp_path / "out" / "skipped.tsv").read_text()


def test_duration_limits(tmp_path: Path) -> None:
    for i, seconds in enumerate((0.3, 1.0, 5.0)):
        _wav(tmp_path / "c" / "s" / f"u{i}.wav", seconds)
    result = _prepare(tmp_path / "c", tmp_path / "out", min_duration=0.5, max_duration=4.0)
    assert result.utterances == 1 and result.filtered == 2


def test_nothing_usable_fails_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "c" / "s").mkdir(parents=True)
    (tmp_path / "c" / "s" / "bad.wav").write_bytes(b"nope")
    with pytest.raises(UserError, match="no usable utterances"):
        _prepare(tmp_path / "c", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no audio files found"):
        _prepare(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UserError, match="corpus folder not found"):
        _prepare(tmp_path / "missing", tmp_path / "out")


def test_toy_corpus(tmp_path: Path) -> None:
    result = _prepare(default_corpus(), tmp_path / "toy")
    assert result.utterances >= 200 and result.speakers >= 8
    assert len(result.heldout_speakers) == 2 and not result.unreadable
    manifest = read_manifest(result.manifest)
    assert all(u.text for u in manifest)
    assert {u.split for u in manifest} == {"train", "heldout"}


def _kaldi_dir(folder_manifest: Path, kaldi: Path) -> None:
    """A Kaldi data directory listing the files of a prepared folder corpus (relative wav.scp paths)."""
    rows = read_manifest(folder_manifest)
    kaldi.mkdir(parents=True)
    (kaldi / "wav.scp").write_text("".join(f"{u.id} {os.path.relpath(u.audio, kaldi)}\n" for u in rows))
    (kaldi / "utt2spk").write_text("".join(f"{u.id} {u.speaker}\n" for u in rows))
    (kaldi / "text").write_text("".join(f"{u.id} {u.text}\n" for u in rows))


def test_kaldi_data_directory_reads_into_the_folder_corpus_manifest(tmp_path: Path) -> None:
    make_corpus(tmp_path / "corpus", speakers=3, utterances=2, seconds=(1.0, 1.2))
    folder = read_manifest(_prepare(tmp_path / "corpus", tmp_path / "from-folder").manifest)
    _kaldi_dir(tmp_path / "from-folder" / "manifest.tsv", tmp_path / "data" / "train")
    assert detect_format(tmp_path / "data" / "train") == "kaldi"
    kaldi = read_manifest(_prepare(tmp_path / "data" / "train", tmp_path / "from-kaldi").manifest)

    def key(u):  # noqa: ANN001, ANN202
        return (u.id, u.audio.resolve(), u.speaker, round(u.duration, 4), u.text)

    assert sorted(map(key, kaldi)) == sorted(map(key, folder)) and len(kaldi) == 6


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: (d / "wav.scp").write_text("u1 sox in.flac -t wav - |\n"), "is a command"),
        (lambda d: (d / "segments").write_text("spk0_000 rec1 0.0\n"), "segments:1: expected 'utterance recording"),
        (lambda d: (d / "segments").write_text("spk0_000 rec1 1.0 0.5\n"), "runs from 1 s to 0.5 s"),
        (lambda d: (d / "segments").write_text("spk0_000 rec1 0 -1\n"), "cut from 'rec1', which wav.scp does not"),
        (lambda d: (d / "utt2spk").write_text("other spk\n"), "no speaker for utterance"),
        (lambda d: (d / "utt2spk").write_text("lonely\n"), "utt2spk:1: 'lonely' has no value"),
    ],
)
def test_kaldi_data_directory_mistakes_are_one_line(tmp_path: Path, change, message: str) -> None:  # noqa: ANN001
    make_corpus(tmp_path / "corpus", speakers=1, utterances=1, seconds=(1.0, 1.0))
    _kaldi_dir(_prepare(tmp_path / "corpus", tmp_path / "m").manifest, tmp_path / "kaldi")
    change(tmp_path / "kaldi")
    with pytest.raises(UserError, match=message):
        _prepare(tmp_path / "kaldi", tmp_path / "out", format="kaldi")
    assert not (tmp_path / "out").exists()
