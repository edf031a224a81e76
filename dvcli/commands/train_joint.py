"""``dv train-joint``: manifest + units (+ CAM++) -> DINO-VITS model (VITS generator + speaker encoder)."""

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
from stages import train_joint as stage

app = typer.Typer()


@app.command("train-joint")
def train_joint(
    manifest: Annotated[Path, typer.Argument(help="manifest.tsv from dv prepare (or its folder).", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.", file_okay=False)],
    units: Annotated[
        Optional[Path],
        typer.Option(
            "--units", "-u", help="A dv cluster folder or a units.tsv (not read with --content text).", exists=True
        ),
    ] = None,
    speaker: Annotated[
        Path | None,
        typer.Option(
            "--speaker", "-s", help="CAM++ to start from: dv pretrain-speaker folder, campplus.pt or 3D-Speaker .bin."
        ),
    ] = None,
    model: Annotated[
        str | None,
        setting(
            stage.TrainJointConfig,
            "model",
            "VITS preset: base (the paper's, ~40M) | medium, low (piper's voices: 22.05 and 16 kHz) | tiny (CPU demos).",
            "--model",
        ),
    ] = None,
    steps: Annotated[
        tuple[int, int] | None,
        typer.Option(
            "--steps",
            help="Steps of phase 1 (encoder's last layer) and phase 2 (whole encoder), e.g. --steps 95000 175000.",
        ),
    ] = None,
    content: Annotated[
        str | None,
        setting(
            stage.TrainJointConfig,
            "content",
            "What VITS reads: units (--units) | text (espeak-ng phonemes of the manifest text).",
            "--content",
        ),
    ] = None,
    speaker_loss: Annotated[
        str | None,
        setting(
            stage.TrainJointConfig,
            "speaker_loss",
            "Encoder sidecar loss: dino | aam | none | simclr | moco | byol | vicreg.",
            "--speaker-loss",
        ),
    ] = None,
    ref_augment: Annotated[
        bool | None,
        setting(
            stage.TrainJointConfig,
            "ref_augment",
            "Noise/reverb on the conditioning reference.",
            "--ref-augment/--no-ref-augment",
        ),
    ] = None,
    freeze_speaker: Annotated[
        bool | None,
        typer.Option("--freeze-speaker", help="Keep the encoder fixed (YourTTS-style baseline; no sidecar)."),
    ] = None,
    dedup: Annotated[
        bool | None,
        setting(
            stage.TrainJointConfig, "dedup", "Collapse repeated units, or keep one per frame.", "--dedup/--no-dedup"
        ),
    ] = None,
    gpus: GpusOption = None,
    resume: ResumeOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Train VITS on units jointly with the CAM++ speaker encoder under the DINO loss.

    The student embedding of the (augmented) utterance conditions VITS; two augmented crops feed
    the DINO student and its EMA teacher. Phase 1 trains only the encoder's last layer, phase 2
    all of it. Writes OUT/model.pt (for dv synthesize), OUT/train.tsv, OUT/tensorboard/.

    Example: dv train-joint data/manifest.tsv --units data/units --speaker runs/campplus -o runs/joint

    Example: dv train-joint data/toy/manifest.tsv -u data/toy-units -o runs/joint-toy --config examples/toy/train_joint_tiny.yaml

    Example: dv train-joint data/manifest.tsv -u data/units -s runs/campplus -o runs/ablate-aam --speaker-loss aam --no-ref-augment
    """
    phases = {"phase1_steps": steps[0], "phase2_steps": steps[1]} if steps is not None else {}
    cfg = stage_config(
        stage.TrainJointConfig,
        config,
        set_,
        manifest=manifest,
        units=units,
        speaker=speaker,
        out=out,
        model=model,
        content=content,
        speaker_loss=speaker_loss,
        ref_augment=ref_augment,
        freeze_speaker=freeze_speaker,
        dedup=dedup,
        gpus=gpus,
        resume=resume,
        device=device,
        seed=seed,
        **phases,
    )
    result = stage.run(cfg)
    print_summary("dv train-joint", result.summary())
