"""A training run's work folder (``OUT.partial``): where it lives, when a run may start, resume or must refuse, what it leaves on failure."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dvcli.checkpoint import load_checkpoint
from dvcli.errors import UserError
from dvcli.training.checkpoints import CheckpointManager

log = logging.getLogger(__name__)


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


def finish_work(work: Path, out: Path) -> None:
    """After ``out`` is published: move the run's ``checkpoints/`` and ``tensorboard/`` into it
    (replacing any there) and remove the work folder.

    A crash before this leaves them in ``work``, from where ``--resume`` still finds them.
    """
    for name in ("checkpoints", "tensorboard"):
        if (work / name).is_dir():
            shutil.rmtree(out / name, ignore_errors=True)
            shutil.move(str(work / name), str(out / name))
    shutil.rmtree(work, ignore_errors=True)
