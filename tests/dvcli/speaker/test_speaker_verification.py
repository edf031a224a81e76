"""Trial lists, EER tables clean and noisy, embedding export."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dvcli.audio import load_audio
from dvcli.errors import UserError
from dvcli.evaluation.noise import NoiseSource
from dvcli.manifest import Utterance
from dvcli.speaker.verification import (
    Trial,
    evaluate_trials,
    export_embeddings,
    make_trials,
    read_trials,
    results_table,
    write_results,
    write_trials,
)
from dvcli.testing import make_corpus


def _utts(speakers: int, each: int) -> list[Utterance]:
    return [
        Utterance(f"s{s}_{i}", Path(f"/x/s{s}_{i}.wav"), f"s{s}", 1.0) for s in range(speakers) for i in range(each)
    ]


def _triples(trials: list[Trial]) -> list[tuple[str, str, int]]:
    return [(t.enrol.stem, t.test.stem, t.label) for t in trials]


def test_all_pairs_when_small() -> None:
    trials = _triples(make_trials(_utts(3, 4)))
    assert len(trials) == 12 * 11 // 2 and len(set((a, b) for a, b, _ in trials)) == len(trials)
    assert sum(label for *_, label in trials) == 3 * 6
    assert all((a.split("_")[0] == b.split("_")[0]) == bool(label) for a, b, label in trials)


def test_capped_lists_keep_targets_and_are_seeded() -> None:
    utts = _utts(20, 6)  # 7140 pairs, 300 of them targets
    trials = _triples(make_trials(utts, max_trials=1000, seed=3))
    assert len(trials) == 1000 and sum(label for *_, label in trials) == 300
    assert len({(a, b) for a, b, _ in trials}) == 1000
    assert trials == _triples(make_trials(utts, max_trials=1000, seed=3))


def test_per_speaker_draws_pair_each_target_with_a_nontarget() -> None:
    trials = make_trials(_utts(3, 4), per_speaker=2, seed=1)
    assert [t.label for t in trials] == [1, 0] * 6
    assert all(a.enrol == b.enrol for a, b in zip(trials[::2], trials[1::2]))
    assert trials == make_trials(_utts(3, 4), per_speaker=2, seed=1)


def test_trials_need_two_speakers_and_a_target() -> None:
    with pytest.raises(UserError, match="two speakers"):
        make_trials(_utts(1, 5))
    with pytest.raises(UserError, match="same-speaker"):
        make_trials(_utts(4, 1))


def test_trial_files_round_trip_and_check_ids(tmp_path: Path) -> None:
    utts = make_corpus(tmp_path / "c", speakers=2, utterances=3)
    trials = make_trials(utts)
    write_trials(tmp_path / "lists" / "t.tsv", trials)
    lines = (tmp_path / "lists" / "t.tsv").read_text().splitlines()
    assert lines[0] == "enrol\ttest\tlabel\tcondition" and lines[1].startswith("../c/")  # relative to the file
    assert read_trials(tmp_path / "lists" / "t.tsv") == [
        dataclasses.replace(t, enrol=t.enrol.resolve(), test=t.test.resolve()) for t in trials
    ]
    known = {u.id: u.audio for u in utts}
    # Older pretrain-speaker lists: no header, utterance ids, target/nontarget labels.
    (tmp_path / "ids.tsv").write_text(f"{utts[0].id} {utts[1].id} target\n{utts[0].id} {utts[4].id} nontarget\n")
    assert [(t.test, t.label) for t in read_trials(tmp_path / "ids.tsv", known)] == [
        (utts[1].audio, 1),
        (utts[4].audio, 0),
    ]
    (tmp_path / "bad.tsv").write_text(f"{utts[0].id} s9_9 target\n")
    with pytest.raises(UserError, match="'s9_9' is neither an audio file"):
        read_trials(tmp_path / "bad.tsv", known)
    (tmp_path / "bad2.tsv").write_text(f"{utts[0].id} {utts[1].id} maybe\n")
    with pytest.raises(UserError, match="bad2.tsv:1"):
        read_trials(tmp_path / "bad2.tsv", known)
    (tmp_path / "bom.tsv").write_text(
        "\ufeffenroll\ttest\tlabel\n" + lines[1].rsplit("\t", 1)[0].replace("../", "") + "\n"
    )
    assert len(read_trials(tmp_path / "bom.tsv")) == 1  # a byte-order mark and the "enroll" spelling


def _by_pitch(clips: list[torch.Tensor]) -> torch.Tensor:
    """A crude "encoder": the log spectrum's low band, enough to tell synthetic speakers apart."""
    rows = []
    for clip in clips:
        spectrum = torch.fft.rfft(torch.as_tensor(clip)[:16000], n=16000).abs()[:400]
        rows.append(torch.log(spectrum.reshape(40, 10).mean(-1) + 1e-3))
    out = torch.stack(rows)
    return out - out.mean(-1, keepdim=True)


def test_evaluation_clean_and_noisy_side_by_side(tmp_path: Path) -> None:
    utts = make_corpus(tmp_path / "c", speakers=3, utterances=3, seconds=(1.0, 1.2))
    trials = make_trials(utts)
    results = evaluate_trials(_by_pitch, {"seen": trials}, snrs=(10.0, -10.0), noise=NoiseSource(None), seed=0)
    row = results["seen"]
    assert list(row) == ["clean", "noisy 10 dB", "noisy -10 dB"]
    assert row["clean"].eer == 0.0 and row["clean"].trials == 36 and row["clean"].targets == 9
    assert row["noisy -10 dB"].eer > row["clean"].eer  # noise must hurt this crude encoder
    again = evaluate_trials(_by_pitch, {"seen": trials}, snrs=(10.0, -10.0), seed=0)
    assert again == results  # the noise is seeded
    write_results(tmp_path / "out", results, {"seen": "seen speakers"})
    assert json.loads((tmp_path / "out" / "eer.json").read_text())["seen"]["clean"]["trials"] == 36
    table = (tmp_path / "out" / "eer.md").read_text()
    assert "| seen speakers (36 trials, 9 target) | 0.00% (0.000) |" in table
    assert results_table(results).splitlines()[0] == "| trials | clean | noisy 10 dB | noisy -10 dB |"


def test_export_embeddings(tmp_path: Path) -> None:
    utts = make_corpus(tmp_path / "c", speakers=2, utterances=3)
    export_embeddings(_by_pitch, utts, tmp_path, batch=4)
    array = np.load(tmp_path / "embeddings.npy")
    lines = (tmp_path / "embeddings.tsv").read_text().splitlines()
    assert array.shape == (6, 40) and array.dtype == np.float32
    assert lines[0] == "row\tid\tspeaker\tsplit" and lines[4].split("\t")[:3] == ["3", utts[3].id, utts[3].speaker]
    torch.testing.assert_close(torch.from_numpy(array[3]), _by_pitch([load_audio(utts[3].audio)])[0])
