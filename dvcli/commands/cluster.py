"""``dv cluster``: feature shards -> k-means centroids + units.tsv."""

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
from stages import cluster as stage

app = typer.Typer()


@app.command("cluster")
def cluster(
    features: Annotated[
        list[Path], typer.Argument(help="Feature folders from `dv extract-units` (all shards of one extraction).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (units.tsv, centroids.npy).", file_okay=False)
    ],
    k: Annotated[Optional[int], setting(stage.ClusterConfig, "k", "Clusters = unit vocabulary size.", "--k")] = None,
    sample: Annotated[
        Optional[float], setting(stage.ClusterConfig, "sample", "Fraction of all frames to fit on.")
    ] = None,
    niter: Annotated[
        Optional[int], setting(stage.ClusterConfig, "niter", "Lloyd iterations after k-means++ seeding.")
    ] = None,
    kmeans: Annotated[
        Optional[Path],
        typer.Option(
            help="Label with these centroids instead of fitting: .npy, scikit-learn km.bin, or a cluster folder "
            "(the same --kmeans as dv extract-units)."
        ),
    ] = None,
    dedup: Annotated[
        Optional[bool], typer.Option("--dedup", help="Also write units.dedup.tsv + durations.tsv.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Learn k-means on feature shards (FAISS, k-means++ seeding) and write units.tsv for every utterance.

    Example: dv cluster data/feats -o data/km --k 1000

    Example: dv cluster data/feats/* -o data/km --kmeans km.bin   (reuse a fairseq/textlesslib model)
    """
    cfg = stage_config(
        stage.ClusterConfig,
        config,
        set_,
        features=features,
        out=out,
        k=k,
        sample=sample,
        niter=niter,
        kmeans=kmeans,
        dedup=dedup,
        device=device,
        seed=seed,
    )
    result = stage.run(cfg)
    print_summary("dv cluster", result.summary())
