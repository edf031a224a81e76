"""Where and how a stage runs: device choice, seeding, version information."""

from __future__ import annotations

import contextlib
import logging
import platform
import random
import subprocess
from pathlib import Path
from typing import Any, Literal

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


def reuse_freed_memory(limit: int = 1 << 30) -> bool:
    """Let glibc's allocator keep freed blocks up to ``limit`` bytes for reuse instead of unmapping them.

    By default glibc serves every allocation over 32 MiB (at most) with its own ``mmap`` and returns
    it on free, so a CPU forward that makes and drops a few such tensors per layer (HuBERT's conv
    stack: 32 MiB per 5 s of audio) pays fresh page faults every call. Raising ``M_MMAP_THRESHOLD``
    and ``M_TRIM_THRESHOLD`` (``mallopt(3)``) keeps that memory in the heap: 15% faster HuBERT
    layer-6 extraction on the 2-core development CPU (``bench/extract_units.py``); the process's
    resident size stays at its peak instead of shrinking between calls. What jemalloc or tcmalloc
    give PyTorch CPU deployments, without preloading a library.

    Returns:
        True when both settings were taken (glibc), False elsewhere (nothing changes).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, limit))


#: The ``precision`` setting of every stage that runs networks: autocast dtype, or auto.
Precision = Literal["auto", "fp32", "bf16", "fp16"]


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a stage runs in: ``auto`` is bf16 autocast on CUDA and fp32 elsewhere.

    bf16 also runs on CPU (torch's CPU autocast); fp16 needs CUDA, where a gradient scaler goes
    with it (:class:`dvcli.models.vits.train_step.TrainStep`).

    Raises:
        UserError: fp16 without CUDA, or an unknown name.
    """
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise UserError(f"precision {precision!r}: use auto, fp32, bf16 or fp16")
    if precision == "fp16" and device.type != "cuda":
        raise UserError("precision fp16 needs a CUDA device; use precision=bf16 or fp32 on CPU")
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context for ``precision`` (resolved first): a no-op in fp32.

    Raises:
        UserError: as :func:`resolve_precision`.
    """
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


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
