"""dv evaluate end to end on toy clips: ground truth and a system, clean vs noisy, real scorers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dvcli.cli import app
from dvcli.evaluation.clips import Clip, write_synth_table
from dvcli.evaluation.noise import mix_at_snr
from dvcli.manifest import read_manifest
from dvcli.metrics import mean_ci95
from dvcli.testing import make_manifest

runner = CliRunner()


def _toy_systems(root: Path) -> tuple[Path, Path]:
    """Ground truth (2 speakers x 2 clips) and a 'clone' system: two clips, each clean and at 0 dB white noise."""
    # 1.13-1.25 s: DNSMOS tiles a clip to 9.01 s by doubling, and this range gives one window (1.12 s would give 8)
    manifest = make_manifest(root / "gt", speakers=2, utterances=2, seconds=(1.15, 1.24))
    utts = read_manifest(manifest)
    rng = np.random.default_rng(0)
    clips = []
    for u in utts[::2]:  # first clip of each speaker; its reference is the speaker's other clip
        ref = next(v.audio for v in utts if v.speaker == u.speaker and v.id != u.id)
        wav, rate = sf.read(u.audio, dtype="float32")
        noisy = root / "clone" / f"{u.id}_0dB.wav"
        noisy.parent.mkdir(parents=True, exist_ok=True)
        sf.write(noisy, mix_at_snr(wav, rng.standard_normal(len(wav)), 0.0, rng), rate)
        clips.append(Clip("clone", f"{u.id}-clean", u.audio, u.text, ref, speaker=u.speaker, condition="clean"))
        clips.append(Clip("clone", f"{u.id}-noisy", noisy, u.text, ref, speaker=u.speaker, condition="noisy", snr=0.0))
    write_synth_table(root / "clone" / "synth.tsv", clips)
    return manifest, root / "clone" / "synth.tsv"


def test_evaluate_reports_cer_secs_dnsmos_per_system_and_condition_with_cis(tmp_path: Path) -> None:
    for package in ("pocketsphinx", "resemblyzer", "speechmos"):
        pytest.importorskip(package)
    manifest, synth = _toy_systems(tmp_path)
    out = tmp_path / "report"
    # The bare form `dv evaluate TABLE...` is `dv evaluate run TABLE...`.
    args = ["evaluate", str(synth), "--ground-truth", str(manifest), "--target-manifest", str(manifest), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    report = json.loads((out / "report.json").read_text())
    assert report["systems"] == ["ground truth", "clone"]
    assert report["conditions"] == ["clean", "noisy 0 dB"]
    from dvcli import whisper_base

    default_asr = "whisper-base" if whisper_base.is_installed() else "pocketsphinx"  # --asr auto
    assert report["asr"] == default_asr and report["verifier"] == "resemblyzer"
    assert set(report["timing_seconds_per_clip"]) == {"asr", "secs", "dnsmos"}
    cells = {(g["system"], g["condition"]): g for g in report["groups"]}
    assert set(cells) == {("ground truth", "clean"), ("clone", "clean"), ("clone", "noisy 0 dB")}

    # Every cell's mean and CI are those of its clips in clips.tsv.
    rows = list(csv.DictReader((out / "clips.tsv").open(), delimiter="\t"))
    assert len(rows) == 4 + 4
    for (system, condition), cell in cells.items():
        assert cell["count"] == (4 if system == "ground truth" else 2)
        for metric in ("cer", "secs", "secs_speaker", "dnsmos_ovrl", "dnsmos_bak"):
            values = [float(r[metric]) for r in rows if r["system"] == system and r["condition"] == condition]
            mean, half = mean_ci95(values)
            # clips.tsv keeps 6 significant digits
            assert cell["metrics"][metric]["mean"] == pytest.approx(mean, rel=1e-5, abs=1e-6)
            assert cell["metrics"][metric]["ci95"] == pytest.approx(half, rel=1e-4, abs=1e-6)
            assert cell["metrics"][metric]["n"] == len(values)

    # The numbers mean something: 0 dB white noise costs speaker similarity and quality.
    clean, noisy = cells[("clone", "clean")]["metrics"], cells[("clone", "noisy 0 dB")]["metrics"]
    assert noisy["secs"]["mean"] < clean["secs"]["mean"] - 0.1
    assert noisy["dnsmos_bak"]["mean"] < clean["dnsmos_bak"]["mean"]
    assert clean["secs"]["mean"] > 0.8  # same synthetic voice as the reference
    assert clean["secs_speaker"]["mean"] > 0.8  # and as the speaker's centroid

    md = (out / "report.md").read_text()
    assert (
        "| System | clean: CER % | clean: SECS | clean: SECS (speaker) | clean: DNSMOS "
        "| noisy 0 dB: CER % | noisy 0 dB: SECS | noisy 0 dB: SECS (speaker) | noisy 0 dB: DNSMOS |"
    ) in md
    assert md.count("| ground truth |") == 2 and md.count("| clone |") == 1 + 2
    for png in ("cer.png", "secs.png", "dnsmos_ovrl.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "meta.json").is_file() and (out / "config.yaml").is_file()

    # Variance across speakers (2 speakers per cell): per-speaker means, their SD, a speaker-resampled CI.
    spread = cells[("ground truth", "clean")]["speakers"]["secs"]
    assert spread["speakers"] == 2 and set(spread["per_speaker"]) == {r["speaker"] for r in rows}
    per_speaker = [
        float(np.mean([float(r["secs"]) for r in rows if r["system"] == "ground truth" and r["speaker"] == spk]))
        for spk in sorted(spread["per_speaker"])
    ]
    assert list(spread["per_speaker"].values()) == pytest.approx(per_speaker, rel=1e-4)
    assert spread["between_speaker_sd"] == pytest.approx(float(np.std(per_speaker, ddof=1)), rel=1e-4)
    assert "## Variance across speakers" in md and "| ground truth / clean | SECS | 2 |" in md
    assert (out / "secs_per_speaker.png").read_bytes()[:4] == b"\x89PNG"


def test_speaker_eer_on_clean_and_noisy_trials_drawn_from_a_manifest(tmp_path: Path) -> None:
    pytest.importorskip("resemblyzer")
    manifest = make_manifest(tmp_path / "gt", speakers=3, utterances=3, seconds=(1.0, 1.2))
    out = tmp_path / "spk"
    args = [
        "evaluate",
        "speaker",
        "--manifest",
        str(manifest),
        "--trials-per-speaker",
        "3",
        "--snrs",
        "0",
        "-o",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())["conditions"]
    assert list(report) == ["clean", "noisy 0 dB"]
    assert report["clean"]["targets"] == report["clean"]["nontargets"] == 9
    assert report["clean"]["eer"] == 0.0  # distinct synthetic voices separate perfectly
    assert report["noisy 0 dB"]["eer"] >= report["clean"]["eer"]
    scores = list(csv.DictReader((out / "scores.tsv").open(), delimiter="\t"))
    assert len(scores) == 36
    assert (out / "det.png").read_bytes()[:4] == b"\x89PNG" and "![DET curves](det.png)" in (
        out / "report.md"
    ).read_text()
    # The trial list written out is a valid input: re-scoring it reproduces the clean EER.
    trials = tmp_path / "trials.tsv"
    trials.write_text(
        "enrol\ttest\tlabel\n"
        + "".join(f"{r['enrol']}\t{r['test']}\t{r['label']}\n" for r in scores if r["condition"] == "clean")
    )
    again = runner.invoke(
        app, ["evaluate", "speaker", "--trials", str(trials), "--snrs", "", "-o", str(tmp_path / "again")]
    )
    assert again.exit_code == 0, again.output
    assert list(json.loads((tmp_path / "again" / "report.json").read_text())["conditions"]) == ["clean"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["evaluate", "run", "{synth}", "--name", "a", "--name", "b"], "--name given 2 times for 1 systems"),
        (["evaluate", "run", "{missing}"], "audio file not found"),
        (["evaluate", "run", "{synth}", "--metrics", "cer,mos"], "key 'metrics' expects"),
        (["evaluate", "speaker"], "give either --trials TSV or --manifest"),
        (["evaluate", "mos", "{synth}", "--kit", "{root}"], "kit key not found"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_no_output(tmp_path: Path, args: list[str], needle: str) -> None:
    _, synth = _toy_systems(tmp_path)
    missing = tmp_path / "missing" / "synth.tsv"
    missing.parent.mkdir()
    missing.write_text("id\tout\ttext\nx\tnowhere.wav\thi\n")
    args = [a.format(synth=synth, missing=missing, root=tmp_path) for a in args] + ["-o", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("dv: error: ") and needle in last
    assert not (tmp_path / "out").exists()
