"""``dv evaluate noise-probe`` and ``dv evaluate style-probe``: what content features and speaker embeddings carry.

See :mod:`dvcli.evaluation.probes` for the two probes. Both write ``report.md`` and ``report.json``.

- noise probe: for each feature kind of ``features`` (``mfcc``, ``whisper``, ``hubert``), the F1 of
  telling clean from noisy utterances for every held-out noise type (noise types: the subfolders of
  ``noise``, else white, pink and brown noise), mixed at ``snr`` dB;
- style probe: for each speaker encoder of ``encoders`` (``resemblyzer``, a CAM++ checkpoint, a
  ``dv train-joint`` model's encoder), the speaker-independent accuracy of predicting the manifest's
  ``label`` column (e.g. ``emotion``, which ``dv prepare --format crema-d`` writes).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dvcli.atomic import write_json
from dvcli.audio import load_audio
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.evaluation.noise import mix_at_snr
from dvcli.evaluation.probes import NoiseTypes, leave_one_noise_out, pool, style_accuracy
from dvcli.logs import track
from dvcli.manifest import Utterance, read_manifest
from dvcli.outputs import add_meta, stage_output
from dvcli.runtime import resolve_device

log = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class NoiseProbeConfig(StageConfig):
    """Settings of ``dv evaluate noise-probe``."""

    manifest: Path  # the clean utterances
    out: Path  # report folder
    features: list[Literal["mfcc", "whisper", "hubert"]] = dataclasses.field(default_factory=lambda: ["mfcc"])
    checkpoint: Path | None = None  # hubert: a fairseq .pt or Hugging Face folder; whisper: a CTranslate2 folder
    layer: int = 6  # hubert layer (1-based)
    noise: Path | None = None  # one subfolder per noise type (default: white, pink and brown noise)
    snr: float = 5.0  # dB of the noisy copies
    max_utterances: int = 200  # utterances used (a seeded sample); half train, half test


@dataclasses.dataclass(kw_only=True)
class StyleProbeConfig(StageConfig):
    """Settings of ``dv evaluate style-probe``."""

    manifest: Path  # utterances with a label column
    out: Path  # report folder
    label: str = "emotion"  # the manifest column to predict
    encoders: list[str] = dataclasses.field(default_factory=lambda: ["resemblyzer"])  # verifiers side by side
    names: list[str] = dataclasses.field(default_factory=list)  # one name per encoder (default: its spec)
    folds: int = 5  # speaker-independent cross-validation folds (at most the number of speakers)
    max_utterances: int = 0  # 0 = all


@dataclasses.dataclass
class ProbeResult:
    out: Path
    table: dict[str, dict[str, Any]]

    def summary(self) -> dict[str, object]:
        return {"report": self.out / "report.md", **{k: _headline(v) for k, v in self.table.items()}}


def _headline(cell: dict[str, Any]) -> str:
    if "accuracy" in cell:
        low, high = cell["ci95"]
        return f"accuracy {cell['accuracy']:.3f} [{low:.3f}, {high:.3f}] (chance {cell['chance']:.3f})"
    return ", ".join(f"{t} F1 {v['f1']:.2f}" for t, v in cell.items())


def _sample(manifest: Path, limit: int, seed: int) -> list[Utterance]:
    rows = read_manifest(manifest)
    if limit and len(rows) > limit:
        rows = sorted(random.Random(seed).sample(rows, limit), key=lambda u: u.id)
    return rows


def run_noise_probe(config: NoiseProbeConfig) -> ProbeResult:
    """Pool every feature kind over clean and noisy copies; F1 per held-out noise type.

    Raises:
        UserError: fewer than 4 utterances, a bad noise folder, a feature kind that cannot load.
    """
    from stages.extract_units import ExtractUnitsConfig, build_extractor

    utterances = _sample(Path(config.manifest), config.max_utterances, config.seed)
    if len(utterances) < 4:
        raise UserError(f"{config.manifest}: the noise probe needs at least 4 utterances")
    noises = NoiseTypes(config.noise)
    rng = np.random.default_rng(config.seed)
    clips = [load_audio(u.audio).numpy() for u in utterances]
    noisy_clips = {
        t: [mix_at_snr(c, noises.sample(t, len(c), rng), config.snr, rng) for c in clips] for t in noises.names
    }
    train = np.arange(len(clips)) % 2 == 0
    table: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys(config.features):
        extractor = build_extractor(
            ExtractUnitsConfig(
                manifest=Path(config.manifest),
                out=Path(config.out),
                features=kind,
                checkpoint=config.checkpoint,
                layer=config.layer,
                device=config.device,
            )
        )
        device = resolve_device(config.device)
        if isinstance(extractor, torch.nn.Module):
            extractor = extractor.to(device)

        def features(wav: np.ndarray, extractor: Any = extractor, device: torch.device = device) -> np.ndarray:
            x = torch.from_numpy(np.asarray(wav, dtype=np.float32))
            with torch.inference_mode():
                frames, n = extractor(extractor.preprocess(x)[None].to(device), torch.tensor([len(x)]))
            return pool(frames[0, : int(n[0])].float().cpu().numpy())

        clean = np.stack([features(c) for c in track(clips, f"{kind}: clean")])
        noisy = {t: np.stack([features(c) for c in track(cs, f"{kind}: {t}")]) for t, cs in noisy_clips.items()}
        table[kind] = leave_one_noise_out(clean, noisy, train)
    report = {"snr_db": config.snr, "noise_types": noises.names, "utterances": len(clips), "f1": table}
    _publish(config, "noise-probe", report, _noise_markdown(report))
    return ProbeResult(Path(config.out), table)


def _publish(config: NoiseProbeConfig | StyleProbeConfig, stage: str, report: dict[str, Any], markdown: str) -> None:
    """``report.json`` and ``report.md`` into ``config.out``, all or nothing."""
    with stage_output(Path(config.out), stage=stage, config=config) as tmp:
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(markdown, encoding="utf-8")
        add_meta(tmp, utterances=report["utterances"])


def _noise_markdown(report: dict[str, Any]) -> str:
    types = report["noise_types"]
    lines = [
        "# Noise probe: clean vs noisy from utterance-pooled features",
        "",
        f"F1 of 'noisy' for each held-out noise type (trained on the others), {report['snr_db']:g} dB SNR, "
        f"{report['utterances']} utterances (half to train, half to test). High = the features expose the noise.",
        "",
        "| features | " + " | ".join(types) + " |",
        "|---|" + "---|" * len(types),
    ]
    for kind, cells in report["f1"].items():
        lines.append(f"| {kind} | " + " | ".join(f"{cells[t]['f1']:.3f}" for t in types) + " |")
    return "\n".join(lines) + "\n"


def run_style_probe(config: StyleProbeConfig) -> ProbeResult:
    """Embed every utterance with each encoder; speaker-independent accuracy of predicting ``label``.

    Raises:
        UserError: a manifest without the label column, fewer than two speakers or labels, names
            that do not match the encoders, an encoder that does not load.
    """
    from dvcli.evaluation.verifiers import load_verifier

    utterances = _sample(Path(config.manifest), config.max_utterances, config.seed)
    labelled = [u for u in utterances if _label(u, config.label)]
    if not labelled:
        columns = sorted({k for u in utterances for k in u.extra})
        raise UserError(
            f"{config.manifest}: no '{config.label}' column with values (extra columns: {', '.join(columns) or 'none'}); "
            "choose one with --label"
        )
    if len({u.speaker for u in labelled}) < 2 or len({_label(u, config.label) for u in labelled}) < 2:
        raise UserError(
            f"{config.manifest}: the style probe needs at least two speakers and two '{config.label}' values"
        )
    names = config.names or list(config.encoders)
    if len(names) != len(config.encoders):
        raise UserError(f"{len(names)} names for {len(config.encoders)} encoders: give one --name per encoder")
    clips = [load_audio(u.audio).numpy() for u in labelled]
    labels = [_label(u, config.label) for u in labelled]
    speakers = [u.speaker for u in labelled]
    table = {}
    for name, spec in zip(names, config.encoders):
        verifier = load_verifier(spec, str(resolve_device(config.device)))
        embeddings = np.stack([verifier.embed([c])[0] for c in track(clips, f"embedding ({name})")])
        try:
            table[name] = style_accuracy(embeddings, labels, speakers, config.folds)
        except ValueError as err:
            raise UserError(f"{config.manifest}: column '{config.label}': {err}") from None
    report = {"label": config.label, "utterances": len(labelled), "speakers": len(set(speakers)), "encoders": table}
    _publish(config, "style-probe", report, _style_markdown(report))
    return ProbeResult(Path(config.out), table)


def _label(utterance: Utterance, column: str) -> str:
    """The value of ``column`` (a manifest column: condition, split, or any extra one) for one utterance."""
    if column in ("condition", "split"):
        return getattr(utterance, column).strip()
    return utterance.extra.get(column, "").strip()


def _style_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Style probe: '{report['label']}' from speaker embeddings",
        "",
        f"Logistic regression, speaker-independent folds, {report['utterances']} utterances of "
        f"{report['speakers']} speakers; accuracy with its 95% Wilson interval.",
        "",
        "| encoder | accuracy | 95% CI | chance (majority) | folds |",
        "|---|---|---|---|---|",
    ]
    for name, cell in report["encoders"].items():
        low, high = cell["ci95"]
        lines.append(
            f"| {name} | {cell['accuracy']:.3f} | {low:.3f}-{high:.3f} | {cell['chance']:.3f} | {cell['folds']} |"
        )
    return "\n".join(lines) + "\n"
