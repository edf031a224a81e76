"""``dv synthesize``: reference clip + text (or units) -> speech in the reference's voice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dvcli.commands.common import (
    ConfigOption,
    DenoiseOption,
    DeviceOption,
    SeedOption,
    SetOption,
    print_summary,
    setting,
    stage_config,
)
from stages import synthesize as stage

app = typer.Typer()


@app.command("synthesize")
def synthesize(
    model: Annotated[Path, typer.Option("--model", help="dv train-joint output folder (or its model.pt).")],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="A .wav/.flac file for one text, or - to stream it to standard output sentence by sentence; "
            "a folder (wavs + synth.tsv) with --batch.",
        ),
    ] = None,
    t2u: Annotated[
        Optional[Path], typer.Option("--t2u", help="dv train-t2u output folder (not needed with --units).")
    ] = None,
    ref: Annotated[
        Optional[Path], typer.Option("--ref", help="Reference clip of the voice: any format, rate, channels.")
    ] = None,
    text: Annotated[
        Optional[str], typer.Option("--text", help="What to say (long text is split into sentences).")
    ] = None,
    text_file: Annotated[
        Optional[Path], typer.Option("--text-file", help="Read the text from this UTF-8 file (- = standard input).")
    ] = None,
    batch: Annotated[
        Optional[Path], typer.Option("--batch", help="TSV list with columns id, text, ref [, condition, ...].")
    ] = None,
    units: Annotated[
        Optional[str], typer.Option("--units", help='Unit ids ("12 873 5") or a units.tsv: skips text-to-unit.')
    ] = None,
    noise_scale: Annotated[
        Optional[float], setting(stage.SynthesizeConfig, "noise_scale", "Prior sampling noise.", "--noise-scale")
    ] = None,
    noise_scale_w: Annotated[
        Optional[float], setting(stage.SynthesizeConfig, "noise_scale_w", "Duration sampling noise.", "--noise-scale-w")
    ] = None,
    length_scale: Annotated[
        Optional[float], setting(stage.SynthesizeConfig, "length_scale", "> 1 speaks slower.", "--length-scale")
    ] = None,
    ref_seconds: Annotated[
        Optional[float],
        typer.Option("--ref-seconds", help="Use at most this much of the reference (0 = all; paper: 3)."),
    ] = None,
    vad: Annotated[
        Optional[bool],
        setting(
            stage.SynthesizeConfig,
            "vad",
            "Keep only the reference's speech (voice-activity detection).",
            "--vad/--no-vad",
        ),
    ] = None,
    denoise: DenoiseOption = None,
    pause: Annotated[
        Optional[float], setting(stage.SynthesizeConfig, "pause", "Seconds of silence between sentences.", "--pause")
    ] = None,
    beams: Annotated[
        Optional[int], setting(stage.SynthesizeConfig, "beams", "Text-to-unit beam width.", "--beams")
    ] = None,
    backend: Annotated[
        Optional[str],
        typer.Option("--backend", help="auto | pytorch | onnx (auto: ONNX Runtime on CPU, the faster there)."),
    ] = None,
    stream_format: Annotated[
        Optional[str],
        setting(
            stage.SynthesizeConfig,
            "stream_format",
            "With -o -: wav (a WAV stream of unknown length) | raw (16-bit mono PCM at the model's rate).",
            "--stream-format",
        ),
    ] = None,
    export_onnx: Annotated[
        Optional[Path],
        typer.Option(
            "--export-onnx",
            help="Only export the model's speaker encoder and VITS to ONNX in this folder.",
            file_okay=False,
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Clone a voice from one reference clip: say a text (or a batch list of texts) in that voice.

    The reference is resampled to 16 kHz mono, trimmed, level-normalised and embedded once; text is split into sentences, turned into units by the text-to-unit model, synthesised in batches and joined with short pauses. The same --seed gives the same audio.

    Example: dv synthesize --model runs/joint --t2u runs/t2u --ref clip.wav --text "Hello there." -o out.wav

    Example: dv synthesize --model runs/joint --t2u runs/t2u --ref clip.wav --text-file story.txt -o - | aplay

    Example: dv synthesize --model runs/joint --t2u runs/t2u --batch list.tsv -o runs/synth   (then: dv evaluate run runs/synth)

    Example: dv synthesize --model runs/joint --export-onnx runs/joint-onnx
    """
    if export_onnx is not None:
        files = stage.export(model, export_onnx)
        print_summary("dv synthesize --export-onnx", {"folder": export_onnx, "files": ", ".join(f.name for f in files)})
        return
    if out is None:
        raise typer.BadParameter("give the output with -o (a .wav file, or a folder with --batch)", param_hint="--out")
    cfg = stage_config(
        stage.SynthesizeConfig,
        config,
        set_,
        model=model,
        out=out,
        t2u=t2u,
        ref=ref,
        text=text,
        text_file=text_file,
        batch=batch,
        units=units,
        noise_scale=noise_scale,
        noise_scale_w=noise_scale_w,
        length_scale=length_scale,
        ref_seconds=ref_seconds,
        vad=vad,
        denoise=denoise,
        pause=pause,
        beams=beams,
        backend=backend,
        stream_format=stream_format,
        device=device,
        seed=seed,
    )
    result = stage.run(cfg)
    print_summary("dv synthesize", result.summary())
