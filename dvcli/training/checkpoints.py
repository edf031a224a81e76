"""Numbered training checkpoints that resume exactly: atomic writes, keep-last-K, the RNG states, per-step generators."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvcli.checkpoint import load_checkpoint, save_checkpoint

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
