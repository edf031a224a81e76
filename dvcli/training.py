"""Pieces every training stage shares: checkpoints that resume exactly, RNG state, schedules.

Exact resume rests on two habits:

1. every random draw of step ``k`` comes from :func:`step_generator` ``(seed, k, rank)`` (crops,
   augmentation, noise), so nothing depends on how many draws earlier steps made; and
2. the batch order depends only on ``(seed, epoch)`` (:class:`~dvcli.distributed.DistributedBucketSampler`),
   so a run resumed at step ``k`` sees the batches the uninterrupted run would have seen.

What is left (model, optimizer, scheduler, scaler states, and the global RNGs that library code may
touch, e.g. dropout) goes into the checkpoint and comes back with :meth:`CheckpointManager.load`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvcli.checkpoint import load_checkpoint, save_checkpoint
from dvcli.errors import UserError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^checkpoint-(\d+)\.pt$")


class CheckpointManager:
    """Numbered checkpoints in a folder: atomic writes, keep the last ``keep_last``, find the latest.

    Files are ``checkpoint-00001000.pt``; each is a dict tagged with the stage's ``kind``.
    """

    def __init__(self, folder: str | Path, *, kind: str, keep_last: int = 3) -> None:
        self.folder = Path(folder)
        self.kind = kind
        self.keep_last = keep_last

    def path(self, step: int) -> Path:
        return self.folder / f"checkpoint-{step:08d}.pt"

    def all(self) -> list[Path]:
        """Finished checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        """The newest checkpoint, or None."""
        found = self.all()
        return found[-1] if found else None

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write ``state`` (plus ``step`` and the RNG states) atomically and prune old checkpoints."""
        path = self.path(step)
        save_checkpoint({"step": step, "rng": capture_rng(), **state}, path, kind=self.kind)
        for old in self.all()[: -self.keep_last] if self.keep_last > 0 else []:
            old.unlink(missing_ok=True)
        log.debug("saved %s", path)
        return path

    def load(self, path: str | Path | None = None, *, restore_rng_state: bool = True) -> dict[str, Any] | None:
        """Load ``path`` (default: the latest); restore the global RNGs it saved. None if there is none."""
        path = Path(path) if path is not None else self.latest()
        if path is None:
            return None
        state = load_checkpoint(path, kind=self.kind)
        if restore_rng_state and "rng" in state:
            restore_rng(state["rng"])
        return state


def work_folder(out: Path) -> Path:
    """Where an unfinished training run keeps its checkpoints and logs: ``OUT.partial`` beside ``OUT``."""
    return out.with_name(out.name + ".partial")


def resume_point(resume: bool, work: Path, out: Path, *, kind: str) -> Path | None:
    """The checkpoint ``--resume`` continues from: the latest in ``work/checkpoints`` (an interrupted
    run), else in ``out/checkpoints`` (a finished run trained further); None without ``resume``.

    The checkpoint is read once here, so a corrupt one is refused (naming it) before the run
    changes anything: resuming a finished run copies ``out`` into a new work folder first.

    Raises:
        UserError: ``resume`` but no checkpoint in either place; the latest one is corrupt or of
            another stage.
    """
    if not resume:
        return None
    for folder in (work / "checkpoints", out / "checkpoints"):
        latest = CheckpointManager(folder, kind=kind).latest()
        if latest is not None:
            load_checkpoint(latest, kind=kind)
            log.info("resuming from %s", latest)
            return latest
    raise UserError(
        f"--resume: no checkpoint in {work / 'checkpoints'} or {out / 'checkpoints'} (start without --resume)"
    )


def check_output(out: Path) -> None:
    """Refuse, before any training, an ``-o`` that publishing would later refuse to replace.

    Raises:
        UserError: ``out`` is a file, or a non-empty folder that is not a finished dv output.
    """
    from dvcli.atomic import is_dv_output

    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_dv_output(out))):
        raise UserError(f"{out}: exists and is not a dv output folder; refusing to replace it (choose another -o)")


@contextlib.contextmanager
def clean_up_unstarted(work: Path) -> Iterator[None]:
    """Remove ``work`` when what runs inside fails before the run's first checkpoint (nothing to resume,
    so nothing worth keeping); a run with a checkpoint keeps it for ``--resume``."""
    try:
        yield
    except BaseException:
        checkpoints = work / "checkpoints"
        if not (checkpoints.is_dir() and any(checkpoints.iterdir())):
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        raise


def check_unfinished(work: Path, resume_from: Path | None) -> None:
    """Refuse to start a new run over an unfinished one: its checkpoints would be lost.

    Raises:
        UserError: ``work/checkpoints`` holds checkpoints and the run does not resume.
    """
    if resume_from is None and (work / "checkpoints").is_dir() and any((work / "checkpoints").iterdir()):
        raise UserError(f"{work}: holds checkpoints of an unfinished run (pass --resume to continue it, or delete it)")


def start_work(work: Path, config: Any, *, resume_from: Path | None) -> None:
    """Get ``work`` ready for the first step, the same way in every trainer.

    A new run clears what a run killed before its first checkpoint left (logs), then the folder
    gets the resolved ``config.yaml``, which is also logged, before anything trains.
    """
    import shutil

    from dvcli.config import save_config, to_dict

    if resume_from is None:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    save_config(config, work / "config.yaml")
    log.info("resolved config: %s", to_dict(config))
    log.info("training state in %s (tensorboard --logdir %s)", work, work / "tensorboard")


def summary_writer(work: Path, *, purge_step: int | None = None) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``work/tensorboard`` (rank 0 of a training stage).

    ``purge_step`` drops the events an interrupted run logged after its last checkpoint.
    """
    from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

    return SummaryWriter(str(work / "tensorboard"), purge_step=purge_step)


def capture_rng() -> dict[str, Any]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) as checkpoint-safe tensors and lists."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _plain(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy"]["pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(obj: Any) -> Any:
    return [_plain(x) for x in obj] if isinstance(obj, tuple) else obj


def step_generator(seed: int, step: int, rank: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator for every random draw of one training step, independent of earlier steps."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63))
    return gen


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def grad_norm(parameters: Any) -> float:
    """L2 norm of all gradients (0 when there are none)."""
    norms = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


# -- training history: one shape and one writer for every trainer --------------------------------

#: One row of a trainer's history: ``step`` and the means of its measures over the window of steps
#: since the previous row (losses, accuracy, learning rate...); ``None`` where a measure has no value.
HistoryRow = dict[str, float | None]


def window_mean(window: Sequence[Mapping[str, float]], step: int, device: torch.device | str = "cpu") -> HistoryRow:
    """The row for ``step``: every key's mean over ``window`` (the steps since the last row), averaged
    over the processes too when distributed (all ranks must call it together; ``device`` is where
    the process group reduces: the training device, as NCCL reduces only CUDA tensors).

    A key missing from some steps is averaged over the steps that have it. Keys keep the order the
    window first met them in.
    """
    from dvcli.distributed import all_reduce_mean

    values: dict[str, list[float]] = {}
    for row in window:
        for key, value in row.items():
            values.setdefault(key, []).append(float(value))
    keys = sorted(values)  # the same order on every rank, whatever order each met them in
    means = torch.tensor([sum(values[k]) / len(values[k]) for k in keys], dtype=torch.float64, device=device)
    reduced = dict(zip(keys, all_reduce_mean(means).tolist()))
    return {"step": float(step), **{key: reduced[key] for key in values}}


def write_history(path: Path, rows: Sequence[Mapping[str, float | None]]) -> None:
    """Write ``rows`` as a TSV (``train.tsv``, ``metrics.tsv``), atomically.

    Columns: ``step`` (an integer), then every other key in the order first seen; numbers with six
    significant digits; an empty cell where a row lacks a value.
    """
    from dvcli.atomic import atomic_write_text

    columns = ["step"] + list(dict.fromkeys(k for row in rows for k in row if k != "step"))

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.6g}"

    lines = ["\t".join(columns)]
    lines += ["\t".join([str(int(row["step"] or 0))] + [cell(row.get(k)) for k in columns[1:]]) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
