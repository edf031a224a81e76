"""``dv train-t2u``: manifest text + units -> an mBART text-to-unit model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dvcli.commands.common import (
    ConfigOption,
    DeviceOption,
    GpusOption,
    ResumeOption,
    SeedOption,
    SetOption,
    print_summary,
    setting,
    stage_config,
)
from stages import train_t2u as stage

app = typer.Typer()


@app.command("train-t2u")
def train_t2u(
    manifest: Annotated[Path, typer.Argument(help="manifest.tsv (or its folder); its text column is the input.")],
    units: Annotated[
        Path, typer.Option("--units", help="units.tsv, or the dv cluster folder holding it (its meta.json gives k).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (a Hugging Face model folder).", file_okay=False)
    ],
    model: Annotated[
        Optional[str], setting(stage.TrainT2UConfig, "model", "tiny | base: architecture from scratch.", "--model")
    ] = None,
    init: Annotated[
        Optional[Path],
        typer.Option(
            "--init",
            help="Pretrained mBART folder (e.g. mbart-large-cc25): its tokenizer and weights.",
            file_okay=False,
        ),
    ] = None,
    steps: Annotated[
        Optional[int], setting(stage.TrainT2UConfig, "steps", "Optimisation steps in all.", "--steps")
    ] = None,
    batch_size: Annotated[
        Optional[int], setting(stage.TrainT2UConfig, "batch_size", "Sentences per step and process.", "--batch-size")
    ] = None,
    learning_rate: Annotated[
        Optional[float],
        typer.Option("--learning-rate", help="Peak learning rate (default: by model; 5e-5 with --init)."),
    ] = None,
    dedup: Annotated[
        Optional[bool], setting(stage.TrainT2UConfig, "dedup", "Collapse runs of repeated units.", "--dedup/--no-dedup")
    ] = None,
    beams: Annotated[
        Optional[int], setting(stage.TrainT2UConfig, "beams", "Beam width for evaluation.", "--beams")
    ] = None,
    gpus: GpusOption = None,
    resume: ResumeOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Train the mBART text-to-unit model on a manifest's text and the units of its audio.

    OUT is a Hugging Face folder (plain MBartForConditionalGeneration.from_pretrained loads it) with unit_vocab.json, metrics.tsv (unit error rate per checkpoint, training and held-out sentences) and TensorBoard logs.

    Example: dv train-t2u data/manifest.tsv --units data/km -o runs/t2u
    """
    cfg = stage_config(
        stage.TrainT2UConfig,
        config,
        set_,
        manifest=manifest,
        units=units,
        out=out,
        model=model,
        init=init,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        dedup=dedup,
        beams=beams,
        gpus=gpus,
        resume=resume,
        device=device,
        seed=seed,
    )
    result = stage.run(cfg)
    print_summary("dv train-t2u", result.summary())
