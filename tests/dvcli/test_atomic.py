"""All-or-nothing outputs: a failure leaves nothing behind; user folders are never clobbered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvcli.atomic import atomic_dir, atomic_path, atomic_write_text
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.outputs import add_meta, stage_output


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_existing_file(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two" and len(list(tmp_path.iterdir())) == 1


def test_failed_stage_publishes_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with stage_output(tmp_path / "out", stage="t", config=StageConfig()) as tmp:
            (tmp / "partial.tsv").write_text("x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_finished_stage_has_config_and_meta_and_can_be_redone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for run in range(2):
        with stage_output(out, stage="t", config=StageConfig(seed=run), inputs={"src": "x"}) as tmp:
            (tmp / "result.txt").write_text(str(run))
            add_meta(tmp, count=run)
        meta = json.loads((out / "meta.json").read_text())
        assert meta["stage"] == "t" and meta["count"] == run and meta["inputs"] == {"src": "x"}
        assert (out / "result.txt").read_text() == str(run)
        assert f"seed: {run}" in (out / "config.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refuses_to_replace_a_folder_that_is_not_a_dv_output(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a dv output folder"):
        with atomic_dir(tmp_path / "home"):
            pass
    assert (tmp_path / "home" / "precious.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="not a folder"):
        with atomic_dir(tmp_path / "home" / "precious.txt"):
            pass


@pytest.mark.parametrize("umask,folder_mode,file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_published_outputs_get_the_users_umask(tmp_path: Path, umask: int, folder_mode: int, file_mode: int) -> None:
    """A stage's output folder and every file in it (written through atomic_path or plainly) have the
    modes a plain mkdir/open gives under the umask, not mkdtemp/mkstemp's private 0700/0600."""
    import stat
    import subprocess
    import sys

    from dvcli.testing import make_corpus

    make_corpus(tmp_path / "corpus", speakers=2, utterances=1, seconds=(0.6, 0.7))
    code = (
        f"import os; os.umask({umask}); from stages.prepare import PrepareConfig, run; "
        f"run(PrepareConfig(source={str(tmp_path / 'corpus')!r}, out={str(tmp_path / 'data')!r}))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
    out = tmp_path / "data"
    assert stat.S_IMODE(out.stat().st_mode) == folder_mode
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes and set(modes.values()) == {file_mode}, modes


def test_one_run_per_output_folder(tmp_path: Path) -> None:
    """A second run with the same -o refuses at once, naming the folder; the lock goes with the run."""
    import subprocess
    import sys

    from dvcli.atomic import output_lock

    out = tmp_path / "runs" / "joint"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dvcli.atomic import output_lock\n"
            f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)",
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=r"runs/joint: another dv run is writing this output folder"):
            with output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out):  # free again once the other run is gone (even killed)
        pass


def test_trainers_take_the_output_lock(tmp_path: Path) -> None:
    from dvcli.atomic import output_lock
    from stages import pretrain_speaker, train_joint, train_t2u

    out = tmp_path / "out"
    for stage, config in (
        (train_joint, train_joint.TrainJointConfig(manifest=tmp_path / "m", units=tmp_path / "u", out=out)),
        (train_t2u, train_t2u.TrainT2UConfig(manifest=tmp_path / "m", units=tmp_path / "u", out=out)),
        (pretrain_speaker, pretrain_speaker.PretrainSpeakerConfig(manifest=tmp_path / "m", out=out)),
    ):
        with output_lock(out), pytest.raises(UserError, match="another dv run is writing"):
            stage.run(config)


def test_the_output_lock_leaves_no_file_and_stays_exclusive_across_its_removal(tmp_path: Path) -> None:
    """The lock file goes with the run; a run that opened it just before its removal must not end up
    holding the removed file while a third run holds a new one (filelock re-checks the inode)."""
    from filelock import FileLock

    from dvcli.atomic import output_lock

    out = tmp_path / "out"
    lock_file = tmp_path / ".out.lock"
    with output_lock(out):
        assert lock_file.exists()
        late = FileLock(str(lock_file))  # a second run about to try, holding the soon-removed path
    assert not lock_file.exists()
    with output_lock(out):
        new = lock_file.stat().st_ino
        with pytest.raises(Exception):  # the late run cannot take it while this one holds it
            late.acquire(timeout=0)
        assert lock_file.stat().st_ino == new
    assert not lock_file.exists()
