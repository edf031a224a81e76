"""The on-disk feature store written by ``dv extract-units`` and read by ``dv cluster``.

A store is a folder:

- ``feats-00000.npy``, ``feats-00001.npy``...: float16 arrays ``(frames, dim)``, utterances
  concatenated, a new file every ``shard_frames`` frames. Plain ``.npy``, so
  ``np.load(f, mmap_mode="r")`` reads them without loading them.
- ``index.tsv``: header ``id shard offset frames``; utterance ``id`` is rows
  ``offset:offset+frames`` of file ``shard``.
- ``meta.json`` (kind, checkpoint, layer, dim, frame_rate...; written last by the stage).

Shard files are written while the features stream in: the ``.npy`` header is written first with room
to spare and rewritten with the final row count on :meth:`FeatureWriter.close`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dvcli.atomic import META_FILE, atomic_write_text
from dvcli.errors import UserError, path_error
from dvcli.manifest import read_utf8

INDEX_FILE = "index.tsv"
_HEADER_BYTES = 128  # the .npy preamble + header, padded (a multiple of 64, as numpy writes them)


@dataclasses.dataclass(frozen=True)
class IndexRow:
    """Where one utterance's frames are."""

    id: str
    shard: str  # file name inside the store folder
    offset: int  # first row
    frames: int


def _npy_header(rows: int, dim: int, dtype: np.dtype) -> bytes:
    header = "{'descr': %r, 'fortran_order': False, 'shape': (%d, %d), }" % (dtype.str, rows, dim)
    header = header.ljust(_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")


class FeatureWriter:
    """Append utterances' features to ``.npy`` shards in ``folder``; write ``index.tsv`` at the end.

    Args:
        folder: an existing (temporary) output folder.
        dim: feature dimension.
        shard_frames: start a new file after this many frames.
        dtype: on-disk type (float16 halves the size; features are compared by distance only).
    """

    def __init__(self, folder: Path, dim: int, *, shard_frames: int = 1_000_000, dtype: Any = np.float16) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self.shard_frames = shard_frames
        self.dtype = np.dtype(dtype)
        self.rows: dict[str, IndexRow] = {}
        self._handle: Any = None
        self._shard = ""
        self._shard_rows = 0
        self._count = 0

    def add(self, uid: str, feats: np.ndarray) -> None:
        """Append ``(frames, dim)`` features for utterance ``uid``."""
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"expected (frames, {self.dim}) features, got {feats.shape}")
        if uid in self.rows:
            raise ValueError(f"duplicate id {uid}")
        if self._handle is None or (self._shard_rows and self._shard_rows + len(feats) > self.shard_frames):
            self._finish_shard()
            self._shard = f"feats-{self._count:05d}.npy"
            self._count += 1
            self._handle = open(self.folder / self._shard, "wb")
            self._handle.write(_npy_header(0, self.dim, self.dtype))
            self._shard_rows = 0
        self._handle.write(np.ascontiguousarray(feats, dtype=self.dtype).tobytes())
        self.rows[uid] = IndexRow(uid, self._shard, self._shard_rows, len(feats))
        self._shard_rows += len(feats)

    def _finish_shard(self) -> None:
        if self._handle is None:
            return
        self._handle.flush()
        self._handle.seek(0)
        self._handle.write(_npy_header(self._shard_rows, self.dim, self.dtype))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None

    def close(self, order: Sequence[str] | None = None) -> list[IndexRow]:
        """Finish the last shard and write ``index.tsv`` (rows in ``order``, default insertion order)."""
        self._finish_shard()
        rows = [self.rows[uid] for uid in order] if order is not None else list(self.rows.values())
        write_index(self.folder / INDEX_FILE, rows)
        return rows

    def abort(self) -> None:
        """Close the open file without finishing it (the caller discards the folder)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def write_index(path: Path, rows: Sequence[IndexRow]) -> None:
    """Write ``index.tsv`` atomically."""
    lines = ["id\tshard\toffset\tframes"] + [f"{r.id}\t{r.shard}\t{r.offset}\t{r.frames}" for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


class FeatureStore:
    """Read a feature folder written by ``dv extract-units`` (memory-mapped, nothing loaded up front).

    Raises:
        UserError: not an extract-units output, a missing or truncated shard, a malformed index.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / META_FILE
        if not self.folder.is_dir():
            raise path_error(self.folder, "feature folder not found", "make one with `dv extract-units`")
        if not meta_path.is_file():
            raise path_error(self.folder, "has no meta.json: not a finished `dv extract-units` output")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise path_error(meta_path, "is not valid JSON") from None
        if self.meta.get("stage") != "extract-units" or "dim" not in self.meta:
            raise path_error(self.folder, f"is a '{self.meta.get('stage')}' output, not `dv extract-units` features")
        if self.meta.get("features_saved") is False:
            raise path_error(
                self.folder,
                "holds units only (extracted with keep_features=false)",
                "extract again without --set keep_features=false to cluster",
            )
        self.dim = int(self.meta["dim"])
        self.frame_rate = float(self.meta.get("frame_rate", 50.0))
        self.rows = _read_index(self.folder / INDEX_FILE)
        self._by_id = {r.id: r for r in self.rows}
        self._shards: dict[str, np.ndarray] = {}
        needed: dict[str, int] = {}
        for r in self.rows:
            needed[r.shard] = max(needed.get(r.shard, 0), r.offset + r.frames)
        for shard, rows in needed.items():
            array = self.shard(shard)
            if array.ndim != 2 or array.shape[1] != self.dim:
                raise path_error(self.folder / shard, f"holds {array.shape} features, meta.json says dim {self.dim}")
            if array.shape[0] < rows:
                raise path_error(
                    self.folder / shard,
                    f"has {array.shape[0]} frames, the index needs {rows} (truncated copy?)",
                    "copy or extract the features again",
                )

    def shard(self, shard: str) -> np.ndarray:
        """The memory-mapped ``(rows, dim)`` array of one shard file."""
        if shard not in self._shards:
            path = self.folder / shard
            if not path.is_file():
                raise path_error(path, "feature shard is missing", "copy the whole feature folder or extract again")
            try:
                self._shards[shard] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as err:
                raise path_error(path, f"is not a readable .npy feature shard ({err})") from None
        return self._shards[shard]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        """Utterance ids in index order."""
        return [r.id for r in self.rows]

    @property
    def total_frames(self) -> int:
        return sum(r.frames for r in self.rows)

    def get(self, uid: str) -> np.ndarray:
        """``(frames, dim)`` float16 view of one utterance."""
        r = self._by_id[uid]
        return self._shards[r.shard][r.offset : r.offset + r.frames]

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for r in self.rows:
            yield r.id, self._shards[r.shard][r.offset : r.offset + r.frames]

    def describe(self) -> dict[str, Any]:
        """The fields that must agree between stores clustered together."""
        return {k: self.meta.get(k) for k in ("kind", "checkpoint", "layer", "dim", "frame_rate")}


def _read_index(path: Path) -> list[IndexRow]:
    if not path.is_file():
        raise path_error(path, "index of the feature folder is missing", "extract the features again")
    lines = read_utf8(path).splitlines()
    if not lines or lines[0].split("\t") != ["id", "shard", "offset", "frames"]:
        raise path_error(path, "is not a feature index (expected header: id shard offset frames)")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        try:
            uid, shard, offset, frames = cells
            rows.append(IndexRow(uid, shard, int(offset), int(frames)))
        except ValueError:
            raise path_error(f"{path}:{lineno}", "malformed index line") from None
        if "/" in shard or shard.startswith("."):
            raise path_error(f"{path}:{lineno}", f"shard name '{shard}' points outside the folder")
    return rows


def open_stores(folders: Sequence[str | Path]) -> list[FeatureStore]:
    """Open several stores that are to be clustered together (the shards of one extraction).

    Raises:
        UserError: no folder, stores of different features (kind, layer, checkpoint, dim), or an
            utterance id present in two stores.
    """
    if not folders:
        raise UserError("no feature folders given (pass the output folders of `dv extract-units`)")
    stores = [FeatureStore(f) for f in folders]
    first = stores[0].describe()
    seen: dict[str, Path] = {}
    for store in stores:
        if store.describe() != first:
            diff = {k: (first[k], v) for k, v in store.describe().items() if first[k] != v}
            raise path_error(
                store.folder,
                f"holds different features than {stores[0].folder}: {diff}",
                "cluster features of one kind, layer and checkpoint together",
            )
        for uid in store.ids:
            if uid in seen:
                raise path_error(
                    store.folder, f"utterance '{uid}' is also in {seen[uid]}", "pass each extract-units shard once"
                )
            seen[uid] = store.folder
    return stores
