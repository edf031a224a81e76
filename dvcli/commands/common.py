"""Options every stage command shares, and the glue from options to a stage run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.table import Table

from dvcli.config import StageConfig, load_config
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
SeedOption = Annotated[
    Optional[int], typer.Option("--seed", help=f"Random seed (default: {StageConfig.seed}).", rich_help_panel="Common")
]
DenoiseOption = Annotated[
    Optional[str],
    typer.Option(
        "--denoise",
        help="Enhance the reference clips first (the denoiser front-end): none | dfn3 (DeepFilterNet3) | rnnoise.",
    ),
]
GpusOption = Annotated[
    Optional[int],
    typer.Option(
        "--gpus", help="Data-parallel processes on this machine, one per GPU (torchrun overrides; default: 1)."
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


def setting(config: type, name: str, help: str, *flags: str, **options: Any) -> Any:
    """A ``typer.Option`` for the setting ``name`` (dotted for nested ones) of stage config ``config``.

    Its help ends with the setting's default read from the config class, so that no help text
    restates a default that could drift from the one the stage uses.
    """
    default = _default_of(config, name)
    if default is not None:
        help = f"{help} (default: {_shown(default)})"
    return typer.Option(*flags, help=help, **options)


def _default_of(config: type, name: str) -> Any:
    head, _, rest = name.partition(".")
    field = next(f for f in dataclasses.fields(config) if f.name == head)
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None
    return _default_of(type(value), rest) if rest else value


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(_shown(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
