"""Checkpoints load without running code from the file, and bad files get one clear line."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from dvcli.checkpoint import load_checkpoint, save_checkpoint
from dvcli.errors import UserError

_MARK: list[str] = []


class _Payload:
    """Unpickling this would run code: the exploit a safe loader must refuse."""

    def __reduce__(self):  # noqa: D105
        return (_MARK.append, ("executed",))


def test_round_trip_with_kind(tmp_path: Path) -> None:
    state = {"weight": torch.randn(3, 4), "config": {"hidden": 8, "name": "x"}}
    save_checkpoint(state, tmp_path / "c.pt", kind="campplus")
    back = load_checkpoint(tmp_path / "c.pt", kind="campplus")
    torch.testing.assert_close(back["weight"], state["weight"])
    assert back["config"] == state["config"]
    with pytest.raises(UserError, match="is a 'campplus' checkpoint, expected a 'joint' checkpoint"):
        load_checkpoint(tmp_path / "c.pt", kind="joint")


def test_code_in_a_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(UserError, match="refused to load") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    assert _MARK == []
    path.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(UserError):
        load_checkpoint(path)
    assert _MARK == []


def test_truncated_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    torch.save({"w": torch.randn(100, 100)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "name, data",
    [
        ("notes.txt", b"hello\n"),
        ("train.tsv", b"step\tloss\n10\t2.5\n"),
        ("config.yaml", b"seed: 0\nout: runs/x\n"),
        ("image.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00"),
        ("clip.wav", b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"),
    ],
)
def test_files_of_other_formats_are_named_not_checkpoints(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UserError, match=rf"{name}: is not a checkpoint"):
        load_checkpoint(path)
