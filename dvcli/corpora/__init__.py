"""Corpus descriptions ``dv prepare`` reads, each yielding :class:`CorpusEntry` rows for one manifest.

Formats (``format="auto"`` picks one by looking at the top of the folder):

- layouts of published corpora, :mod:`dvcli.corpora.layouts`: ``folder``, ``ljspeech``, ``vctk``,
  ``libritts``;
- ``kaldi``: a Kaldi data directory, :mod:`dvcli.corpora.kaldi`;
- ``lhotse``: lhotse recordings + supervisions or cuts manifests, :mod:`dvcli.corpora.lhotse_manifests`;
- ``hf``: a Hugging Face ``datasets`` folder from ``save_to_disk``, :mod:`dvcli.corpora.hf_datasets`;
- ``chime3``: the CHiME-3 corpus, booth and real noisy recordings, :mod:`dvcli.corpora.chime`;
- ``crema-d``: CREMA-D's emotional clips, with ``emotion`` and ``intensity`` columns, :mod:`dvcli.corpora.crema_d`.

A format whose utterances are parts of files (Kaldi ``segments``, lhotse supervisions) or live
inside its own files (Arrow) gives entries with a ``reader``; ``dv prepare`` writes those out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from dvcli.corpora.chime import data_root, scan_chime3
from dvcli.corpora.crema_d import audio_folder, scan_crema_d
from dvcli.corpora.entry import CorpusEntry, CorpusOptions
from dvcli.corpora.hf_datasets import is_saved_dataset, scan_hf
from dvcli.corpora.kaldi import scan_kaldi
from dvcli.corpora.layouts import scan_folder, scan_libritts, scan_ljspeech, scan_vctk
from dvcli.corpora.lhotse_manifests import manifest_files, scan_lhotse

__all__ = ["CorpusEntry", "CorpusFormat", "CorpusOptions", "detect_format", "scan_corpus"]

#: The ``format`` setting of dv prepare: a layout, or auto (detected from the files at the top).
CorpusFormat = Literal["auto", "folder", "ljspeech", "vctk", "libritts", "kaldi", "lhotse", "hf", "chime3", "crema-d"]


def detect_format(source: Path) -> str:
    """Guess a corpus format from the files at its top (``folder`` when nothing else fits)."""
    if (source / "wav.scp").is_file() and (source / "utt2spk").is_file():
        return "kaldi"
    if is_saved_dataset(source):
        return "hf"
    if manifest_files(source):
        return "lhotse"
    if data_root(source) is not None:
        return "chime3"
    if audio_folder(source) is not None:
        return "crema-d"
    if (source / "metadata.csv").is_file() and (source / "wavs").is_dir():
        return "ljspeech"
    if (source / "txt").is_dir() and any(p.is_dir() for p in source.glob("wav48*")):
        return "vctk"
    if next(source.glob("*/*/*.normalized.txt"), None) or next(source.glob("*/*/*/*.normalized.txt"), None):
        return "libritts"
    return "folder"


def scan_corpus(source: Path, fmt: str, options: CorpusOptions | None = None) -> Iterator[CorpusEntry]:
    """Every utterance of ``source`` read as a ``fmt`` corpus (see the module docstring).

    Raises:
        UserError: the format's own errors (an unreadable table, a missing column or file), named.
    """
    options = options or CorpusOptions()
    if fmt == "vctk":
        return scan_vctk(source, options.vctk_mic)
    if fmt == "hf":
        return scan_hf(source, options)
    if fmt == "chime3":
        return scan_chime3(source, options)
    scanners = {
        "folder": scan_folder,
        "ljspeech": scan_ljspeech,
        "libritts": scan_libritts,
        "kaldi": scan_kaldi,
        "lhotse": scan_lhotse,
        "crema-d": scan_crema_d,
    }
    return scanners[fmt](source)
