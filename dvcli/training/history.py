"""Training history: one row shape for every trainer (:data:`HistoryRow`), averaged over steps and processes, written as TSV."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from dvcli.atomic import atomic_write_text
from dvcli.training.distributed import all_reduce_mean

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
    columns = ["step"] + list(dict.fromkeys(k for row in rows for k in row if k != "step"))

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.6g}"

    lines = ["\t".join(columns)]
    lines += ["\t".join([str(int(row["step"] or 0))] + [cell(row.get(k)) for k in columns[1:]]) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


#: Keys left out of the learning-curve plots (bookkeeping, not measures of learning).
_NOT_PLOTTED = frozenset({"step", "skipped", "seconds", "teacher_momentum", "teacher_temp"})


def plot_history(rows: Sequence[Mapping[str, float | None]], path: Path, title: str, *, columns: int = 3) -> bool:
    """Learning curves: one small panel per measure of ``rows`` against ``step``, as a PNG.

    Returns False (writes nothing) when there is nothing to plot or matplotlib (dv's ``eval`` extra)
    is not installed; training outputs do not depend on it.
    """
    try:
        from matplotlib.figure import Figure  # object API: no pyplot state, renders with Agg
    except ImportError:
        return False
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in _NOT_PLOTTED]
    if not rows or not keys:
        return False
    cols = min(columns, len(keys))
    lines = -(-len(keys) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * lines), dpi=100)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(lines, cols, i + 1)
        points = [(float(r["step"] or 0), float(v)) for r in rows if (v := r.get(key)) is not None]
        if points:
            ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
        ax.set_title(key, fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.3)
        if key.startswith(("loss", "grad_norm")) and points and min(v for _, v in points) > 0:
            ax.set_yscale("log")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(str(path))
    return True
