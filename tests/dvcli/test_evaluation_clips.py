"""Reading systems for dv evaluate: synth.tsv, manifests as ground truth, condition labels and order."""

from __future__ import annotations

from pathlib import Path

import pytest

from dvcli.errors import UserError
from dvcli.evaluation.clips import (
    GROUND_TRUTH,
    Clip,
    condition_order,
    gather_clips,
    ground_truth_clips,
    read_system,
    system_order,
    write_synth_table,
)
from dvcli.testing import make_manifest


def _synth(path: Path, rows: list[str], header: str = "id\ttext\tref\tcondition\tout\tseconds\trtf") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_synth_tsv_paths_resolve_against_its_folder_and_name_defaults_to_folder(tmp_path: Path) -> None:
    table = _synth(
        tmp_path / "runs" / "dino" / "synth.tsv",
        ["a\tHello there.\trefs/r.wav\tclean\twav/a.wav\t1.0\t0.1", "b\tHi.\t/abs/r.wav\tnoisy\t/abs/b.wav\t1.0\t0.1"],
    )
    clips = read_system(table.parent)  # the folder works as well as the file
    assert [c.system for c in clips] == ["dino", "dino"]
    assert clips[0].audio == table.parent.resolve() / "wav" / "a.wav"
    assert clips[0].ref == clips[0].target == table.parent.resolve() / "refs" / "r.wav"
    assert clips[1].audio == Path("/abs/b.wav") and clips[1].group == "noisy"
    assert clips[0].extra == {"seconds": "1.0", "rtf": "0.1"}
    assert read_system(table, name="mine")[0].system == "mine"


def test_noise_type_and_snr_become_part_of_the_condition(tmp_path: Path) -> None:
    table = _synth(
        tmp_path / "s" / "synth.tsv",
        [
            "a\tx\tr.wav\tr_clean.wav\tnoisy\tbabble\t5\ta.wav",
            "b\tx\tr.wav\t\tnoisy\tbabble\t10\tb.wav",
            "c\tx\tr.wav\t\tclean\t\t\tc.wav",
        ],
        header="id\ttext\tref\tref_clean\tcondition\tnoise\tsnr\tout",
    )
    clips = read_system(table)
    assert [c.group for c in clips] == ["noisy babble 5 dB", "noisy babble 10 dB", "clean"]
    assert clips[0].target is not None and clips[0].target.name == "r_clean.wav"  # SECS against the clean original
    assert condition_order(clips) == ["clean", "noisy babble 10 dB", "noisy babble 5 dB"]


def test_manifest_is_ground_truth_with_same_speaker_references(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, speakers=2, utterances=3)
    clips = read_system(manifest)
    assert {c.system for c in clips} == {GROUND_TRUTH}
    for c in clips:
        assert c.ref is not None and c.ref != c.audio
        assert c.ref.parent.name == c.speaker  # the reference is another clip of the same speaker
        assert c.condition == "clean" and c.text


def test_single_utterance_speakers_get_no_reference(tmp_path: Path) -> None:
    clips = ground_truth_clips(make_manifest(tmp_path, speakers=2, utterances=1))
    assert all(c.ref is None for c in clips)


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    clips = [
        Clip(
            "x",
            "a",
            tmp_path / "a.wav",
            "Hello.",
            tmp_path / "r.wav",
            tmp_path / "rc.wav",
            "spk",
            "noisy",
            "white",
            5.0,
        ),
        Clip("x", "b", tmp_path / "b.wav", "Bye.", None, None, "", "clean"),
    ]
    write_synth_table(tmp_path / "x" / "synth.tsv", clips)
    back = read_system(tmp_path / "x" / "synth.tsv")
    assert back == clips


def test_gather_orders_ground_truth_first_and_refuses_name_clashes(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "gt", speakers=2, utterances=2)
    a = _synth(tmp_path / "a" / "synth.tsv", ["u1\tx\tr.wav\tclean\tu1.wav\t1\t1", "u2\tx\tr.wav\tclean\tu2.wav\t1\t1"])
    clips = gather_clips([a], ground_truth=manifest, max_clips=1)
    assert [c.system for c in clips] == [GROUND_TRUTH, "a"]
    assert system_order(clips) == [GROUND_TRUTH, "a"]
    with pytest.raises(UserError, match="second system named 'a'"):
        gather_clips([a, a])
    with pytest.raises(UserError, match="--name given 1 times for 2 systems"):
        gather_clips([a, a], names=["one"])
    with pytest.raises(UserError, match="no systems given"):
        gather_clips([])


@pytest.mark.parametrize(
    "header,rows,needle",
    [
        ("id\ttext\tref", ["a\tx\ty"], "neither an 'out' column"),
        ("id\tout", [], "no rows"),
        ("id\tout", ["a\tx.wav", "a\ty.wav"], "duplicate id 'a'"),
        ("id\tout\tsnr", ["a\tx.wav\tloud"], "snr 'loud' is not a number"),
    ],
)
def test_bad_tables_are_user_errors_naming_the_file(tmp_path: Path, header: str, rows: list[str], needle: str) -> None:
    table = _synth(tmp_path / "s" / "synth.tsv", rows, header=header)
    with pytest.raises(UserError, match=needle) as err:
        read_system(table)
    assert str(table) in str(err.value)
