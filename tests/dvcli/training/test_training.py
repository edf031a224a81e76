"""Exact resume: stopping at step k and resuming gives the losses of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dvcli.training.checkpoints import CheckpointManager, capture_rng, restore_rng, step_generator
from dvcli.training.history import window_mean, write_history
from dvcli.training.schedule import warmup_cosine


def _run(folder: Path, steps: int, stop_at: int | None = None, resume: bool = False) -> list[float]:
    """A tiny training loop using dropout (global RNG) and per-step noise (step generator)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, 3, steps))
    manager = CheckpointManager(folder, kind="toy", keep_last=2)
    start = 0
    if resume:
        state = manager.load()
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = state["step"]
    losses = []
    for step in range(start, steps):
        gen = step_generator(7, step)
        x = torch.randn(16, 3, generator=gen)
        y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(16, 1, generator=gen)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if stop_at is not None and step + 1 == stop_at:
            manager.save(
                step + 1, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
            )
            break
    return losses


def test_resume_continues_the_same_trajectory(tmp_path: Path) -> None:
    full = _run(tmp_path / "a", 12)
    first = _run(tmp_path / "b", 12, stop_at=5)
    torch.manual_seed(123)  # disturb the global RNG: the checkpoint must restore it
    np.random.seed(9)
    rest = _run(tmp_path / "b", 12, resume=True)
    assert first + rest == full
    assert full[-1] < full[0]


def test_manager_keeps_last_k_and_finds_latest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, kind="toy", keep_last=2)
    assert manager.latest() is None and manager.load() is None
    for step in (10, 20, 30):
        manager.save(step, {"w": torch.tensor([step])})
    assert [p.name for p in manager.all()] == ["checkpoint-00000020.pt", "checkpoint-00000030.pt"]
    assert manager.load()["step"] == 30


def test_rng_round_trip() -> None:
    state = capture_rng()
    a = (torch.rand(3), np.random.rand(3), __import__("random").random())
    restore_rng(state)
    b = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_warmup_cosine() -> None:
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100, min_ratio=0.1) == pytest.approx(0.1)


def test_work_folder_start_and_the_unfinished_run_check(tmp_path: Path) -> None:
    import dataclasses

    from dvcli.errors import UserError
    from dvcli.training.work import check_unfinished, start_work

    @dataclasses.dataclass
    class Settings:
        steps: int = 3

    work = tmp_path / "out.partial"
    (work / "tensorboard").mkdir(parents=True)  # a run killed before its first checkpoint
    start_work(work, Settings(), resume_from=None)
    assert not (work / "tensorboard").exists() and (work / "config.yaml").read_text() == "steps: 3\n"
    check_unfinished(work, None)  # nothing to lose yet
    (work / "checkpoints").mkdir()
    (work / "checkpoints" / "checkpoint-00000002.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="pass --resume to continue it"):
        check_unfinished(work, None)
    check_unfinished(work, work / "checkpoints" / "checkpoint-00000002.pt")
    start_work(work, Settings(steps=5), resume_from=work / "checkpoints" / "checkpoint-00000002.pt")
    assert (work / "checkpoints").is_dir() and (work / "config.yaml").read_text() == "steps: 5\n"


def test_clean_up_unstarted_keeps_only_runs_with_a_checkpoint(tmp_path: Path) -> None:
    from dvcli.training.work import clean_up_unstarted

    work = tmp_path / "out.partial"
    (work / "tensorboard").mkdir(parents=True)
    with pytest.raises(RuntimeError), clean_up_unstarted(work):
        raise RuntimeError("died at step 1")
    assert not work.exists()
    (work / "checkpoints").mkdir(parents=True)
    (work / "checkpoints" / "checkpoint-00000002.pt").write_bytes(b"x")
    with pytest.raises(KeyboardInterrupt), clean_up_unstarted(work):
        raise KeyboardInterrupt
    assert (work / "checkpoints" / "checkpoint-00000002.pt").exists()  # kept for --resume


def test_every_trainer_has_the_same_runtime_settings() -> None:
    """One name per setting across the three trainers (threads, workers, gpus, precision, ...)."""
    import dataclasses

    from stages.pretrain_speaker import PretrainSpeakerConfig
    from stages.train_joint import TrainJointConfig
    from stages.train_t2u import TrainT2UConfig

    shared = {"threads", "gpus", "learning_rate", "keep_checkpoints", "resume", "seed", "device", "model"}
    for cls in (TrainJointConfig, PretrainSpeakerConfig, TrainT2UConfig):
        assert shared <= {f.name for f in dataclasses.fields(cls)}, cls.__name__


def test_window_mean_averages_each_key_over_the_steps_that_have_it() -> None:
    window = [{"loss": 1.0, "lr": 0.1}, {"loss": 3.0, "lr": 0.1, "loss_dino": 4.0}]
    row = window_mean(window, 7)
    assert row == {"step": 7.0, "loss": 2.0, "lr": 0.1, "loss_dino": 4.0}
    assert list(row) == ["step", "loss", "lr", "loss_dino"]  # the order first met, not sorted


def test_write_history_one_format_for_every_trainer(tmp_path: Path) -> None:
    rows = [
        {"step": 1.0, "loss": 2.123456789, "valid_uer": None},
        {"step": 2, "loss": 1.5, "valid_uer": 0.25, "seconds": 12.0},
    ]
    write_history(tmp_path / "train.tsv", rows)
    assert (tmp_path / "train.tsv").read_text().splitlines() == [
        "step\tloss\tvalid_uer\tseconds",
        "1\t2.12346\t\t",
        "2\t1.5\t0.25\t12",
    ]
