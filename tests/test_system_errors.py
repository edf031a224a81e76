"""The system's errors are the user's: a full disk, a read-only folder or a missing permission is one
line naming the path and the cause, exit 2, never an internal error."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from dvcli.audio import save_audio
from dvcli.checkpoint import save_checkpoint
from dvcli.cli import app
from dvcli.errors import UserError, system_error
from dvcli.testing import make_corpus

runner = CliRunner()


@pytest.mark.parametrize(
    "code,cause",
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.ENOTDIR, "is a file, not a folder"),
        (errno.ENOENT, "not found"),
    ],
)
def test_system_errors_name_the_path_and_the_cause(code: int, cause: str) -> None:
    user = system_error(OSError(code, "strerror text", "/data/out/manifest.tsv"))
    assert user is not None and str(user).startswith("/data/out/manifest.tsv: ") and cause in str(user)
    assert system_error(OSError(errno.EINVAL, "Invalid argument")) is None  # not the user's system


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_while_publishing_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    make_corpus(tmp_path / "corpus", speakers=2, utterances=1, seconds=(0.6, 0.7))
    import dvcli.atomic

    def refuse(src: str, dst: str) -> None:
        raise OSError(code, "the system says no", str(dst))

    monkeypatch.setattr(dvcli.atomic.os, "replace", refuse)
    result = runner.invoke(app, ["prepare", str(tmp_path / "corpus"), "-o", str(tmp_path / "data")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("dv: ")]
    assert len(errors) == 1 and errors[0].startswith("dv: error: ") and str(tmp_path) in errors[0]
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert not (tmp_path / "data").exists()


def test_writers_turn_library_write_failures_into_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise sf.LibsndfileError(2, "Error opening 'x': ")

    monkeypatch.setattr(sf, "write", full)
    with pytest.raises(UserError, match=r"out.wav: cannot write the audio .*disk full"):
        save_audio(tmp_path / "out.wav", torch.zeros(100), 16000)
    assert not list(tmp_path.iterdir())

    def enforce(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0 ... file write failed")

    monkeypatch.setattr(torch, "save", enforce)
    with pytest.raises(UserError, match=r"model.pt: cannot write the checkpoint .*read-only"):
        save_checkpoint({"a": 1}, tmp_path / "model.pt", kind="test")
    assert not list(tmp_path.iterdir())


def test_not_found_only_for_paths_that_do_not_exist(tmp_path: Path) -> None:
    """A folder where a file is expected (or a file where a folder is) says so, not 'not found';
    random bytes as a checkpoint read as 'not a checkpoint', not as a refused pickle."""
    from dvcli.checkpoint import load_checkpoint
    from dvcli.t2u.inference import TextToUnit
    from stages.pretrain_speaker import PretrainSpeakerConfig
    from stages.pretrain_speaker import run as pretrain
    from stages.synthesize import SynthesizeConfig
    from stages.synthesize import run as synthesize
    from stages.train_t2u import TrainT2UConfig
    from stages.train_t2u import run as train_t2u

    (tmp_path / "folder").mkdir()
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 20)
    with pytest.raises(UserError, match="random.pt: is not a checkpoint"):
        load_checkpoint(tmp_path / "random.pt")
    with pytest.raises(UserError, match="is a file; a text-to-unit model is a folder"):
        TextToUnit.load(tmp_path / "random.pt")
    from dvcli.testing import make_joint_model

    model = make_joint_model(tmp_path / "joint")
    with pytest.raises(UserError, match="folder: is a folder, not a reference clip"):
        synthesize(
            SynthesizeConfig(model=model, out=tmp_path / "o.wav", ref=tmp_path / "folder", units="1 2", device="cpu")
        )
    manifest = make_corpus(tmp_path / "c", speakers=2, utterances=2)
    from dvcli.manifest import write_manifest

    write_manifest(tmp_path / "m.tsv", manifest)
    with pytest.raises(UserError, match="folder: is a folder; --init takes a checkpoint file"):
        pretrain(
            PretrainSpeakerConfig(manifest=tmp_path / "m.tsv", out=tmp_path / "s", init=tmp_path / "folder", steps=0)
        )
    with pytest.raises(UserError, match="random.pt: is a file; --init takes a Hugging Face mBART folder"):
        train_t2u(
            TrainT2UConfig(
                manifest=tmp_path / "m.tsv", units=tmp_path / "u", out=tmp_path / "t", init=tmp_path / "random.pt"
            )
        )
