"""``dv transcribe``: manifest -> the same manifest with recogniser transcripts as its text."""

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
from stages import transcribe as stage

app = typer.Typer()


@app.command("transcribe")
def transcribe(
    manifest: Annotated[Path, typer.Argument(help="manifest.tsv (or its folder).", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (receives manifest.tsv).", file_okay=False)],
    asr: Annotated[
        Optional[str],
        setting(stage.TranscribeConfig, "asr", "auto | whisper-base | pocketsphinx | a Whisper folder.", "--asr"),
    ] = None,
    split: Annotated[Optional[str], typer.Option(help="Only this split ('' = every row).")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Replace each row's text with what a recogniser hears (the original kept as text_original).

    Example: dv transcribe data/noisy -o data/noisy-whisper
    """
    cfg = stage_config(
        stage.TranscribeConfig, config, set_, manifest=manifest, out=out, asr=asr, split=split, device=device, seed=seed
    )
    print_summary("dv transcribe", stage.run(cfg).summary())
