"""Options every stage command shares, and the glue from options to a stage run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.table import Table

from dvcli.config import load_config
from dvcli.logs import console

C = TypeVar("C")

ConfigOption = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        exists=True,
        dir_okay=False,
        readable=True,
        help="YAML file of settings (a saved config.yaml works). Command-line options override it.",
        rich_help_panel="Common",
    ),
]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override one setting, e.g. --set seed=3 (repeatable; dotted keys reach nested settings).",
        rich_help_panel="Common",
    ),
]
DeviceOption = Annotated[
    Optional[str],
    typer.Option(
        "--device",
        help="auto | cpu | cuda: where to compute (auto = CUDA when available).",
        rich_help_panel="Common",
    ),
]
SeedOption = Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 0).", rich_help_panel="Common")]
GpusOption = Annotated[
    Optional[int],
    typer.Option(
        "--gpus", help="Data-parallel processes on this machine, one per GPU (torchrun overrides; default 1)."
    ),
]
ResumeOption = Annotated[
    Optional[bool],
    typer.Option("--resume", help="Continue the unfinished (or finished) run in OUT from its latest checkpoint."),
]


def stage_config(
    cls: type[C],
    config_file: Optional[Path],
    overrides: Optional[list[str]],
    **values: Any,
) -> C:
    """Build a stage config: defaults < ``--config`` file < given options < ``--set`` overrides."""
    return load_config(cls, config_file, overrides or (), values)


def print_summary(title: str, rows: Mapping[str, Any]) -> None:
    """Print the end-of-stage summary table (to stderr, like all of dv's human-facing output)."""
    table = Table(title=title, show_header=False, title_justify="left", title_style="bold")
    table.add_column(style="cyan")
    table.add_column()
    for key, value in rows.items():
        table.add_row(str(key), str(value))
    console.print(table)
