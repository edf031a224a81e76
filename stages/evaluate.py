"""``dv evaluate run``: score systems' clips for intelligibility, speaker similarity and quality.

Each system is a ``synth.tsv`` (or a manifest, scored as ground truth; see
:mod:`dvcli.evaluation.clips`). Per clip:

- ``cer``/``wer``: offline ASR transcript against the input text (both normalised);
- ``secs``: cosine similarity between the clip's and the target audio's verifier embeddings
  (target = ``ref_clean`` when given, else ``ref``); ``secs_speaker`` additionally against the
  centroid of the target speaker's utterances in ``target_manifest`` (leaving the clip itself out);
- ``dnsmos_ovrl/sig/bak/p808``: DNSMOS quality estimates.

Writes ``report.json`` (every group's mean, 95% CI and count, timing per metric), ``report.md``
(a Table-1-style table plus a long one), ``clips.tsv`` (every clip's scores and transcript) and
one PNG bar chart per metric, and ``report.html``, the listening page (:mod:`dvcli.evaluation.listening_page`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dvcli.atomic import write_json
from dvcli.audio import SAMPLE_RATE, audio_info, load_audio
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.evaluation.asr import AUTO, load_asr, score_transcript
from dvcli.evaluation.clips import Clip, condition_order, gather_clips, system_order
from dvcli.evaluation.dnsmos import load_dnsmos
from dvcli.evaluation.listening_page import write_listening_page
from dvcli.evaluation.report import (
    Group,
    Metric,
    add_speaker_spread,
    long_markdown,
    plot_bars,
    plot_per_speaker,
    speaker_markdown,
    summarize,
    table1_markdown,
)
from dvcli.evaluation.verifiers import RESEMBLYZER, cosine, load_verifier
from dvcli.logs import progress
from dvcli.manifest import read_manifest
from dvcli.outputs import add_meta, stage_output
from dvcli.runtime import resolve_device

log = logging.getLogger(__name__)

MetricName = Literal["cer", "secs", "dnsmos"]

#: Every per-clip metric and how reports show it.
METRICS = {
    m.key: m
    for m in (
        Metric("cer", "CER %", scale=100, digits=1, higher_is_better=False),
        Metric("wer", "WER %", scale=100, digits=1, higher_is_better=False),
        Metric("secs", "SECS", digits=3),
        Metric("secs_speaker", "SECS (speaker)", digits=3),
        Metric("dnsmos_ovrl", "DNSMOS"),
        Metric("dnsmos_sig", "DNSMOS SIG"),
        Metric("dnsmos_bak", "DNSMOS BAK"),
        Metric("dnsmos_p808", "DNSMOS P.808"),
    )
}
#: The columns of the Table-1-style table (the paper reports CER, SECS and MOS per condition).
TABLE1 = ("cer", "secs", "secs_speaker", "dnsmos_ovrl")


@dataclasses.dataclass(kw_only=True)
class EvaluateConfig(StageConfig):
    """Settings of ``dv evaluate run``."""

    systems: list[Path] = dataclasses.field(
        default_factory=list
    )  # synth.tsv files (or their folders); manifests count as ground truth
    out: Path  # report folder
    names: list[str] = dataclasses.field(default_factory=list)  # one name per system (default: the table's folder name)
    ground_truth: Path | None = None  # a manifest whose real recordings are scored as the 'ground truth' system
    split: str = ""  # with ground_truth: keep only this split (e.g. heldout)
    metrics: list[MetricName] = dataclasses.field(default_factory=lambda: ["cer", "secs", "dnsmos"])  # what to measure
    asr: str = (
        AUTO  # auto (whisper-base when installed, else pocketsphinx), whisper-base, pocketsphinx, or a Whisper folder
    )
    verifier: str = RESEMBLYZER  # 'resemblyzer', a CAM++ / BYOL-A / joint checkpoint, or its folder (SECS)
    target_manifest: Path | None = (
        None  # clean utterances of the target speakers: adds SECS against each speaker's centroid
    )
    target_utterances: int = 10  # at most this many utterances per speaker form the centroid
    max_clips: int = 0  # score at most this many clips per system (0 = all)
    plots: bool = True  # write PNG bar charts
    page_rows: int = 20  # sentences per system x condition on the listening page report.html (0 = no page)


@dataclasses.dataclass
class EvaluateResult:
    """What ``dv evaluate run`` measured."""

    out: Path
    groups: list[Group]
    clips: int
    seconds_per_clip: dict[str, float]  # metric -> mean compute time per clip

    def summary(self) -> dict[str, object]:
        """Rows for the end-of-stage table: one per (system, condition), then timing."""
        rows: dict[str, object] = {"report": self.out / "report.md", "clips scored": self.clips}
        for g in self.groups:
            cells = [f"{METRICS[k].label} {METRICS[k].cell(g.stats.get(k))}" for k in TABLE1 if k in g.stats]
            rows[f"{g.system} / {g.condition}"] = ", ".join(cells) or "–"
        for name, seconds in self.seconds_per_clip.items():
            rows[f"time per clip: {name}"] = f"{seconds:.3f} s"
        return rows


def run(config: EvaluateConfig) -> EvaluateResult:
    """Score every clip of every system and write the report folder.

    Raises:
        UserError: no systems, unreadable tables or audio, clashing system names, unknown
            speakers for ``target_manifest``, missing evaluation packages.
    """
    if config.page_rows < 0:
        raise UserError(f"page_rows {config.page_rows}: give the sentences to show per cell, or 0 for no page")
    clips = gather_clips(config.systems, config.names, config.ground_truth, config.split, config.max_clips)
    metrics = list(dict.fromkeys(config.metrics))
    _check_audio(clips, "secs" in metrics)
    device = str(resolve_device(config.device))

    asr = load_asr(config.asr, device) if "cer" in metrics else None
    verifier = load_verifier(config.verifier, device) if "secs" in metrics else None
    dnsmos = load_dnsmos() if "dnsmos" in metrics else None
    centroids = _speaker_centroids(config, clips, verifier) if verifier and config.target_manifest else {}

    embeddings: dict[Path, np.ndarray] = {}

    def embed(path: Path) -> np.ndarray:
        if path not in embeddings:
            embeddings[path] = verifier.embed([load_audio(path).numpy()])[0]  # type: ignore[union-attr]
        return embeddings[path]

    records: list[dict[str, Any]] = []
    timing: dict[str, list[float]] = defaultdict(list)
    with progress() as bar:
        task = bar.add_task("scoring", total=len(clips))
        for clip in clips:
            wav = load_audio(clip.audio).numpy()
            rec: dict[str, Any] = {
                "system": clip.system,
                "condition": clip.group,
                "id": clip.id,
                "seconds": len(wav) / SAMPLE_RATE,
            }
            if clip.speaker:
                rec["speaker"] = clip.speaker
            spent: dict[str, float] = {}
            if asr is not None and clip.text.strip():
                t0 = time.perf_counter()
                tr = score_transcript(clip.text, asr.transcribe(wav))
                spent["asr"] = time.perf_counter() - t0
                rec.update(
                    cer=tr.cer,
                    wer=tr.wer,
                    char_errors=tr.char_errors,
                    chars=tr.chars,
                    text=tr.reference,
                    transcript=tr.hypothesis,
                )
            if verifier is not None and (clip.target is not None or clip.speaker in centroids):
                t0 = time.perf_counter()
                e = verifier.embed([wav])[0]
                if clip.target is not None:
                    rec["secs"] = float(cosine(e, embed(clip.target))[0])
                centroid = _centroid(centroids[clip.speaker], clip.audio) if clip.speaker in centroids else None
                if centroid is not None:
                    rec["secs_speaker"] = float(cosine(e, centroid)[0])
                spent["secs"] = time.perf_counter() - t0
            if dnsmos is not None:
                t0 = time.perf_counter()
                rec.update({f"dnsmos_{k}": v for k, v in dnsmos.score(wav).items()})
                spent["dnsmos"] = time.perf_counter() - t0
            for name, seconds in spent.items():
                timing[name].append(seconds)
                rec[f"time_{name}"] = seconds
            records.append(rec)
            clip_time = "  ".join(f"{n} {s:.2f}s" for n, s in spent.items())
            bar.update(task, advance=1, description=f"scoring [dim]{clip.system}/{clip.id}[/dim] {clip_time}")

    systems, conditions = system_order(clips), condition_order(clips)
    keys = [k for k in METRICS if any(k in r for r in records)]
    groups = summarize(records, keys, systems, conditions)
    for g in groups:
        rows = [r for r in records if r["system"] == g.system and r["condition"] == g.condition and r.get("chars")]
        if rows:  # corpus-level CER: total edits over total characters (weights long sentences more)
            g.extra["corpus_cer"] = sum(r["char_errors"] for r in rows) / sum(r["chars"] for r in rows)
    add_speaker_spread(groups, records, keys, seed=config.seed)
    seconds_per_clip = {name: float(np.mean(v)) for name, v in timing.items()}

    out = Path(config.out)
    inputs = {f"system{i}": p for i, p in enumerate(config.systems)}
    if config.ground_truth:
        inputs["ground_truth"] = config.ground_truth
    with stage_output(out, stage="evaluate", config=config, inputs=inputs) as tmp:
        report = {
            "systems": systems,
            "conditions": conditions,
            "groups": [g.to_dict() for g in groups],
            "timing_seconds_per_clip": seconds_per_clip,
            "asr": asr.name if asr else None,
            "verifier": verifier.name if verifier else None,
        }
        write_json(tmp / "report.json", report)
        plots = []
        if config.plots:
            for key in keys:
                if key in TABLE1 or key == "wer":
                    name = f"{key}.png"
                    if plot_bars(groups, METRICS[key], systems, conditions, tmp / name):
                        plots.append(name)
                    if key in TABLE1 and plot_per_speaker(groups, METRICS[key], tmp / f"{key}_per_speaker.png"):
                        plots.append(f"{key}_per_speaker.png")
        (tmp / "report.md").write_text(_markdown(groups, keys, systems, conditions, report, plots), encoding="utf-8")
        if config.page_rows > 0:
            table = [METRICS[k] for k in keys]
            write_listening_page(tmp, clips, records, groups, table, plots, rows_per_group=config.page_rows)
        _write_clips(tmp / "clips.tsv", records)
        add_meta(tmp, clips=len(records), systems=systems, conditions=conditions)
    return EvaluateResult(out=out, groups=groups, clips=len(records), seconds_per_clip=seconds_per_clip)


def _check_audio(clips: list[Clip], refs: bool) -> None:
    """Read every header first, so a missing file fails in a second rather than after an hour of scoring."""
    paths = {c.audio for c in clips}
    if refs:
        paths |= {c.target for c in clips if c.target is not None}
    for path in sorted(paths):
        audio_info(path)  # raises UserError naming the file


def _speaker_centroids(
    config: EvaluateConfig, clips: list[Clip], verifier: Any
) -> dict[str, list[tuple[Path, np.ndarray]]]:
    """Embeddings of each target speaker's clean utterances; also fills in clips' speakers from their refs."""
    rows = read_manifest(config.target_manifest)  # type: ignore[arg-type]
    by_path = {u.audio.resolve(): u.speaker for u in rows}
    by_id = {u.id: u.speaker for u in rows}
    for c in clips:
        if c.speaker:
            continue
        for p in (c.target, c.ref):
            if p is not None and (p.resolve() in by_path or p.stem in by_id):
                c.speaker = by_path.get(p.resolve()) or by_id[p.stem]
                break
    wanted = {c.speaker for c in clips if c.speaker}
    unknown = sorted(s for s in wanted if s not in set(by_id.values()))
    if unknown:
        raise UserError(
            f"{config.target_manifest}: has no utterances of speaker(s) {', '.join(unknown[:5])} "
            "(give the manifest of the target speakers, or add a matching 'speaker' column to synth.tsv)"
        )
    if not wanted:
        raise UserError(
            f"{config.target_manifest}: cannot tell the clips' speakers (synth.tsv has no 'speaker' column and "
            "its refs are not in this manifest); add a 'speaker' column"
        )
    enrolled: dict[str, list[tuple[Path, np.ndarray]]] = {}
    for speaker in sorted(wanted):
        utts = [u for u in rows if u.speaker == speaker and u.condition in ("", "clean")][: config.target_utterances]
        e = verifier.embed([load_audio(u.audio).numpy() for u in utts]) if utts else np.zeros((0, 1))
        enrolled[speaker] = [(u.audio.resolve(), v) for u, v in zip(utts, e) if np.isfinite(v).all()]
    return enrolled


def _centroid(enrolled: list[tuple[Path, np.ndarray]], leave_out: Path) -> np.ndarray | None:
    """Mean embedding of a speaker's utterances, without the clip being scored (a clip is not its own target)."""
    rows = [e for path, e in enrolled if path != leave_out.resolve()]
    if not rows:
        return None
    mean = np.mean(rows, axis=0)
    return mean / np.linalg.norm(mean)


def _markdown(
    groups: list[Group],
    keys: list[str],
    systems: list[str],
    conditions: list[str],
    report: dict[str, Any],
    plots: list[str],
) -> str:
    table1 = [METRICS[k] for k in TABLE1 if k in keys]
    others = [METRICS[k] for k in keys]
    lines = [
        "# dv evaluate",
        "",
        "Mean ± half-width of the 95% confidence interval (Student's t over clips).",
        f"ASR: {report['asr'] or '–'}; speaker verifier: {report['verifier'] or '–'}"
        + ("; quality: DNSMOS (P.835 OVRL)." if "dnsmos_ovrl" in keys else "."),
        "",
        table1_markdown(groups, table1, systems, conditions) if table1 else "",
        "",
        "## All metrics",
        "",
        long_markdown(groups, others),
        "",
    ]
    cer_rows = [g for g in groups if "corpus_cer" in g.extra]
    if cer_rows:
        lines += [
            "Corpus-level CER (all edits / all characters): "
            + "; ".join(f"{g.system} / {g.condition} {100 * g.extra['corpus_cer']:.1f}%" for g in cer_rows)
            + ".",
            "",
        ]
    if report["timing_seconds_per_clip"]:
        lines += [
            "Compute time per clip: "
            + ", ".join(f"{k} {v:.3f} s" for k, v in report["timing_seconds_per_clip"].items())
            + ".",
            "",
        ]
    spread = speaker_markdown(groups, table1)
    if spread:
        lines += [
            "## Variance across speakers",
            "",
            "Clips of one speaker are not independent: the speakers' interval resamples speakers, then "
            "their clips (a two-stage bootstrap), and is the one to read for a new speaker; the "
            "standard deviation is that of the speakers' means.",
            "",
            spread,
            "",
        ]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _write_clips(path: Path, records: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for r in records:
        writer.writerow([_fmt(r.get(k, "")) for k in columns])
    path.write_text(buf.getvalue(), encoding="utf-8")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)
