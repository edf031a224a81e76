"""Checkpoints that load without running code from the file.

Users download checkpoints from strangers, so a pickle must never be a way in: everything loads
with ``torch.load(..., weights_only=True)``, which unpickles tensors and plain containers only.
Loaders that need a few more plain types (fairseq's ``argparse.Namespace`` for instance) pass them
in ``allow``. A file that needs anything else is refused with a message naming what it wanted.

dv's own checkpoints are dicts with a ``"dv_kind"`` entry (``"campplus"``, ``"joint"``...) so that
a checkpoint of the wrong kind is refused with a clear message instead of a shape mismatch.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from dvcli.atomic import atomic_path
from dvcli.errors import check_file, path_error

KIND_KEY = "dv_kind"


def load_checkpoint(
    path: str | Path,
    *,
    kind: str | None = None,
    allow: Iterable[Any] = (),
    map_location: str | torch.device = "cpu",
) -> Any:
    """Load a checkpoint safely.

    Args:
        path: a ``torch.save`` file.
        kind: when given, the file must be a dv checkpoint whose ``dv_kind`` equals it.
        allow: extra classes/functions the unpickler may build (plain data types only).
        map_location: where tensors go.

    Raises:
        UserError: missing, truncated or corrupt file; a file that needs code to unpickle; wrong kind.
    """
    path = Path(path)
    check_file(path, "checkpoint file")
    try:
        with torch.serialization.safe_globals(list(allow)):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported operand" in str(err) or "invalid load key" in str(err):
            # Not a pickle that wants code: bytes that are no pickle at all (random data, another format).
            raise path_error(
                path, "is not a checkpoint (corrupt, or a file of another format)", "download or copy it again"
            ) from None
        wanted = _wanted_global(str(err))
        raise path_error(
            path,
            f"refused to load: unpickling it would need {wanted}, which is not plain data",
            "dv loads only tensors and plain containers; re-save the weights as a state dict",
        ) from None
    except (KeyError, IndexError, struct.error, UnicodeDecodeError):
        # The weights-only unpickler on bytes of another format (text, TSV, YAML, audio, images):
        # the first bytes read as opcodes it cannot follow.
        raise path_error(
            path, "is not a checkpoint (a file of another format)", "give the .pt / .bin checkpoint file"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise path_error(path, f"checkpoint is truncated or corrupt ({first})", "download or copy it again") from None
    if kind is not None:
        found = obj.get(KIND_KEY) if isinstance(obj, dict) else None
        if found != kind:
            what = f"a '{found}' checkpoint" if found else "not a dv checkpoint"
            raise path_error(path, f"is {what}, expected a '{kind}' checkpoint")
    return obj


def save_checkpoint(obj: dict[str, Any], path: str | Path, *, kind: str) -> None:
    """``torch.save`` a dict atomically, tagged with ``dv_kind`` = ``kind``."""
    try:
        with atomic_path(path) as tmp:
            torch.save({KIND_KEY: kind, **obj}, tmp)
    except RuntimeError as err:  # torch reports a failed write as an "enforce fail" RuntimeError
        if "write" not in str(err).lower() and "file" not in str(err).lower():
            raise
        raise path_error(path, "cannot write the checkpoint", "is the disk full, or the folder read-only?") from None


def _wanted_global(message: str) -> str:
    # torch says e.g. "Unsupported global: GLOBAL argparse.Namespace was not an allowed global..."
    for line in message.splitlines():
        if "Unsupported global" in line and "GLOBAL" in line:
            return line.split("GLOBAL", 1)[1].split()[0]
        if "Unsupported operand" in line or "Unsupported class" in line:
            return line.strip()
    return "code or a class outside the allowed list"
