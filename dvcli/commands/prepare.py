"""``dv prepare``: corpus folder -> manifest.tsv."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dvcli.commands.common import (
    ConfigOption,
    DeviceOption,
    SeedOption,
    SetOption,
    print_summary,
    setting,
    stage_config,
)
from stages import prepare as stage

app = typer.Typer()


@app.command("prepare")
def prepare(
    source: Annotated[Path, typer.Argument(help="Corpus folder.", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (receives manifest.tsv).", file_okay=False)],
    format: Annotated[
        Optional[str],
        setting(stage.PrepareConfig, "format", "auto | folder | ljspeech | vctk | libritts | kaldi.", "--format"),
    ] = None,
    min_duration: Annotated[Optional[float], typer.Option(help="Drop utterances shorter than this (s).")] = None,
    max_duration: Annotated[
        Optional[float], typer.Option(help="Drop utterances longer than this (s); 0 = no limit.")
    ] = None,
    speakers_heldout: Annotated[
        Optional[int], typer.Option(help="Hold out N speakers for zero-shot tests (split column).")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Scan a corpus folder and write OUT/manifest.tsv (id, audio, speaker, duration, text[, split]).

    Example: dv prepare examples/toy -o data/toy
    """
    cfg = stage_config(
        stage.PrepareConfig,
        config,
        set_,
        source=source,
        out=out,
        format=format,
        min_duration=min_duration,
        max_duration=max_duration,
        speakers_heldout=speakers_heldout,
        device=device,
        seed=seed,
    )
    result = stage.run(cfg)
    print_summary("dv prepare", result.summary())
