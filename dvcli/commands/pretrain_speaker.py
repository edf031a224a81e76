"""``dv pretrain-speaker``: manifest -> CAM++ speaker encoder + EER report."""

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
from dvcli.logs import console
from stages import pretrain_speaker as stage

app = typer.Typer()


@app.command("pretrain-speaker")
def pretrain_speaker(
    manifest: Annotated[Path, typer.Argument(help="manifest.tsv from dv prepare (or its folder).", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.", file_okay=False)],
    noise: Annotated[
        Optional[Path], typer.Option("--noise", help="Folder of noise files (MUSAN layout); default: generated noises.")
    ] = None,
    rir: Annotated[
        Optional[Path],
        typer.Option("--rir", help="Folder of room impulse responses (RIRS_NOISES layout); default: generated."),
    ] = None,
    init: Annotated[
        Optional[Path],
        typer.Option("--init", help="Start from these weights: a 3D-Speaker campplus_*.bin or a dv checkpoint."),
    ] = None,
    objective: Annotated[
        Optional[str],
        setting(
            stage.PretrainSpeakerConfig,
            "objective",
            "aam (CAM++ speaker classification) | byol-a (BYOL-A's label-free audio encoder: the paper's frozen baseline).",
            "--objective",
        ),
    ] = None,
    model: Annotated[
        Optional[str],
        setting(
            stage.PretrainSpeakerConfig,
            "model",
            "campplus | tiny (aam); byol-a | byol-a-tiny (byol-a); default: the objective's full model.",
            "--model",
        ),
    ] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Optimizer steps (0 = evaluate --init only).")] = None,
    gpus: GpusOption = None,
    resume: ResumeOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Pretrain the CAM++ speaker encoder with AAM-Softmax, noise and reverb (or a BYOL-A encoder); report EER.

    Trains on every speaker not marked heldout, keeps a few utterances of each for the seen-speaker
    trials, scores held-out speakers separately, and repeats both with noisy test sides (10, 5, 0 dB).
    Writes OUT/campplus.pt (for train-joint), OUT/campplus.bin (3D-Speaker layout), OUT/eer.md.
    With --objective byol-a: BYOL-A (mixup + random resize crop, BYOL loss, no speaker labels), then a
    PCA projection to --set embedding_size; OUT/byola.pt (for train-joint --freeze-speaker --speaker OUT)
    and OUT/byola.pth (BYOL-A's own layout). --init also takes BYOL-A's published AudioNTT2020-*.pth.

    Example: dv pretrain-speaker data/manifest.tsv -o runs/campplus

    Example: dv pretrain-speaker data/toy/manifest.tsv -o runs/speaker-toy --config examples/pretrain_speaker_tiny.yaml

    Example: dv pretrain-speaker data/manifest.tsv -o runs/byola --objective byol-a
    """
    cfg = stage_config(
        stage.PretrainSpeakerConfig,
        config,
        set_,
        manifest=manifest,
        out=out,
        init=init,
        objective=objective,
        model=model,
        steps=steps,
        gpus=gpus,
        resume=resume,
        device=device,
        seed=seed,
        **{"augment.noise_dir": noise, "augment.rir_dir": rir},
    )
    result = stage.run(cfg)
    console.print(result.table)
    print_summary("dv pretrain-speaker", result.summary())
