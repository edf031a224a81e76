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
    source: Annotated[
        Path,
        typer.Argument(help="Corpus folder (or Kaldi / lhotse / Hugging Face folder).", exists=True, file_okay=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (receives manifest.tsv).", file_okay=False)],
    format: Annotated[
        Optional[str],
        setting(
            stage.PrepareConfig,
            "format",
            "auto | folder | ljspeech | vctk | libritts | kaldi | lhotse | hf | chime3 | crema-d.",
            "--format",
        ),
    ] = None,
    audio_column: Annotated[
        Optional[str], setting(stage.PrepareConfig, "audio_column", "hf: the audio column.", "--audio-column")
    ] = None,
    text_column: Annotated[
        Optional[str], setting(stage.PrepareConfig, "text_column", "hf: the transcript column.", "--text-column")
    ] = None,
    speaker_column: Annotated[
        Optional[str], setting(stage.PrepareConfig, "speaker_column", "hf: the speaker column.", "--speaker-column")
    ] = None,
    chime_channel: Annotated[
        Optional[int],
        setting(
            stage.PrepareConfig, "chime_channel", "chime3: tablet channel of the noisy recordings.", "--chime-channel"
        ),
    ] = None,
    min_duration: Annotated[Optional[float], typer.Option(help="Drop utterances shorter than this (s).")] = None,
    max_duration: Annotated[
        Optional[float], typer.Option(help="Drop utterances longer than this (s); 0 = no limit.")
    ] = None,
    noisy_fraction: Annotated[
        Optional[float],
        setting(
            stage.PrepareConfig,
            "noisy_fraction",
            "Add noise to this fraction of the training rows.",
            "--noisy-fraction",
        ),
    ] = None,
    snr: Annotated[Optional[float], setting(stage.PrepareConfig, "snr", "SNR of that noise, dB.", "--snr")] = None,
    noise: Annotated[
        Optional[Path],
        typer.Option(exists=True, file_okay=False, help="Noise clips for --noisy-fraction (default: white noise)."),
    ] = None,
    speakers_heldout: Annotated[
        Optional[int], typer.Option(help="Hold out N speakers for zero-shot tests (split column).")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Scan a corpus and write OUT/manifest.tsv (id, audio, speaker, duration, text[, condition, split]).

    Example: dv prepare examples/toy -o data/toy
    """
    cfg = stage_config(
        stage.PrepareConfig,
        config,
        set_,
        source=source,
        out=out,
        format=format,
        audio_column=audio_column,
        text_column=text_column,
        speaker_column=speaker_column,
        chime_channel=chime_channel,
        min_duration=min_duration,
        max_duration=max_duration,
        speakers_heldout=speakers_heldout,
        noisy_fraction=noisy_fraction,
        snr=snr,
        noise=noise,
        device=device,
        seed=seed,
    )
    result = stage.run(cfg)
    print_summary("dv prepare", result.summary())
