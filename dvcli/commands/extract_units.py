"""``dv extract-units``: manifest -> HuBERT/MFCC feature shards (+ units with --kmeans)."""

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
from stages import extract_units as stage

app = typer.Typer()


@app.command("extract-units")
def extract_units(
    manifest: Annotated[Path, typer.Argument(help="manifest.tsv (or the folder holding it).", exists=True)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (feature shards, index.tsv).", file_okay=False)
    ],
    features: Annotated[
        Optional[str],
        setting(
            stage.ExtractUnitsConfig,
            "features",
            "hubert | mfcc | whisper. whisper: Whisper base's encoder, packaged with the eval extra (no download).",
            "--features",
        ),
    ] = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint",
            "-c",
            help="HuBERT: fairseq .pt (e.g. hubert_base_ls960.pt) or Hugging Face folder. "
            "whisper: a CTranslate2 Whisper folder (default: the packaged Whisper base).",
        ),
    ] = None,
    layer: Annotated[
        Optional[int], setting(stage.ExtractUnitsConfig, "layer", "HuBERT layer, 1-based as fairseq's output_layer.")
    ] = None,
    kmeans: Annotated[
        Optional[Path],
        typer.Option(help="Also write units.tsv with these centroids: a `dv cluster` folder, .npy or km.bin."),
    ] = None,
    dedup: Annotated[
        Optional[bool], typer.Option("--dedup", help="With --kmeans: also units.dedup.tsv + durations.tsv.")
    ] = None,
    shard: Annotated[Optional[int], typer.Option(help="This job's part of the manifest, 0-based (job arrays).")] = None,
    num_shards: Annotated[
        Optional[int], setting(stage.ExtractUnitsConfig, "num_shards", "Parts the manifest is split into.")
    ] = None,
    batch_seconds: Annotated[
        Optional[float], setting(stage.ExtractUnitsConfig, "batch_seconds", "Padded audio per batch, seconds.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Extract HuBERT, Whisper-encoder or MFCC features at 50 Hz for every utterance; label them with units when given --kmeans.

    Example: dv extract-units data/toy -o data/feats --features whisper

    Example: dv extract-units data/toy -o data/feats --features mfcc

    Example: dv extract-units data/libritts -o data/feats/0 -c hubert_base_ls960.pt --layer 6 --shard 0 --num-shards 4
    """
    cfg = stage_config(
        stage.ExtractUnitsConfig,
        config,
        set_,
        manifest=manifest,
        out=out,
        features=features,
        checkpoint=checkpoint,
        layer=layer,
        kmeans=kmeans,
        dedup=dedup,
        shard=shard,
        num_shards=num_shards,
        batch_seconds=batch_seconds,
        device=device,
        seed=seed,
    )
    result = stage.run(cfg)
    print_summary("dv extract-units", result.summary())
