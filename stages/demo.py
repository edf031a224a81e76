"""``dv demo``: the whole pipeline on the bundled toy corpus, re-runnable stage by stage.

Each stage's output folder holds ``meta.json`` when finished; a re-run skips finished stages
unless ``force`` is set. Stages whose implementation has not landed yet are listed as missing.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from dvcli.atomic import is_dv_output
from dvcli.config import StageConfig
from dvcli.errors import UserError
from stages import cluster, extract_units, prepare

log = logging.getLogger(__name__)

#: The pipeline in order; stages not implemented yet are reported as missing.
PIPELINE = (
    "prepare",
    "extract-units",
    "cluster",
    "pretrain-speaker",
    "train-joint",
    "train-t2u",
    "synthesize",
    "evaluate",
)
IMPLEMENTED = ("prepare", "extract-units", "cluster")


def default_corpus() -> Path:
    """The toy corpus shipped in the source tree (``examples/toy``)."""
    return Path(__file__).resolve().parents[1] / "examples" / "toy"


@dataclasses.dataclass(kw_only=True)
class DemoConfig(StageConfig):
    """Settings of ``dv demo``."""

    out: Path = Path("demo")  # everything the demo writes goes under this folder
    corpus: Path = dataclasses.field(default_factory=default_corpus)  # the toy corpus
    force: bool = False  # redo finished stages


@dataclasses.dataclass
class DemoResult:
    """Which stages ran, which were already done, which are missing."""

    stages: dict[str, str]  # stage -> "done" | "skipped (already done)" | "missing"
    outputs: dict[str, Path]

    def summary(self) -> dict[str, object]:
        """Rows for the end-of-run table."""
        return {name: f"{state}  {self.outputs.get(name, '')}".rstrip() for name, state in self.stages.items()}


def run(config: DemoConfig) -> DemoResult:
    """Run every implemented stage on the toy corpus under ``config.out``.

    Raises:
        UserError: the toy corpus is not where it should be.
    """
    corpus = Path(config.corpus)
    if not corpus.is_dir():
        raise UserError(f"{corpus}: toy corpus not found (run from a dv checkout or pass --corpus)")
    out = Path(config.out)
    states: dict[str, str] = {}
    outputs: dict[str, Path] = {}

    data = out / "data"
    outputs["prepare"] = data / "manifest.tsv"
    if is_dv_output(data) and not config.force:
        states["prepare"] = "skipped (already done)"
    else:
        prepare.run(prepare.PrepareConfig(source=corpus, out=data, seed=config.seed, device=config.device))
        states["prepare"] = "done"

    # Content units: weight-free MFCC features (no checkpoint to download); 100 clusters fitted on every
    # frame, as the toy corpus is small.
    feats = out / "feats"
    outputs["extract-units"] = feats
    if is_dv_output(feats) and not config.force and states["prepare"] != "done":
        states["extract-units"] = "skipped (already done)"
    else:
        extract_units.run(
            extract_units.ExtractUnitsConfig(
                manifest=data / "manifest.tsv", out=feats, features="mfcc", seed=config.seed, device=config.device
            )
        )
        states["extract-units"] = "done"
    units = out / "units"
    outputs["cluster"] = units / "units.tsv"
    if is_dv_output(units) and not config.force and states["extract-units"] != "done":
        states["cluster"] = "skipped (already done)"
    else:
        cluster.run(
            cluster.ClusterConfig(
                features=[feats], out=units, k=100, sample=1.0, dedup=True, seed=config.seed, device=config.device
            )
        )
        states["cluster"] = "done"

    for name in PIPELINE:
        if name not in IMPLEMENTED:
            states[name] = "missing (not implemented yet)"
            log.warning("stage %s is not implemented yet", name)
    return DemoResult(states, outputs)
