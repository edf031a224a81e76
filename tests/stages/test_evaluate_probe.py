"""The noise-separability and style probes (dv evaluate noise-probe / style-probe) on small synthetic corpora,
and CREMA-D's labels read by dv prepare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dvcli.cli import app
from dvcli.errors import UserError
from dvcli.evaluation.probes import colored_noise, leave_one_noise_out, style_accuracy, wilson_interval
from dvcli.manifest import Utterance, read_manifest, write_manifest
from dvcli.testing import SPEAKER_VOICES, make_manifest, voice
from stages.evaluate_probe import NoiseProbeConfig, StyleProbeConfig, run_noise_probe, run_style_probe
from stages.prepare import PrepareConfig, detect_format
from stages.prepare import run as prepare

runner = CliRunner()


def test_wilson_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Table I: 81/263 -> 0.2553-0.3662 (Wilson score, no continuity correction)
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_colored_noise_has_its_spectral_slope() -> None:
    rng = np.random.default_rng(0)
    for kind, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        x = colored_noise(kind, 1 << 16, rng)
        power = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x))
        band = (freqs > 0.001) & (freqs < 0.4)
        fitted = np.polyfit(np.log(freqs[band]), np.log(power[band] + 1e-20), 1)[0]
        assert abs(fitted - slope) < 0.15 and abs(x.std() - 1) < 1e-3


def test_leave_one_out_f1_is_perfect_for_separable_and_low_for_identical_features() -> None:
    rng = np.random.default_rng(0)
    clean = rng.standard_normal((40, 6))
    train = np.arange(40) % 2 == 0
    shifted = {t: clean + np.eye(6)[i] * 5 + 3 for i, t in enumerate(["a", "b", "c"])}  # a shared offset plus its own
    assert all(v["f1"] == 1.0 for v in leave_one_noise_out(clean, shifted, train).values())
    same = {t: clean + 1e-9 * rng.standard_normal(clean.shape) for t in ["a", "b"]}
    assert all(v["f1"] < 0.8 for v in leave_one_noise_out(clean, same, train).values())


def test_style_accuracy_finds_a_label_in_the_embeddings_and_not_a_random_one() -> None:
    rng = np.random.default_rng(1)
    speakers = np.repeat([f"s{i}" for i in range(6)], 20)
    labels = np.tile(["calm", "angry"], 60)
    speaker_part = rng.standard_normal((6, 8)).repeat(20, axis=0)
    embeddings = (
        speaker_part
        + np.where(labels == "angry", 4.0, 0.0)[:, None] * np.eye(8)[0]
        + 0.3 * rng.standard_normal((120, 8))
    )
    found = style_accuracy(embeddings, labels, speakers, folds=3)
    assert found["accuracy"] > 0.9 and found["ci95"][0] > found["chance"] and found["folds"] == 3
    shuffled = rng.permutation(labels)
    blind = style_accuracy(embeddings, shuffled, speakers, folds=3)
    assert blind["ci95"][0] < 0.5 < blind["ci95"][1] + 0.05


def test_noise_probe_separates_loud_noise_better_than_faint(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "data", speakers=3, utterances=4, seconds=(1.0, 1.5))
    loud = run_noise_probe(NoiseProbeConfig(manifest=manifest, out=tmp_path / "loud", snr=0.0)).table["mfcc"]
    faint = run_noise_probe(NoiseProbeConfig(manifest=manifest, out=tmp_path / "faint", snr=40.0)).table["mfcc"]
    report = json.loads((tmp_path / "loud" / "report.json").read_text())
    assert report["noise_types"] == ["white", "pink", "brown"] and set(report["f1"]) == {"mfcc"}
    # MFCC statistics expose 0 dB white and pink noise never seen in training (from the other types)...
    assert loud["white"]["f1"] > 0.9 and loud["pink"]["f1"] > 0.9
    # ... but trained on white and pink only, miss brown (low-frequency) noise; and 40 dB is near chance
    assert loud["brown"]["f1"] < 0.5 and all(v["f1"] < 0.75 for v in faint.values())
    assert "| mfcc |" in (tmp_path / "loud" / "report.md").read_text()


def test_noise_probe_reads_noise_types_from_subfolders_and_refuses_one(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "data", speakers=2, utterances=2, seconds=(1.0, 1.2))
    noise = tmp_path / "noise"
    rng = np.random.default_rng(0)
    for kind in ("hum", "hiss"):
        (noise / kind).mkdir(parents=True)
        sig = np.sin(np.arange(16000) * 2 * np.pi * 50 / 16000) if kind == "hum" else rng.standard_normal(16000)
        sf.write(noise / kind / "a.wav", (0.1 * sig).astype(np.float32), 16000)
    result = run_noise_probe(NoiseProbeConfig(manifest=manifest, out=tmp_path / "out", noise=noise))
    assert set(result.table["mfcc"]) == {"hum", "hiss"}
    (noise / "hiss" / "a.wav").unlink()
    with pytest.raises(UserError, match="needs at least two subfolders"):
        run_noise_probe(NoiseProbeConfig(manifest=manifest, out=tmp_path / "out2", noise=noise))


def _styled_corpus(root: Path, label_from_pitch: bool) -> Path:
    """6 speakers x 12 clips; 'happy' raises pitch and formants (or, when not label_from_pitch, the label is random)."""
    rng = np.random.default_rng(2)
    rows = []
    root.mkdir(parents=True)
    for s in range(6):
        pitch, formants = SPEAKER_VOICES[s]
        for u in range(12):
            aroused = u % 2 == 1
            shift = 1.4 if aroused else 1.0  # a raised, tenser voice: pitch and formants up
            wav = voice(1.2, 16000, pitch=pitch * shift**2, formants=[f * shift for f in formants], seed=100 * s + u)
            path = root / f"s{s}_{u}.wav"
            sf.write(path, wav, 16000)
            label = ("happy" if aroused else "neutral") if label_from_pitch else str(rng.choice(["happy", "neutral"]))
            rows.append(Utterance(f"s{s}_{u}", path, f"s{s}", 1.2, extra={"emotion": label}))
    write_manifest(root / "manifest.tsv", rows)
    return root / "manifest.tsv"


def test_style_probe_hears_an_emotion_that_changes_the_voice(tmp_path: Path) -> None:
    pytest.importorskip("resemblyzer")
    manifest = _styled_corpus(tmp_path / "styled", label_from_pitch=True)
    args = ["evaluate", "style-probe", str(manifest), "--encoder", "resemblyzer", "-o", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--set", "folds=3"])
    assert result.exit_code == 0, result.output
    cell = json.loads((tmp_path / "out" / "report.json").read_text())["encoders"]["resemblyzer"]
    assert cell["ci95"][0] > cell["chance"] and cell["n"] == 72
    random_labels = run_style_probe(
        StyleProbeConfig(manifest=_styled_corpus(tmp_path / "random", False), out=tmp_path / "r", folds=3)
    )
    assert random_labels.table["resemblyzer"]["accuracy"] < cell["accuracy"]


def test_style_probe_refuses_a_label_that_follows_the_speaker(tmp_path: Path) -> None:
    pytest.importorskip("resemblyzer")
    manifest = make_manifest(tmp_path / "data", speakers=2, utterances=3, seconds=(1.0, 1.2))
    rows = read_manifest(manifest)
    for u in rows:
        u.condition = u.speaker  # one label per speaker: no speaker-independent fold can learn it
    write_manifest(manifest, rows)
    with pytest.raises(UserError, match="column 'condition': a fold's training speakers all have one label"):
        run_style_probe(StyleProbeConfig(manifest=manifest, out=tmp_path / "o", label="condition"))
    assert not (tmp_path / "o").exists()


def test_style_probe_without_the_label_column_names_the_columns(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "data", speakers=2, utterances=2, seconds=(1.0, 1.2))
    result = runner.invoke(
        app, ["evaluate", "style-probe", str(manifest), "--encoder", "resemblyzer", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "no 'emotion' column" in result.output and not (tmp_path / "o").exists()


def test_prepare_reads_crema_d_names_into_emotion_labels(tmp_path: Path) -> None:
    folder = tmp_path / "CREMA-D" / "AudioWAV"
    folder.mkdir(parents=True)
    names = ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TSI_NEU_XX", "1002_DFA_SAD_LO"]
    for name in names:
        sf.write(folder / f"{name}.wav", voice(1.0, 16000, seed=len(name)), 16000)
    (folder / "README.wav").write_bytes(b"")  # not a CREMA-D name: passed over
    assert detect_format(tmp_path / "CREMA-D") == "crema-d"
    rows = {
        u.id: u for u in read_manifest(prepare(PrepareConfig(source=tmp_path / "CREMA-D", out=tmp_path / "m")).manifest)
    }
    assert set(rows) == set(names)
    assert rows["1001_DFA_ANG_XX"].extra == {"emotion": "anger", "intensity": "unspecified"}
    assert rows["1001_IEO_HAP_HI"].text == "It's eleven o'clock." and rows["1002_DFA_SAD_LO"].speaker == "1002"
    assert rows["1002_DFA_SAD_LO"].extra["intensity"] == "low"
