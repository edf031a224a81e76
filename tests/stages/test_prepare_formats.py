"""dv prepare on the corpus descriptions of other toolkits (Kaldi segments, lhotse, Hugging Face datasets)
and on the CHiME-3 layout: each reads into the same manifest as the equivalent folder corpus."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dvcli.errors import UserError
from dvcli.manifest import Utterance, read_manifest
from dvcli.testing import make_corpus
from stages.prepare import PrepareConfig, detect_format, run


def _prepare(source: Path, out: Path, **kwargs: object) -> list[Utterance]:
    return read_manifest(run(PrepareConfig(source=source, out=out, **kwargs)).manifest)


def _same_manifest(got: list[Utterance], want: list[Utterance]) -> None:
    """Same ids, speakers, texts and durations, and the same samples behind every audio path."""

    def key(u: Utterance) -> tuple:
        return (u.id, u.speaker, round(u.duration, 4), u.text)

    assert sorted(map(key, got)) == sorted(map(key, want)) and got
    audio = {u.id: u.audio for u in want}
    for u in got:
        np.testing.assert_array_equal(sf.read(u.audio, dtype="int16")[0], sf.read(audio[u.id], dtype="int16")[0])


@pytest.fixture
def folder(tmp_path: Path) -> list[Utterance]:
    """A folder corpus (3 speakers x 2 utterances of 16-bit WAV) and its manifest."""
    make_corpus(tmp_path / "corpus", speakers=3, utterances=2, seconds=(1.0, 1.3))
    return _prepare(tmp_path / "corpus", tmp_path / "from-folder")


def _recordings(rows: list[Utterance], folder: Path) -> dict[str, tuple[Path, list[tuple[Utterance, float, float]]]]:
    """One long recording per speaker, its utterances end to end with 0.25 s of silence before each; (utterance, start s, end s)."""
    out = {}
    folder.mkdir(parents=True, exist_ok=True)
    for speaker in sorted({u.speaker for u in rows}):
        pieces, spans, t = [], [], 0.0
        for u in (u for u in rows if u.speaker == speaker):
            wav, rate = sf.read(u.audio, dtype="int16")
            pieces += [np.zeros(rate // 4, np.int16), wav]
            spans.append((u, t + 0.25, t + 0.25 + len(wav) / rate))
            t += 0.25 + len(wav) / rate
        path = folder / f"{speaker}-session.wav"
        sf.write(path, np.concatenate(pieces), 16000, subtype="PCM_16")
        out[speaker] = (path, spans)
    return out


# -- Kaldi segments -------------------------------------------------------------------------------


def test_kaldi_segments_cut_recordings_into_the_folder_corpus_manifest(tmp_path: Path, folder: list) -> None:
    kaldi = tmp_path / "data" / "train"
    recordings = _recordings(folder, tmp_path / "sessions")
    kaldi.mkdir(parents=True)
    (kaldi / "wav.scp").write_text(
        "".join(f"{s}-rec {os.path.relpath(p, kaldi)}\n" for s, (p, _) in recordings.items())
    )
    lines = [
        f"{u.id} {s}-rec {start:.6f} {end:.6f}\n" for s, (_, spans) in recordings.items() for u, start, end in spans
    ]
    (kaldi / "segments").write_text("".join(lines))
    (kaldi / "utt2spk").write_text("".join(f"{u.id} {u.speaker}\n" for u in folder))
    (kaldi / "text").write_text("".join(f"{u.id} {u.text}\n" for u in folder))
    got = _prepare(kaldi, tmp_path / "from-kaldi")
    _same_manifest(got, folder)
    # a segment past its recording's end is listed in skipped.tsv, not cut short silently
    first = lines[0].split()
    (kaldi / "segments").write_text(" ".join([*first[:3], "200"]) + "\n" + "".join(lines[1:]))
    assert len(_prepare(kaldi, tmp_path / "late")) == len(folder) - 1
    assert "outside" in (tmp_path / "late" / "skipped.tsv").read_text()
    # a segment listed twice is refused
    (kaldi / "segments").write_text(lines[0] + "".join(lines))
    with pytest.raises(UserError, match="segments:2: segment '.*' is listed twice"):
        _prepare(kaldi, tmp_path / "twice")
    assert all(u.audio.parent == (tmp_path / "from-kaldi" / "audio").resolve() for u in got)
    assert not any(p.suffix == ".wav" for p in (tmp_path / "from-kaldi" / "audio").iterdir())


# -- lhotse ---------------------------------------------------------------------------------------


def test_lhotse_recordings_and_supervisions_read_into_the_folder_corpus_manifest(tmp_path: Path, folder: list) -> None:
    lhotse = pytest.importorskip("lhotse")
    recordings = lhotse.RecordingSet.from_recordings(lhotse.Recording.from_file(u.audio, u.id) for u in folder)
    supervisions = lhotse.SupervisionSet.from_segments(
        lhotse.SupervisionSegment(u.id, u.id, 0.0, u.duration, speaker=u.speaker, text=u.text) for u in folder
    )
    source = tmp_path / "lhotse"
    source.mkdir()
    recordings.to_file(source / "toy_recordings_train.jsonl.gz")
    supervisions.to_file(source / "toy_supervisions_train.jsonl.gz")
    assert detect_format(source) == "lhotse"
    got = _prepare(source, tmp_path / "from-lhotse")
    _same_manifest(got, folder)
    assert {u.audio for u in got} == {u.audio for u in folder}  # whole files are listed where they are
    assert not (tmp_path / "from-lhotse" / "audio").exists()


def test_lhotse_cuts_over_long_recordings_are_cut_out_with_lhotse(tmp_path: Path, folder: list) -> None:
    lhotse = pytest.importorskip("lhotse")
    sessions = _recordings(folder, tmp_path / "sessions")
    recordings = lhotse.RecordingSet.from_recordings(lhotse.Recording.from_file(p, s) for s, (p, _) in sessions.items())
    supervisions = lhotse.SupervisionSet.from_segments(
        lhotse.SupervisionSegment(u.id, s, start, end - start, speaker=u.speaker, text=u.text)
        for s, (_, spans) in sessions.items()
        for u, start, end in spans
    )
    source = tmp_path / "lhotse"
    source.mkdir()
    lhotse.CutSet.from_manifests(recordings=recordings, supervisions=supervisions).to_file(
        source / "cuts_train.jsonl.gz"
    )
    _same_manifest(_prepare(source, tmp_path / "from-cuts", format="lhotse"), folder)


def test_lhotse_supervisions_outside_their_recordings_are_refused(tmp_path: Path, folder: list) -> None:
    lhotse = pytest.importorskip("lhotse")
    u = folder[0]
    recordings = lhotse.RecordingSet.from_recordings([lhotse.Recording.from_file(u.audio, "rec")])
    for name, segment, message in (
        ("long", lhotse.SupervisionSegment("a", "rec", 1.0, 50.0, speaker="s"), "runs from 1 s to 51 s, outside"),
        ("orphan", lhotse.SupervisionSegment("a", "nope", 0.0, 0.5, speaker="s"), "recording 'nope', which no"),
    ):
        source = tmp_path / name
        source.mkdir()
        recordings.to_file(source / "x_recordings.jsonl.gz")
        lhotse.SupervisionSet.from_segments([segment]).to_file(source / "x_supervisions.jsonl.gz")
        with pytest.raises(UserError, match=message):
            _prepare(source, tmp_path / "out", format="lhotse")
    assert not (tmp_path / "out").exists()


def test_lhotse_mistakes_are_one_line(tmp_path: Path, folder: list) -> None:
    lhotse = pytest.importorskip("lhotse")
    source = tmp_path / "lhotse"
    source.mkdir()
    lhotse.SupervisionSet.from_segments(
        [lhotse.SupervisionSegment("a", "rec", 0.0, 1.0, speaker="s", text="t")]
    ).to_file(source / "x_supervisions.jsonl.gz")
    with pytest.raises(UserError, match="supervisions without a recordings manifest"):
        _prepare(source, tmp_path / "out", format="lhotse")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no lhotse manifests"):
        _prepare(empty, tmp_path / "out", format="lhotse")
    assert not (tmp_path / "out").exists()


# -- Hugging Face datasets ------------------------------------------------------------------------


def _hf_rows(rows: list[Utterance], *, embed: bool) -> dict[str, list]:
    audio = [{"bytes": u.audio.read_bytes(), "path": u.audio.name} if embed else str(u.audio) for u in rows]
    return {
        "id": [u.id for u in rows],
        "audio": audio,
        "sentence": [u.text for u in rows],
        "speaker_id": [u.speaker for u in rows],
    }


def test_hf_dataset_with_embedded_audio_reads_into_the_folder_corpus_manifest(tmp_path: Path, folder: list) -> None:
    datasets = pytest.importorskip("datasets")
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_hf_rows(folder[:4], embed=True)).cast_column(
                "audio", datasets.Audio()
            ),
            "test": datasets.Dataset.from_dict(_hf_rows(folder[4:], embed=True)).cast_column("audio", datasets.Audio()),
        }
    )
    splits.save_to_disk(str(tmp_path / "hf"))
    assert detect_format(tmp_path / "hf") == "hf"
    got = _prepare(tmp_path / "hf", tmp_path / "from-hf", text_column="sentence", speaker_column="speaker_id")
    _same_manifest(got, folder)
    assert len(list((tmp_path / "from-hf" / "audio").glob("*.flac"))) == 6


def test_hf_dataset_with_audio_paths_lists_the_files(tmp_path: Path, folder: list) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict(_hf_rows(folder, embed=False)).save_to_disk(str(tmp_path / "hf"))
    got = _prepare(tmp_path / "hf", tmp_path / "from-hf", text_column="sentence", speaker_column="speaker_id")
    _same_manifest(got, folder)
    assert {u.audio for u in got} == {u.audio for u in folder}


def test_hf_dataset_missing_column_names_the_columns(tmp_path: Path, folder: list) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict(_hf_rows(folder, embed=False)).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(
        UserError,
        match=r"no column .text. \(columns: id, audio, sentence, speaker_id\); name it with --text-column COLUMN",
    ):
        _prepare(tmp_path / "hf", tmp_path / "out", format="hf")
    assert not (tmp_path / "out").exists()


# -- CHiME-3 --------------------------------------------------------------------------------------


def test_chime3_booth_and_real_noisy_recordings_with_their_conditions(tmp_path: Path, folder: list) -> None:
    root = tmp_path / "CHiME3"
    isolated = root / "data" / "audio" / "16kHz" / "isolated"
    envs = [("bth", "BTH", 0), ("bus_real", "BUS", 5), ("caf_real", "CAF", 5)]
    wsj = {u.id: f"05{i}C010{i}" for i, u in enumerate(folder)}
    speakers = {"spk0": "F01", "spk1": "M03", "spk2": "F04"}
    dot = []
    for u in folder:
        for env, tag, channel in envs:
            stem = f"{speakers[u.speaker]}_{wsj[u.id]}_{tag}"
            (isolated / f"dt05_{env}").mkdir(parents=True, exist_ok=True)
            for ch in {channel, 1}:  # another channel beside the kept one
                (isolated / f"dt05_{env}" / f"{stem}.CH{ch}.wav").write_bytes(u.audio.read_bytes())
            dot.append(f"{u.text.upper()} [door_slam] ({stem.lower()})\n")
    (isolated / "dt05_bus_simu").mkdir()  # simulated data is not read
    (isolated / "dt05_bus_simu" / "F01_X_BUS.CH5.wav").write_bytes(folder[0].audio.read_bytes())
    (root / "data" / "transcriptions").mkdir(parents=True)
    (root / "data" / "transcriptions" / "dt05_real.dot_all").write_text("".join(dot))
    assert detect_format(root) == "chime3"
    got = _prepare(root, tmp_path / "from-chime")
    assert len(got) == 3 * len(folder)
    assert {u.condition for u in got} == {"booth", "bus", "cafe"}
    for u in got:
        original = next(v for v in folder if wsj[v.id] == u.id.split("_")[1])
        assert u.speaker == speakers[original.speaker] and u.text == original.text.upper()
        assert u.audio.name.endswith(".CH0.wav" if u.condition == "booth" else ".CH5.wav")
        assert u.duration == pytest.approx(original.duration)
    with pytest.raises(UserError, match="tablet has channels 1 to 6"):
        _prepare(root, tmp_path / "ch7", chime_channel=7)


def test_noisy_fraction_makes_the_paper_s_noisy_training_variant(tmp_path: Path, folder: list) -> None:
    rows = _prepare(tmp_path / "corpus", tmp_path / "noisy", noisy_fraction=0.5, snr=0.0, speakers_heldout=1)
    train = [u for u in rows if u.split != "heldout"]
    noisy = [u for u in train if u.condition == "noisy"]
    assert len(noisy) == len(train) // 2 and all(u.condition == "clean" for u in train if u not in noisy)
    assert all(u.condition == "" for u in rows if u.split == "heldout")  # the test speakers stay as recorded
    clean = {u.id: u.audio for u in folder}
    for u in noisy:
        assert u.audio.parent == (tmp_path / "noisy" / "audio").resolve() and u.extra["snr"] == "0"
        x, _ = sf.read(clean[u.id], dtype="float64")
        y, _ = sf.read(u.audio, dtype="float64")
        gain = float(x @ y / (x @ x))  # the mix may be scaled down as a whole to avoid clipping
        snr = 10 * np.log10(np.sum((gain * x) ** 2) / np.sum((y - gain * x) ** 2))
        assert abs(snr) < 0.3
    again = _prepare(tmp_path / "corpus", tmp_path / "noisy2", noisy_fraction=0.5, snr=0.0, speakers_heldout=1)
    assert [u.condition for u in again] == [u.condition for u in rows]  # seeded
    with pytest.raises(UserError, match="noisy_fraction 1.5"):
        _prepare(tmp_path / "corpus", tmp_path / "bad", noisy_fraction=1.5)
