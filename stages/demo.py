"""``dv demo``: the whole pipeline on the bundled toy corpus, re-runnable stage by stage.

Stages run in order, each writing one folder under ``out`` (the same commands as
``examples/toy/run.sh``). A stage whose folder is finished (holds ``meta.json``) is skipped unless
``force`` is set or a stage before it ran again in this call. Each stage is timed; the result lists
every stage's state, time, output and headline metric.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dvcli.atomic import is_dv_output
from dvcli.config import StageConfig, load_config
from dvcli.errors import UserError
from dvcli.logs import console
from stages import (
    cluster,
    evaluate,
    evaluate_refs,
    extract_units,
    prepare,
    pretrain_speaker,
    synthesize,
    train_joint,
    train_t2u,
)

log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def default_corpus() -> Path:
    """The toy corpus shipped in the source tree (``examples/toy``)."""
    return EXAMPLES / "toy"


@dataclasses.dataclass(kw_only=True)
class DemoConfig(StageConfig):
    """Settings of ``dv demo`` (the defaults fit in 10 minutes on 2 CPU cores)."""

    out: Path = Path("demo")  # everything the demo writes goes under this folder
    corpus: Path = dataclasses.field(default_factory=default_corpus)  # the toy corpus
    force: bool = False  # redo finished stages
    k: int = 100  # content units (k-means clusters)
    speaker_steps: int = 300  # CAM++ pretraining steps (examples/pretrain_speaker_tiny.yaml)
    joint_steps: tuple[int, int] | None = (
        None  # train-joint phase 1 and 2 steps; None = examples/toy/train_joint_tiny.yaml's
    )
    t2u_steps: int | None = None  # train-t2u steps; None = examples/toy/train_t2u_tiny.yaml's
    tests_per_speaker: int = 2  # test sentences per held-out speaker, each from a clean and a 0 dB reference
    snr: float = 0.0  # SNR (dB) of the noisy references
    max_clips: int = 8  # clips scored per system (the ground-truth row: the first N held-out recordings)
    metrics: list[str] = dataclasses.field(default_factory=lambda: ["cer", "secs", "dnsmos"])  # evaluated
    threads: int = 1  # torch threads: the demo's tiny models run fastest on one, and far slower on a busy CPU


@dataclasses.dataclass
class StageRecord:
    """What happened to one stage."""

    state: str  # "done" | "skipped (already done)"
    seconds: float
    output: Path
    headline: str = ""  # the metric a reader looks for first


@dataclasses.dataclass
class DemoResult:
    stages: dict[str, StageRecord]
    seconds: float

    def summary(self) -> dict[str, object]:
        """Rows for the end-of-run table: stage -> state, time, output, headline metric."""
        rows: dict[str, object] = {}
        for name, r in self.stages.items():
            took = f"{r.seconds:5.1f} s" if r.state == "done" else "      "
            rows[name] = f"{r.state:<8} {took}  {r.output}" + (f"\n{r.headline}" if r.headline else "")
        rows["total"] = f"{self.seconds:.1f} s"
        return rows


@dataclasses.dataclass
class _Stage:
    name: str
    output: Path  # the folder whose meta.json marks it finished
    run: Callable[[], Any]  # runs the stage, returns its result
    headline: Callable[[Any], str] = lambda result: ""
    shown: Path | None = None  # what the summary points at (default: output)


def run(config: DemoConfig) -> DemoResult:
    """Run every stage on the toy corpus under ``config.out``.

    Raises:
        UserError: the toy corpus is not where it should be (or any stage's own errors).
    """
    corpus = Path(config.corpus)
    if not corpus.is_dir():
        raise UserError(f"{corpus}: toy corpus not found (run from a dv checkout or pass --corpus)")
    torch.set_num_threads(config.threads)
    start = time.perf_counter()
    records: dict[str, StageRecord] = {}
    rerun = config.force
    steps = pipeline(config)
    for index, step in enumerate(steps, start=1):
        shown = step.shown or step.output
        if is_dv_output(step.output) and not rerun:
            records[step.name] = StageRecord("skipped (already done)", 0.0, shown)
            console.print(f"[dim]stage {index}/{len(steps)} {step.name}: already done ({step.output})[/dim]")
            continue
        console.rule(f"stage {index}/{len(steps)}: {step.name}")
        began = time.perf_counter()
        result = step.run()
        seconds = time.perf_counter() - began
        records[step.name] = StageRecord("done", seconds, shown, step.headline(result))
        log.info("%s finished in %.1f s", step.name, seconds)
        rerun = True  # everything after a stage that ran again must run again
    return DemoResult(records, time.perf_counter() - start)


def pipeline(config: DemoConfig) -> list[_Stage]:
    """The demo's stages with their configurations (what ``examples/toy/run.sh`` runs)."""
    out = Path(config.out)
    common = {"seed": config.seed, "device": config.device}
    data, feats, units = out / "data", out / "feats", out / "units"
    speaker, joint, t2u = out / "speaker", out / "joint", out / "t2u"
    refs, synth, report = out / "refs", out / "synth", out / "report"
    manifest = data / "manifest.tsv"

    def speaker_config() -> pretrain_speaker.PretrainSpeakerConfig:
        return load_config(
            pretrain_speaker.PretrainSpeakerConfig,
            EXAMPLES / "pretrain_speaker_tiny.yaml",
            # The demo reads the clean and 0 dB EERs only and needs no embedding export.
            values={
                "manifest": manifest,
                "out": speaker,
                "steps": config.speaker_steps,
                "snrs": (config.snr,),
                "export_embeddings": False,
                **common,
            },
        )

    def joint_config() -> train_joint.TrainJointConfig:
        steps = {}
        if config.joint_steps is not None:
            steps = {"phase1_steps": config.joint_steps[0], "phase2_steps": config.joint_steps[1]}
        return load_config(
            train_joint.TrainJointConfig,
            EXAMPLES / "toy" / "train_joint_tiny.yaml",
            values={"manifest": manifest, "units": units, "speaker": speaker, "out": joint, **steps, **common},
        )

    def t2u_config() -> train_t2u.TrainT2UConfig:
        steps = {"steps": config.t2u_steps} if config.t2u_steps is not None else {}
        return load_config(
            train_t2u.TrainT2UConfig,
            EXAMPLES / "toy" / "train_t2u_tiny.yaml",
            values={"manifest": manifest, "units": units, "out": t2u, **steps, **common},
        )

    def evaluate_config() -> evaluate.EvaluateConfig:
        return evaluate.EvaluateConfig(
            systems=[synth],
            names=["dino-vits"],
            ground_truth=manifest,
            split="heldout",
            out=report,
            metrics=list(config.metrics),
            max_clips=config.max_clips,
            **common,
        )

    return [
        _Stage(
            "prepare",
            data,
            lambda: prepare.run(prepare.PrepareConfig(source=config.corpus, out=data, **common)),
            lambda r: f"{r.summary().get('utterances', '')} utterances",
            shown=manifest,
        ),
        # Weight-free MFCC features (no checkpoint to download); k-means fitted on every frame.
        _Stage(
            "extract-units",
            feats,
            lambda: extract_units.run(
                extract_units.ExtractUnitsConfig(manifest=manifest, out=feats, features="mfcc", **common)
            ),
        ),
        _Stage(
            "cluster",
            units,
            lambda: cluster.run(
                cluster.ClusterConfig(features=[feats], out=units, k=config.k, sample=1.0, dedup=True, **common)
            ),
            lambda r: f"{r.k} units, inertia {r.inertia:.1f}",
            shown=units / "units.tsv",
        ),
        _Stage("pretrain-speaker", speaker, lambda: pretrain_speaker.run(speaker_config()), _speaker_headline),
        _Stage("train-joint", joint, lambda: train_joint.run(joint_config()), _joint_headline),
        _Stage(
            "train-t2u",
            t2u,
            lambda: train_t2u.run(t2u_config()),
            lambda r: f"unit error rate on training sentences {100 * r.train_uer:.1f}%",
        ),
        _Stage(
            "evaluate refs",
            refs,
            lambda: evaluate_refs.run(
                evaluate_refs.RefsConfig(
                    manifest=manifest, out=refs, per_speaker=config.tests_per_speaker, snrs=[config.snr], **common
                )
            ),
            lambda r: f"{r.speakers} held-out speakers, {r.rows} references",
            shown=refs / evaluate_refs.BATCH_FILE,
        ),
        _Stage(
            "synthesize",
            synth,
            lambda: synthesize.run(
                synthesize.SynthesizeConfig(
                    model=joint, t2u=t2u, batch=refs / evaluate_refs.BATCH_FILE, out=synth, **common
                )
            ),
            lambda r: f"{r.clips} clips, {r.seconds:.1f} s of audio, real-time factor {r.rtf:.2f} ({r.backend})",
            shown=synth / "synth.tsv",
        ),
        _Stage(
            "evaluate",
            report,
            lambda: evaluate.run(evaluate_config()),
            _evaluate_headline,
            shown=report / "report.html",
        ),
    ]


def _joint_headline(result: train_joint.TrainJointResult) -> str:
    first, last = train_joint.first_last(result.history, "loss_mel")
    return f"{result.steps} steps, mel L1 {first:.3f} -> {last:.3f}"


def _speaker_headline(result: pretrain_speaker.PretrainSpeakerResult) -> str:
    unseen = result.eer.get("unseen", {})
    return "EER unseen: " + ", ".join(f"{c} {100 * v:.1f}%" for c, v in unseen.items()) if unseen else ""


def _evaluate_headline(result: evaluate.EvaluateResult) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.summary().items() if " / " in k)
