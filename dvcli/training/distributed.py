"""Data-parallel training on one machine or many, with the same code path for 1 or N processes.

``launch(fn, nprocs, ...)`` runs ``fn(info, *args)``:

- under ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` set): in this process, after joining the
  process group from the environment (multi-node works the same way);
- with ``nprocs > 1``: in ``nprocs`` spawned processes on this machine (one per GPU, or CPU
  processes talking over gloo, which is how the tests exercise DDP without a GPU);
- otherwise: directly, with no process group.

Rank 0's return value comes back to the caller; under torchrun the other ranks exit (status 0) once
``fn`` returns, so only rank 0 goes on to write a stage's outputs. A :class:`~dvcli.errors.UserError` in any worker
comes back as a UserError, so the CLI still prints one line and exits 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import pickle
import random
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dvcli.errors import UserError
from dvcli.runtime import resolve_device


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process writes logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    """True when the environment describes a process group (torchrun, SLURM wrappers...)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


@contextlib.contextmanager
def torch_threads(threads: int, device: torch.device) -> Iterator[None]:
    """Run a training process's body on ``threads`` CPU threads (0 = torch's default), restored after.

    The ``threads`` setting of all three trainers: on a busy two-core machine one thread was many
    times faster than two for the tiny models.
    """
    before = torch.get_num_threads()
    if threads > 0 and device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def launch(fn: Callable[..., Any], nprocs: int = 1, *args: Any, device: str = "auto", threads: int = 0) -> Any:
    """Run ``fn(info: DistInfo, *args)`` on ``nprocs`` processes; return rank 0's result.

    ``threads`` > 0 runs each CPU process on that many torch threads (the trainers' ``threads``
    setting; 0 keeps the default), restored when ``fn`` returns.

    Raises:
        UserError: more GPU processes than GPUs, or a worker raised a UserError.
    """
    if under_torchrun():
        info = _join_from_env(device)
        try:
            with torch_threads(threads, info.device):
                result = fn(info, *args)
        finally:
            _leave()
        if not info.is_main:
            # Only rank 0 goes on to write the stage's outputs; this process's share is done.
            raise SystemExit(0)
        return result
    if nprocs <= 1:
        info = DistInfo(device=resolve_device(device))
        with torch_threads(threads, info.device):
            return fn(info, *args)
    base = resolve_device(device)
    if base.type == "cuda" and nprocs > torch.cuda.device_count():
        raise UserError(f"--gpus {nprocs}: only {torch.cuda.device_count()} CUDA device(s) visible")
    port = _free_port()
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    failure: Exception | None = None
    with tempfile.TemporaryDirectory(prefix="dv-launch-") as scratch:
        # Rank 0's result goes through a file: a pipe holds ~64 KiB, and a worker blocked writing a
        # bigger result into it would never exit, while the parent reads only after they all exit.
        result_file = Path(scratch) / "result.pkl"
        try:
            mp.start_processes(
                _worker,
                args=(fn, args, nprocs, base.type, port, queue, result_file, threads),
                nprocs=nprocs,
                join=True,
                start_method="spawn",
            )
        except (mp.ProcessExitedException, mp.ProcessRaisedException) as err:
            failure = err
        errors = []
        while not queue.empty():
            errors.append(queue.get())
        # A user's mistake on any rank wins over the errors it caused on the others.
        if errors:
            raise UserError(errors[0])
        if failure is not None:
            raise RuntimeError(f"a training process failed: {failure}") from None
        return pickle.loads(result_file.read_bytes()) if result_file.is_file() else None


def _worker(
    local_rank: int,
    fn: Callable[..., Any],
    args: tuple,
    world: int,
    device_type: str,
    port: int,
    queue: Any,
    result_file: Path,
    threads: int,
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device(f"cuda:{local_rank}") if device_type == "cuda" else torch.device("cpu")
    if device_type == "cuda":
        torch.cuda.set_device(device)
    else:
        # Share the cores instead of every process claiming all of them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=local_rank, world_size=world)
    info = DistInfo(rank=local_rank, world_size=world, local_rank=local_rank, device=device)
    try:
        with torch_threads(threads, device):
            result = fn(info, *args)
        if info.is_main:
            # Plain pickle bytes: tensors pickled by torch's multiprocessing would be shared by file
            # descriptor, which disappears with this process.
            result_file.write_bytes(pickle.dumps(result))
    except UserError as err:
        queue.put(str(err))
        raise SystemExit(2) from None
    finally:
        _leave()


def _join_from_env(device: str) -> DistInfo:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    base = resolve_device(device)
    if base.type == "cuda":
        dev = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if base.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def _leave() -> None:
    """Tear down the process group, after the objects that still use it.

    A DistributedDataParallel wrapper left in a reference cycle outlived ``destroy_process_group``
    and was freed during interpreter shutdown, where its gloo threads aborted the process
    ("terminate called without an active exception", SIGABRT) in about one two-process run in
    eight. Collecting the cycles first: none in 120.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- collectives that are no-ops in a single process ----------------------------------------------


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over processes, in place (returned for convenience)."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes, in place."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if is_initialized():
        dist.barrier()


def wrap_ddp(module: torch.nn.Module, info: DistInfo, **kwargs: Any) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else ``module`` unchanged."""
    if not info.distributed:
        return module
    ids = [info.local_rank] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, **kwargs)


# -- batching -------------------------------------------------------------------------------------


class DistributedBucketSampler(torch.utils.data.Sampler[list[int]]):
    """Length-bucketed batches, shuffled per epoch, split across processes; resumable mid-epoch.

    Items of similar length share a batch (less padding). Every process sees the same number of
    batches per epoch (the batch list is padded by repetition), so DDP never waits on a rank that
    ran out. The order depends only on ``(seed, epoch)``, which is what makes resuming exact:
    ``set_epoch(epoch, start_batch)`` skips the batches a stopped run already consumed.

    Args:
        lengths: a length per dataset item (frames, tokens...).
        batch_size: items per batch on each process.
        num_replicas, rank: this process's place (defaults: single process).
        bucket_width: how many batches' worth of length-sorted items form one bucket.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        bucket_width: int = 8,
        drop_last: bool = False,
    ) -> None:
        if not lengths:
            raise ValueError("no items to batch")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.seed = shuffle, seed
        self.bucket_width = bucket_width
        self.drop_last = drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Choose the epoch (it seeds the order) and how many of its batches to skip."""
        self.epoch, self.start_batch = epoch, start_batch

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], i))
        span = self.batch_size * self.bucket_width
        batches: list[list[int]] = []
        for start in range(0, len(order), span):
            bucket = order[start : start + span]
            if self.shuffle:
                rng.shuffle(bucket)
                bucket.sort(key=lambda i: self.lengths[i])  # similar lengths together, ties shuffled
            for b in range(0, len(bucket), self.batch_size):
                batch = bucket[b : b + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        if not batches:
            raise UserError(
                f"batch_size {self.batch_size} is more than the {len(self.lengths)} training items hold "
                "(lower batch_size)"
            )
        # Every process gets the same number of batches: repeat batches (cyclically, so even fewer
        # batches than processes work) up to a multiple of the process count.
        per_rank = math.ceil(len(batches) / self.num_replicas)
        batches = [batches[i % len(batches)] for i in range(per_rank * self.num_replicas)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        mine = self._all_batches()[self.rank :: self.num_replicas]
        yield from mine[self.start_batch :]

    def __len__(self) -> int:
        """Batches per epoch on this process (a full epoch, ignoring ``start_batch``)."""
        return len(self._all_batches()) // self.num_replicas
