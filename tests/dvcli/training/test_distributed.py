"""DDP on CPU over gloo: same gradients as one process on the whole batch; errors come back."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from dvcli.errors import UserError
from dvcli.training.distributed import DistInfo, DistributedBucketSampler, all_reduce_mean, launch, wrap_ddp


def _train_two_steps(info: DistInfo, data: torch.Tensor, target: torch.Tensor) -> dict:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    ddp = wrap_ddp(model, info)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    shard = slice(info.rank, None, info.world_size)
    for _ in range(2):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(ddp(data[shard]), target[shard])
        loss.backward()
        opt.step()
    mean = all_reduce_mean(torch.tensor([float(info.rank)]))
    return {"weight": model.weight.detach().clone(), "world": info.world_size, "mean_rank": float(mean)}


def _fail(info: DistInfo) -> None:
    if info.rank == 1:
        raise UserError("data/x.wav: broken on rank 1")
    torch.distributed.barrier()


def test_two_gloo_processes_match_one_process() -> None:
    gen = torch.Generator().manual_seed(1)
    data, target = torch.randn(8, 4, generator=gen), torch.randn(8, 1, generator=gen)
    single = launch(_train_two_steps, 1, data, target, device="cpu")
    double = launch(_train_two_steps, 2, data, target, device="cpu")
    assert single["world"] == 1 and double["world"] == 2
    assert double["mean_rank"] == 0.5
    # Equal shards + averaged gradients = the full-batch gradient.
    torch.testing.assert_close(double["weight"], single["weight"])


def _big_result(info: DistInfo) -> dict:
    return {"weights": torch.arange(1_000_000, dtype=torch.float32), "rank": info.rank}


def test_a_result_bigger_than_a_pipe_comes_back() -> None:
    # 4 MB: a worker writing this into a pipe nobody reads until it exits would hang forever.
    result = launch(_big_result, 2, device="cpu")
    assert result["rank"] == 0 and torch.equal(result["weights"], torch.arange(1_000_000, dtype=torch.float32))


def test_user_error_in_a_worker_reaches_the_caller() -> None:
    with pytest.raises(UserError, match="broken on rank 1"):
        launch(_fail, 2, device="cpu")


def test_bucket_sampler_partitions_and_is_deterministic() -> None:
    lengths = [((i * 37) % 101) + 1 for i in range(103)]
    samplers = [DistributedBucketSampler(lengths, 4, num_replicas=3, rank=r, seed=5) for r in range(3)]
    for s in samplers:
        s.set_epoch(2)
    batches = [list(s) for s in samplers]
    assert len({len(b) for b in batches}) == 1 and len(batches[0]) == len(samplers[0])
    seen = Counter(i for per_rank in batches for batch in per_rank for i in batch)
    assert set(seen) == set(range(103))  # every item, the padding repeats a few
    # Length bucketing: batches span far less than the whole range of lengths.
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for per in batches for b in per]
    assert sum(spans) / len(spans) < 20
    again = DistributedBucketSampler(lengths, 4, num_replicas=3, rank=1, seed=5)
    again.set_epoch(2, start_batch=3)
    assert list(again) == batches[1][3:]
    again.set_epoch(3)
    assert list(again) != batches[1]


def test_torchrun_environment_is_honoured(tmp_path) -> None:
    """Under torchrun, launch() joins the group from the environment instead of spawning."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "job.py"
    script.write_text(
        "import sys, torch\n"
        "from dvcli.training.distributed import launch, all_reduce_sum\n"
        "def fn(info):\n"
        "    total = all_reduce_sum(torch.tensor([info.rank + 1.0]))\n"
        "    if info.is_main:\n"
        f"        open({str(tmp_path / 'out.txt')!r}, 'w').write(f'{{info.world_size}} {{total.item()}}')\n"
        "launch(fn, 8, device='cpu')\n"  # nprocs is ignored under torchrun
        # what a stage does after training (write its outputs) must happen on rank 0 only
        f"open({str(tmp_path / 'after.txt')!r}, 'a').write('written\\n')\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**__import__("os").environ, "PYTHONPATH": str(root)},
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out.txt").read_text() == "2 3.0"
    assert (tmp_path / "after.txt").read_text() == "written\n"


def test_sampler_with_fewer_batches_than_processes_gives_each_one_a_batch() -> None:
    """dv train-t2u --gpus 3 on data for one batch ended in a ZeroDivisionError: every rank gets a batch."""
    lengths = [5, 6, 7, 8]
    per_rank = [list(DistributedBucketSampler(lengths, 4, num_replicas=3, rank=r, seed=1)) for r in range(3)]
    assert [len(batches) for batches in per_rank] == [1, 1, 1]
    assert all(sorted(b[0]) == [0, 1, 2, 3] for b in per_rank)
    assert len(DistributedBucketSampler(lengths, 4, num_replicas=3, rank=2)) == 1
    with pytest.raises(UserError, match="batch_size 8 is more than the 4 training items"):
        len(DistributedBucketSampler(lengths, 8, drop_last=True))


def test_torch_threads_sets_and_restores_for_cpu_only() -> None:
    import torch

    from dvcli.training.distributed import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1, torch.device("cpu")):
        assert torch.get_num_threads() == 1
    with torch_threads(0, torch.device("cpu")):
        assert torch.get_num_threads() == before  # 0 = leave torch's default
    assert torch.get_num_threads() == before


def test_leaving_frees_what_still_holds_the_group_first(tmp_path) -> None:
    # A DDP wrapper in a reference cycle, freed only at interpreter shutdown after the group was
    # destroyed, aborted one two-process run in eight (SIGABRT): _leave collects it first.
    import gc
    import weakref

    from dvcli.training.distributed import _leave

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    ddp = wrap_ddp(torch.nn.Linear(2, 1), DistInfo(rank=0, world_size=2))
    ddp.cycle = [ddp]
    alive = weakref.ref(ddp)
    del ddp
    gc.disable()
    try:
        _leave()
    finally:
        gc.enable()
    assert alive() is None and not torch.distributed.is_initialized()
