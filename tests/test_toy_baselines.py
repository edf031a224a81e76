"""examples/toy/run.sh's baseline stages (16-21) from the shell, as a user runs them: on six of the toy
voices, every model trained for 2 steps (STEPS=2), after the DINO-VITS chain of stages 0-7. Every
baseline of the paper's Tables 1 and 4 must come out as its own system of the one report, scored from
clean and from 0 dB references. About 5 minutes on 2 cores, so marked slow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dvcli.joint.model import load_joint
from dvcli.manifest import read_manifest
from stages.demo import default_corpus

TOY = default_corpus()
#: Four training voices and the two held-out ones, six sentences each.
VOICES = ["flite_slt", "flite_awb", "espeak_us_m3", "espeak_wm_f2", "flite_rms", "espeak_us_f4"]
SYSTEMS = ["ground truth", "dino-vits", "dino-vits + dfn3", "byol-a", "whisper-c", "dino-vits-n", "whisper-n"]


def _corpus(root: Path) -> Path:
    lines = (TOY / "speakers.tsv").read_text(encoding="utf-8").splitlines()
    (root / "speakers.tsv").parent.mkdir(parents=True)
    (root / "speakers.tsv").write_text(
        "\n".join([lines[0], *(row for row in lines[1:] if row.split("\t")[0] in VOICES)]) + "\n"
    )
    for voice in VOICES:
        (root / voice).mkdir()
        for n in range(1, 7):
            for suffix in (".flac", ".txt"):
                shutil.copy(TOY / voice / f"{voice}_{n:03d}{suffix}", root / voice)
    return root


def _stages(exp: Path, corpus: Path, first: int, last: int) -> None:
    env = {
        **os.environ,
        "CORPUS": str(corpus),
        "STEPS": "2",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    script = TOY / "run.sh"
    done = subprocess.run(
        ["bash", str(script), "--dir", str(exp), "--stage", str(first), "--stop-stage", str(last)],
        env=env, capture_output=True, text=True, cwd=exp.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not (TOY / "flite_slt").is_dir(), reason="examples/toy is not in this checkout")
def test_every_baseline_runs_from_the_toy_recipe_into_one_report(tmp_path: Path) -> None:
    corpus, exp = _corpus(tmp_path / "corpus"), tmp_path / "exp"
    _stages(exp, corpus, 0, 7)
    _stages(exp, corpus, 16, 21)

    report = json.loads((exp / "report-baselines" / "report.json").read_text(encoding="utf-8"))
    assert report["systems"] == SYSTEMS
    groups = {(g["system"], g["condition"]): g for g in report["groups"]}
    for system in SYSTEMS[1:]:
        for condition in ("clean", "noisy white 0 dB"):
            metrics = groups[(system, condition)]["metrics"]
            assert groups[(system, condition)]["count"] == 4 and {"cer", "secs", "dnsmos_ovrl"} <= set(metrics)
    # Each arm is what its row of the paper says.
    assert load_joint(exp / "joint-byola").info["speaker_encoder"] == "byol-a"
    assert load_joint(exp / "joint-byola").info["freeze_speaker"]
    for name in ("joint-whisper-c", "joint-whisper-n"):
        assert load_joint(exp / name).units.content == "phonemes"
    assert load_joint(exp / "joint-n").units.kmeans_sha256 == load_joint(exp / "joint").units.kmeans_sha256
    noisy = [u for u in read_manifest(exp / "data-noisy" / "manifest.tsv") if u.split != "heldout"]
    assert sum(u.condition == "noisy" for u in noisy) == round(0.4 * len(noisy))
    transcripts = read_manifest(exp / "transcripts" / "manifest.tsv")
    assert len(transcripts) == 24 and all(u.text.strip() for u in transcripts)
    with open(exp / "synth-dfn3" / "synth.tsv", encoding="utf-8") as f:
        assert "denoise" in f.readline().rstrip("\n").split("\t")
