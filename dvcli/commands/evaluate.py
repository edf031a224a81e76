"""``dv evaluate``: a command group (run, speaker, mos-kit, mos); ``dv evaluate SYNTH.tsv`` means ``run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from dvcli.commands.common import (
    ConfigOption,
    DenoiseOption,
    DeviceOption,
    SeedOption,
    SetOption,
    print_summary,
    setting,
    stage_config,
)
from stages import evaluate as evaluate_stage
from stages import evaluate_mos as mos_stage
from stages import evaluate_mos_kit as kit_stage
from stages import evaluate_probe as probe_stage
from stages import evaluate_refs as refs_stage
from stages import evaluate_speaker as speaker_stage


class _DefaultToRun(TyperGroup):
    """Treats ``dv evaluate ARGS`` as ``dv evaluate run ARGS`` when ARGS does not start with a subcommand."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer()
group = typer.Typer(
    cls=_DefaultToRun,
    no_args_is_help=True,
    help="Score synthesized speech (CER, SECS, DNSMOS) clean vs noisy with 95% CIs; speaker EER; MOS tests.\n\n"
    "Example: dv evaluate out/synth.tsv -o out/report   (same as: dv evaluate run ...)",
)
app.add_typer(group, name="evaluate")

Systems = Annotated[
    Optional[list[Path]],
    typer.Argument(
        help="synth.tsv files (or folders holding one); a manifest.tsv counts as ground truth.", exists=True
    ),
]
Names = Annotated[
    Optional[list[str]], typer.Option("--name", help="Name of each system, in order (default: the table's folder).")
]
GroundTruth = Annotated[
    Optional[Path],
    typer.Option("--ground-truth", exists=True, help="A manifest whose real recordings are scored as 'ground truth'."),
]
Split = Annotated[Optional[str], typer.Option(help="With manifests: keep only this split (e.g. heldout).")]
NoiseFolder = Annotated[
    Optional[Path], typer.Option(exists=True, file_okay=False, help="Folder of noise clips (default: white noise).")
]
MaxClips = Annotated[Optional[int], typer.Option(help="Use at most N clips per system (0 = all).")]


def _listed(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value is not None else None


def _floats(value: Optional[str]) -> Optional[list[float]]:
    if value is None:
        return None
    try:
        return [float(v) for v in _listed(value) or []]
    except ValueError:
        raise typer.BadParameter(f"'{value}': expected comma-separated numbers, e.g. 0,5,10") from None


@group.command("run")
def run(
    systems: Systems = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.", file_okay=False)] = Path("report"),
    name: Names = None,
    ground_truth: GroundTruth = None,
    split: Split = None,
    metrics: Annotated[Optional[str], typer.Option(help="Comma-separated: cer,secs,dnsmos (default all).")] = None,
    asr: Annotated[
        Optional[str],
        typer.Option(
            help="CER recogniser: 'auto' (default: 'whisper-base' when installed, else 'pocketsphinx'), "
            "'whisper-base', 'pocketsphinx', or a local Whisper folder (CTranslate2 or Hugging Face)."
        ),
    ] = None,
    verifier: Annotated[
        Optional[str],
        setting(
            evaluate_stage.EvaluateConfig,
            "verifier",
            "SECS verifier: 'resemblyzer', a CAM++ or BYOL-A encoder (campplus.pt, byola.pt), a joint model.pt, or their folder.",
        ),
    ] = None,
    target_manifest: Annotated[
        Optional[Path],
        typer.Option(
            exists=True, help="Manifest of the target speakers' clean speech: adds SECS to each speaker's centroid."
        ),
    ] = None,
    max_clips: MaxClips = None,
    plots: Annotated[Optional[bool], typer.Option("--plots/--no-plots", help="Write PNG bar charts.")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Score systems' clips for CER/WER, SECS and DNSMOS, grouped by system x condition with 95% CIs.

    Writes OUT/report.md (a Table-1-style table), OUT/report.json, OUT/clips.tsv and PNG charts.

    Example: dv evaluate run runs/synth-dino/synth.tsv runs/synth-base/synth.tsv --ground-truth data/manifest.tsv --split heldout -o report
    """
    cfg = stage_config(
        evaluate_stage.EvaluateConfig,
        config,
        set_,
        systems=systems,
        out=out,
        names=name,
        ground_truth=ground_truth,
        split=split,
        metrics=_listed(metrics),
        asr=asr,
        verifier=verifier,
        target_manifest=target_manifest,
        max_clips=max_clips,
        plots=plots,
        device=device,
        seed=seed,
    )
    print_summary("dv evaluate", evaluate_stage.run(cfg).summary())


@group.command("speaker")
def speaker(
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.", file_okay=False)] = Path("speaker-eval"),
    verifier: Annotated[
        Optional[str],
        setting(
            speaker_stage.SpeakerEvalConfig,
            "verifier",
            "'resemblyzer', a CAM++ or BYOL-A encoder, a joint model.pt, or their folder, to evaluate.",
        ),
    ] = None,
    trials: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, help="Trial list TSV: enrol, test, label[, condition]."),
    ] = None,
    manifest: Annotated[
        Optional[Path], typer.Option(exists=True, help="Draw trials from this manifest instead.")
    ] = None,
    split: Split = None,
    trials_per_speaker: Annotated[
        Optional[int], typer.Option(help="Same-speaker trials per speaker (and as many others).")
    ] = None,
    snrs: Annotated[
        Optional[str],
        setting(speaker_stage.SpeakerEvalConfig, "snrs", "Noisy conditions: SNRs in dB, comma-separated ('' = none)."),
    ] = None,
    noise: NoiseFolder = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """EER and minDCF of a speaker verifier on clean trials and on copies with noise at each SNR.

    Example: dv evaluate speaker --verifier runs/campplus/campplus.pt --manifest data/manifest.tsv --split heldout -o report/speaker
    """
    cfg = stage_config(
        speaker_stage.SpeakerEvalConfig,
        config,
        set_,
        out=out,
        verifier=verifier,
        trials=trials,
        manifest=manifest,
        split=split,
        trials_per_speaker=trials_per_speaker,
        snrs=_floats(snrs),
        noise=noise,
        device=device,
        seed=seed,
    )
    print_summary("dv evaluate speaker", speaker_stage.run(cfg).summary())


@group.command("refs")
def refs(
    manifest: Annotated[
        Path, typer.Argument(help="manifest.tsv (or its folder) holding the test speakers.", exists=True)
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder: refs/ and batch.tsv.", file_okay=False)
    ] = Path("refs"),
    split: Annotated[
        Optional[str], setting(refs_stage.RefsConfig, "split", "Speakers of this split ('' = all).")
    ] = None,
    per_speaker: Annotated[
        Optional[int], setting(refs_stage.RefsConfig, "per_speaker", "Test sentences per speaker.")
    ] = None,
    ref_seconds: Annotated[
        Optional[float], setting(refs_stage.RefsConfig, "ref_seconds", "Crop of each reference clip, seconds.")
    ] = None,
    snrs: Annotated[
        Optional[str],
        setting(refs_stage.RefsConfig, "snrs", "A noisy condition per SNR in dB, comma-separated ('' = none)."),
    ] = None,
    noise: NoiseFolder = None,
    denoise: DenoiseOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: SeedOption = None,
) -> None:
    """The zero-shot test list: per unseen speaker, reference crops (clean and noisy) and sentences to say.

    Writes OUT/refs/ and OUT/batch.tsv, the input of dv synthesize --batch.

    Example: dv evaluate refs data/manifest.tsv --split heldout --snrs 0,5 -o data/refs
    """
    cfg = stage_config(
        refs_stage.RefsConfig,
        config,
        set_,
        manifest=manifest,
        out=out,
        split=split,
        per_speaker=per_speaker,
        ref_seconds=ref_seconds,
        snrs=_floats(snrs),
        noise=noise,
        denoise=denoise,
        seed=seed,
    )
    print_summary("dv evaluate refs", refs_stage.run(cfg).summary())


@group.command("mos-kit")
def mos_kit(
    systems: Systems = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Kit folder (index.html, audio/, items.tsv).", file_okay=False)
    ] = Path("mos-kit"),
    name: Names = None,
    ground_truth: GroundTruth = None,
    split: Split = None,
    max_clips: MaxClips = None,
    lists: Annotated[Optional[int], setting(kit_stage.MosKitConfig, "lists", "Distinct balanced orders.")] = None,
    per_group: Annotated[Optional[int], typer.Option(help="Clips per system x condition per rater (0 = all).")] = None,
    checks: Annotated[
        Optional[int], setting(kit_stage.MosKitConfig, "checks", "Attention-check items per rater.")
    ] = None,
    title: Annotated[Optional[str], typer.Option(help="Page title.")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: SeedOption = None,
) -> None:
    """Build a static HTML listening test (naturalness and similarity, 1-5) with attention checks.

    Open OUT/index.html in a browser (or host the folder); raters download their ratings as CSV.
    Keep OUT/items.tsv: it is the key that `dv evaluate mos` needs.

    Example: dv evaluate mos-kit runs/synth-dino/synth.tsv runs/synth-base/synth.tsv --max-clips 20 -o mos-kit
    """
    cfg = stage_config(
        kit_stage.MosKitConfig,
        config,
        set_,
        systems=systems,
        out=out,
        names=name,
        ground_truth=ground_truth,
        split=split,
        max_clips=max_clips,
        lists=lists,
        per_group=per_group,
        checks=checks,
        title=title,
        seed=seed,
    )
    print_summary("dv evaluate mos-kit", kit_stage.run(cfg).summary())


@group.command("mos")
def mos(
    ratings: Annotated[list[Path], typer.Argument(help="Ratings CSV files (or folders of them).", exists=True)],
    kit: Annotated[Path, typer.Option(exists=True, file_okay=False, help="The kit folder (holds items.tsv).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.", file_okay=False)] = Path("mos-report"),
    min_check_accuracy: Annotated[
        Optional[float],
        setting(
            mos_stage.MosConfig, "min_check_accuracy", "Keep raters passing at least this fraction of attention checks."
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """MOS and similarity MOS ± 95% CI per system and condition from the listening page's CSVs.

    Example: dv evaluate mos ratings/*.csv --kit mos-kit -o report/mos
    """
    cfg = stage_config(
        mos_stage.MosConfig, config, set_, kit=kit, ratings=ratings, out=out, min_check_accuracy=min_check_accuracy
    )
    print_summary("dv evaluate mos", mos_stage.run(cfg).summary())


@group.command("noise-probe")
def noise_probe(
    manifest: Annotated[Path, typer.Argument(help="manifest.tsv (or its folder) of clean utterances.", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.", file_okay=False)] = Path("noise-probe"),
    features: Annotated[
        Optional[str],
        typer.Option(help="Feature kinds, comma-separated: mfcc, whisper, hubert (default: mfcc)."),
    ] = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option("--checkpoint", "-c", exists=True, help="HuBERT .pt / folder, or a Whisper folder."),
    ] = None,
    layer: Annotated[Optional[int], setting(probe_stage.NoiseProbeConfig, "layer", "HuBERT layer, 1-based.")] = None,
    noise: Annotated[
        Optional[Path],
        typer.Option(
            exists=True, file_okay=False, help="One subfolder of clips per noise type (default: white, pink, brown)."
        ),
    ] = None,
    snr: Annotated[
        Optional[float], setting(probe_stage.NoiseProbeConfig, "snr", "SNR of the noisy copies, dB.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """Do content features expose noise? F1 of clean-vs-noisy, trained leave one noise type out.

    Example: dv evaluate noise-probe data/toy --features mfcc,whisper -o report/noise-probe
    """
    cfg = stage_config(
        probe_stage.NoiseProbeConfig,
        config,
        set_,
        manifest=manifest,
        out=out,
        features=_listed(features),
        checkpoint=checkpoint,
        layer=layer,
        noise=noise,
        snr=snr,
        device=device,
        seed=seed,
    )
    print_summary("dv evaluate noise-probe", probe_stage.run_noise_probe(cfg).summary())


@group.command("style-probe")
def style_probe(
    manifest: Annotated[Path, typer.Argument(help="manifest.tsv (or its folder) with a label column.", exists=True)],
    encoder: Annotated[
        list[str],
        typer.Option(
            "--encoder",
            help="A speaker encoder: resemblyzer, a CAM++ / BYOL-A / dv train-joint checkpoint, or its folder.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.", file_okay=False)] = Path("style-probe"),
    label: Annotated[
        Optional[str], setting(probe_stage.StyleProbeConfig, "label", "The manifest column to predict.")
    ] = None,
    name: Annotated[
        Optional[list[str]], typer.Option("--name", help="Name of each encoder, in order (default: as given).")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
) -> None:
    """How much style (e.g. emotion) do speaker embeddings carry? Speaker-independent accuracy with a 95% CI.

    Example: dv evaluate style-probe data/crema-d --encoder resemblyzer --encoder runs/joint/model.pt -o report/style
    """
    cfg = stage_config(
        probe_stage.StyleProbeConfig,
        config,
        set_,
        manifest=manifest,
        out=out,
        encoders=encoder,
        names=name,
        label=label,
        device=device,
        seed=seed,
    )
    print_summary("dv evaluate style-probe", probe_stage.run_style_probe(cfg).summary())
