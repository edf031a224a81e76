"""``dv evaluate speaker``: EER and minDCF of a speaker verifier, on clean and noisy trials.

Trials come from a trial TSV (:mod:`dvcli.speaker.verification`'s format, the one ``dv pretrain-speaker``
writes to ``trials/*.tsv``) or are drawn from a manifest: per speaker, ``trials_per_speaker``
same-speaker pairs and as many different-speaker pairs. Each clean trial is repeated with noise added
to its test clip at every SNR in ``snrs`` (:func:`dvcli.speaker.verification.noisy_copy`: clips from
``noise``, or white noise), so the table shows how a verifier degrades with noisy audio, the
situation DINO-VITS targets.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

from dvcli.atomic import write_json
from dvcli.audio import audio_info
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.evaluation.noise import NoiseSource
from dvcli.evaluation.verifiers import RESEMBLYZER, load_verifier
from dvcli.manifest import read_manifest
from dvcli.outputs import add_meta, stage_output
from dvcli.runtime import resolve_device
from dvcli.speaker.verification import (
    Trial,
    condition_results,
    make_trials,
    plot_det,
    read_trials,
    score_trials,
    write_scores,
)


@dataclasses.dataclass(kw_only=True)
class SpeakerEvalConfig(StageConfig):
    """Settings of ``dv evaluate speaker``."""

    verifier: str = RESEMBLYZER  # 'resemblyzer', a CAM++ / BYOL-A / joint checkpoint, or its folder
    out: Path  # report folder
    trials: Path | None = None  # trial list TSV: enrol, test, label (1 = same speaker)[, condition]
    manifest: Path | None = None  # draw trials from this manifest instead (or: the ids a trial list names)
    split: str = ""  # with manifest: only this split (e.g. heldout)
    trials_per_speaker: int = 10  # same-speaker trials per speaker (and as many different-speaker ones)
    snrs: list[float] = dataclasses.field(default_factory=lambda: [0.0, 5.0, 10.0])  # noisy copies of every clean trial
    noise: Path | None = None  # folder of noise clips (default: white noise)
    p_target: float = 0.01  # prior of the minDCF operating point


@dataclasses.dataclass
class SpeakerEvalResult:
    """EER and minDCF per condition."""

    out: Path
    verifier: str
    conditions: dict[str, dict[str, float]]  # condition -> {"eer", "min_dcf", "threshold", "targets", "nontargets"}
    seconds_per_clip: float

    def summary(self) -> dict[str, object]:
        rows: dict[str, object] = {"report": self.out / "report.md", "verifier": self.verifier}
        for cond, r in self.conditions.items():
            rows[cond] = (
                f"EER {100 * r['eer']:.2f}%  minDCF {r['min_dcf']:.3f}  ({r['targets']}+{r['nontargets']} trials)"
            )
        rows["time per clip (embedding)"] = f"{self.seconds_per_clip:.3f} s"
        return rows


def run(config: SpeakerEvalConfig) -> SpeakerEvalResult:
    """Score every trial and write the report.

    Raises:
        UserError: no trials to score, unreadable audio, trials of one class only.
    """
    trials = _trials(config)
    for path in sorted({p for t in trials for p in (t.enrol, t.test)}):
        audio_info(path)
    verifier = load_verifier(config.verifier, str(resolve_device(config.device)))
    noise = NoiseSource(config.noise)
    spent: list[float] = []

    def embed(wavs):  # noqa: ANN001, ANN202 - the verifier's own types
        t0 = time.perf_counter()
        out = verifier.embed(wavs)
        spent.append((time.perf_counter() - t0) / max(1, len(wavs)))
        return out

    scores = score_trials(embed, trials, snrs=config.snrs, noise=noise, seed=config.seed, title="trials")
    per_condition = condition_results(scores, trials, p_target=config.p_target)
    results = {
        c: {
            "eer": r.eer,
            "min_dcf": r.min_dcf,
            "threshold": r.threshold,
            "targets": r.targets,
            "nontargets": r.nontargets,
        }
        for c, r in per_condition.items()
    }

    out = Path(config.out)
    inputs = {"trials": config.trials or config.manifest, "verifier": config.verifier}
    seconds = sum(spent) / len(spent) if spent else 0.0
    with stage_output(out, stage="evaluate-speaker", config=config, inputs=inputs) as tmp:
        write_json(tmp / "report.json", {"verifier": verifier.name, "conditions": results, "seconds_per_clip": seconds})
        write_scores(tmp / "scores.tsv", trials, scores)
        lines = [
            "# dv evaluate speaker",
            "",
            f"Verifier: {verifier.name}. Noisy conditions add noise ({noise.name}) to the test clip of every clean trial.",
            "",
            f"| Condition | EER % | minDCF (p={config.p_target:g}) | target trials | non-target trials |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c} | {100 * r['eer']:.2f} | {r['min_dcf']:.3f} | {r['targets']} | {r['nontargets']} |"
            for c, r in results.items()
        ]
        if plot_det(scores, trials, per_condition, tmp / "det.png"):
            lines += ["", "![DET curves](det.png)"]
        (tmp / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        add_meta(
            tmp,
            trials=sum(r["targets"] + r["nontargets"] for r in results.values()),
            eer={c: r["eer"] for c, r in results.items()},
        )
    return SpeakerEvalResult(out, verifier.name, results, seconds)


def _trials(config: SpeakerEvalConfig) -> list[Trial]:
    """The trial list: read from ``config.trials`` (ids resolved through ``config.manifest`` when
    both are given), or drawn from ``config.manifest``.

    Raises:
        UserError: neither source, or fewer than two speakers with two utterances each.
    """
    if config.trials is None and config.manifest is None:
        raise UserError("dv evaluate speaker: give either --trials TSV or --manifest MANIFEST")
    rows = read_manifest(config.manifest) if config.manifest is not None else None
    if config.trials is not None:
        return read_trials(config.trials, {u.id: u.audio for u in rows} if rows is not None else None)
    if config.split:
        rows = [u for u in rows if u.split == config.split]  # type: ignore[union-attr]
    counts = Counter(u.speaker for u in rows)  # type: ignore[union-attr]
    if sum(n >= 2 for n in counts.values()) < 2:
        raise UserError(f"{config.manifest}: need at least two speakers with two utterances each to draw trials")
    return make_trials(rows, per_speaker=config.trials_per_speaker, seed=config.seed)  # type: ignore[arg-type]
