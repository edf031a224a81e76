"""Training history: one row shape for every trainer (:data:`HistoryRow`), averaged over steps and processes, written as TSV."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

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
    from dvcli.training.distributed import all_reduce_mean

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
