"""Where and how a stage runs: device choice, seeding, version information."""

from __future__ import annotations

import logging
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvcli.errors import UserError

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """dv's cache folder: ``$DV_CACHE``, else ``$XDG_CACHE_HOME/dv``, else ``~/.cache/dv``.

    Holds what dv derives once and reuses (ONNX exports, the assembled packaged Whisper model);
    deleting it only costs the time to derive them again.
    """
    import os

    return Path(os.environ.get("DV_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dv")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` into a :class:`torch.device`.

    Raises:
        UserError: CUDA was asked for and is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: unknown device (use auto, cpu or cuda)") from None


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def git_revision() -> str | None:
    """The git commit of dv's own source tree, when it runs from a checkout."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, Any]:
    """Versions worth recording next to every output."""
    from dvcli import __version__

    return {
        "dv": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "platform": platform.platform(),
    }
