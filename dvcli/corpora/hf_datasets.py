"""Hugging Face ``datasets`` folders written by ``save_to_disk``, read with the ``datasets`` package.

A ``Dataset`` folder (``dataset_info.json``, ``state.json`` and Arrow files) or a ``DatasetDict``
folder (``dataset_dict.json`` and one such folder per split). The audio, text and speaker columns
are named by options (``audio``, ``text``, ``speaker`` by default). The audio column is read
undecoded (``datasets.Audio(decode=False)``): audio embedded in the Arrow files is decoded here
with soundfile and written out by ``dv prepare``; audio kept as a path is that file (relative
paths are read from the dataset folder). The utterance id is the ``id`` column when there is one,
else ``SPLIT-INDEX``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dvcli.corpora.entry import CorpusEntry, CorpusOptions, read_encoded
from dvcli.errors import UserError


def is_saved_dataset(source: Path) -> bool:
    """Whether ``source`` looks like a ``save_to_disk`` folder."""
    return (source / "dataset_dict.json").is_file() or (
        (source / "dataset_info.json").is_file() and (source / "state.json").is_file()
    )


def _splits(source: Path) -> dict[str, Any]:
    try:
        import datasets
    except ImportError:
        raise UserError("--format hf needs the datasets package: pip install 'dino-vits[corpora]'") from None
    try:
        loaded = datasets.load_from_disk(str(source))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise UserError(f"{source}: not a folder written by datasets' save_to_disk ({err})") from None
    if isinstance(loaded, datasets.DatasetDict):
        return dict(loaded)
    return {"": loaded}


def _column(source: Path, split: str, dataset: Any, name: str, option: str) -> str:
    """``name`` if the dataset has that column; ``option`` is the flag that names it (``--text-column``)."""
    if name not in dataset.column_names:
        where = f"split '{split}' of {source}" if split else str(source)
        raise UserError(
            f"{where}: no column '{name}' (columns: {', '.join(dataset.column_names)}); name it with {option} COLUMN"
        )
    return name


def scan_hf(source: Path, options: CorpusOptions) -> Iterator[CorpusEntry]:
    """One entry per row of every split (see the module docstring).

    Raises:
        UserError: datasets not installed, not a saved dataset, a named column missing, a row
            without audio.
    """
    import datasets

    for split, dataset in _splits(source).items():
        audio = _column(source, split, dataset, options.audio_column, "--audio-column")
        text = _column(source, split, dataset, options.text_column, "--text-column")
        speaker = _column(source, split, dataset, options.speaker_column, "--speaker-column")
        if isinstance(dataset.features[audio], datasets.Audio):
            dataset = dataset.cast_column(audio, datasets.Audio(decode=False))
        has_id = "id" in dataset.column_names
        columns = list(dict.fromkeys([audio, text, speaker] + (["id"] if has_id else [])))
        for index, row in enumerate(dataset.select_columns(columns)):
            uid = str(row["id"]) if has_id else f"{split or 'row'}-{index:06d}"
            value = row[audio]
            data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (None, value)
            if not data and not path:
                raise UserError(f"{source}: row {index} of split '{split}' has no audio")
            name = Path(path) if path else Path(f"{uid}.audio")
            if not data and not name.is_absolute():
                name = source / name
            yield CorpusEntry(
                uid,
                name,
                str(row[speaker]),
                " ".join(str(row[text] or "").split()),
                reader=functools.partial(read_encoded, data) if data else None,
            )
