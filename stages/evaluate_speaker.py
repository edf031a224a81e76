"""``dv evaluate speaker``: EER and minDCF of a speaker verifier, on clean and noisy trials.

Trials come from a TSV (``enrol``, ``test``, ``label`` 1/0, optional ``condition``; paths relative
to the file) or are drawn from a manifest: per speaker, ``trials_per_speaker`` same-speaker pairs
and as many different-speaker pairs. Each clean trial is repeated with noise added to its test
clip at every SNR in ``snrs`` (noise clips from ``noise``, or white noise), so the table shows how
a verifier degrades with noisy audio, the situation DINO-VITS targets.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import random
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from dvcli.atomic import write_json
from dvcli.audio import audio_info, load_audio
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.evaluation.noise import NoiseSource, mix_at_snr
from dvcli.evaluation.verifiers import RESEMBLYZER, cosine, load_verifier
from dvcli.logs import progress
from dvcli.manifest import read_manifest
from dvcli.metrics import eer, min_dcf
from dvcli.outputs import add_meta, stage_output
from dvcli.runtime import resolve_device


@dataclasses.dataclass(kw_only=True)
class SpeakerEvalConfig(StageConfig):
    """Settings of ``dv evaluate speaker``."""

    verifier: str = RESEMBLYZER  # 'resemblyzer' or a CAM++ / joint checkpoint
    out: Path  # report folder
    trials: Path | None = None  # trial list TSV: enrol, test, label (1 = same speaker)[, condition]
    manifest: Path | None = None  # draw trials from this manifest instead
    split: str = ""  # with manifest: only this split (e.g. heldout)
    trials_per_speaker: int = 10  # same-speaker trials per speaker (and as many different-speaker ones)
    snrs: list[float] = dataclasses.field(default_factory=lambda: [0.0, 5.0, 10.0])  # noisy copies of every clean trial
    noise: Path | None = None  # folder of noise clips (default: white noise)
    p_target: float = 0.01  # prior of the minDCF operating point


@dataclasses.dataclass
class Trial:
    enrol: Path
    test: Path
    label: int
    condition: str = "clean"
    snr: float | None = None  # noise added to the test clip


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
        UserError: neither or both of trials/manifest, unreadable audio, trials of one class only.
    """
    if (config.trials is None) == (config.manifest is None):
        raise UserError("dv evaluate speaker: give either --trials TSV or --manifest MANIFEST (exactly one)")
    clean = read_trials(config.trials) if config.trials else make_trials(config)
    for path in sorted({p for t in clean for p in (t.enrol, t.test)}):
        audio_info(path)
    base = [t for t in clean if t.condition == "clean"]
    trials = list(clean)
    for snr in config.snrs:
        trials += [Trial(t.enrol, t.test, t.label, f"noisy {snr:g} dB", snr) for t in base]

    verifier = load_verifier(config.verifier, str(resolve_device(config.device)))
    noise = NoiseSource(config.noise, seed=config.seed)
    cache: dict[tuple[Path, float | None], np.ndarray] = {}
    spent: list[float] = []

    def embedding(path: Path, snr: float | None) -> np.ndarray:
        key = (path, snr)
        if key not in cache:
            wav = load_audio(path).numpy()
            if snr is not None:
                # The same noisy copy of a file in every trial: seeded by the file and the SNR.
                rng = np.random.default_rng(zlib.crc32(f"{config.seed}/{path}/{snr}".encode()))
                wav = mix_at_snr(wav, noise.sample(len(wav), rng), snr, rng)
            t0 = time.perf_counter()
            cache[key] = verifier.embed([wav])[0]
            spent.append(time.perf_counter() - t0)
        return cache[key]

    scores = []
    with progress() as bar:
        task = bar.add_task("scoring trials", total=len(trials))
        for t in trials:
            scores.append(float(cosine(embedding(t.enrol, None), embedding(t.test, t.snr))[0]))
            bar.update(
                task,
                advance=1,
                description=f"scoring trials [dim]{t.condition}[/dim] {spent[-1] if spent else 0:.2f}s/clip",
            )

    by_condition: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(trials):
        by_condition[t.condition].append(i)
    results = {}
    for cond, idx in by_condition.items():
        s = np.array([scores[i] for i in idx])
        y = np.array([trials[i].label for i in idx])
        ok = np.isfinite(s)
        try:
            rate, threshold = eer(s[ok], y[ok])
            dcf = min_dcf(s[ok], y[ok], p_target=config.p_target)
        except ValueError:
            raise UserError(f"condition '{cond}': trials need both same-speaker and different-speaker pairs") from None
        results[cond] = {
            "eer": rate,
            "min_dcf": dcf,
            "threshold": threshold,
            "targets": int(y[ok].sum()),
            "nontargets": int((1 - y[ok]).sum()),
        }

    out = Path(config.out)
    inputs = {"trials": config.trials or config.manifest, "verifier": config.verifier}
    seconds = float(np.mean(spent)) if spent else 0.0
    with stage_output(out, stage="evaluate-speaker", config=config, inputs=inputs) as tmp:
        write_json(tmp / "report.json", {"verifier": verifier.name, "conditions": results, "seconds_per_clip": seconds})
        with (tmp / "scores.tsv").open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["enrol", "test", "label", "condition", "score"])
            for t, s in zip(trials, scores):
                w.writerow([t.enrol, t.test, t.label, t.condition, f"{s:.6f}"])
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
        (tmp / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        add_meta(tmp, trials=len(trials), eer={c: r["eer"] for c, r in results.items()})
    return SpeakerEvalResult(out, verifier.name, results, seconds)


def read_trials(path: Path) -> list[Trial]:
    """Read a trial list TSV (header ``enrol``, ``test``, ``label``[, ``condition``]).

    Raises:
        UserError: missing file or columns, labels other than 0/1, no rows.
    """
    if not path.is_file():
        raise UserError(f"{path}: trial list not found")
    base = path.parent.resolve()
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in ("enrol", "test", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(
                f"{path}: trial list needs a header with columns enrol, test, label (missing {', '.join(missing)})"
            )
        trials = []
        for lineno, row in enumerate(reader, start=2):
            if row["label"].strip() not in ("0", "1"):
                raise UserError(f"{path}:{lineno}: label must be 1 (same speaker) or 0, got '{row['label']}'")
            resolve = lambda p: Path(p) if Path(p).is_absolute() else base / p
            trials.append(
                Trial(
                    resolve(row["enrol"]),
                    resolve(row["test"]),
                    int(row["label"]),
                    (row.get("condition") or "clean").strip() or "clean",
                )
            )
    if not trials:
        raise UserError(f"{path}: trial list has no rows")
    return trials


def make_trials(config: SpeakerEvalConfig) -> list[Trial]:
    """Same- and different-speaker pairs drawn (seeded) from a manifest.

    Raises:
        UserError: fewer than two speakers with two utterances each.
    """
    rows = read_manifest(config.manifest)  # type: ignore[arg-type]
    if config.split:
        rows = [u for u in rows if u.split == config.split]
    by_speaker: dict[str, list[Path]] = defaultdict(list)
    for u in rows:
        by_speaker[u.speaker].append(u.audio)
    speakers = sorted(s for s, utts in by_speaker.items() if len(utts) >= 2)
    if len(speakers) < 2:
        raise UserError(f"{config.manifest}: need at least two speakers with two utterances each to draw trials")
    rng = random.Random(config.seed)
    trials = []
    for s in speakers:
        pairs = list(itertools.combinations(by_speaker[s], 2))
        for enrol, test in rng.sample(pairs, min(config.trials_per_speaker, len(pairs))):
            trials.append(Trial(enrol, test, 1))
            other = rng.choice([o for o in speakers if o != s])
            trials.append(Trial(enrol, rng.choice(by_speaker[other]), 0))
    return trials
