"""``dv demo``: the pipeline end to end on the toy corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dvcli.commands.common import ConfigOption, DeviceOption, SeedOption, SetOption, print_summary, stage_config
from stages import demo as stage

app = typer.Typer()


@app.command("demo")
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for everything the demo writes.", file_okay=False)
    ] = Path("demo"),
    corpus: Annotated[Optional[Path], typer.Option(help="Corpus folder (default: the bundled examples/toy).")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Redo stages that already finished.")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Run the whole pipeline on the bundled toy corpus (re-runs skip finished stages).

    Example: dv demo -o demo
    """
    cfg = stage_config(stage.DemoConfig, config, set_, out=out, corpus=corpus, force=force, device=device, seed=seed)
    result = stage.run(cfg)
    print_summary("dv demo", result.summary())
