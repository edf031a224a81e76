"""dv pretrain-speaker end to end on synthetic speakers: learning, exact resume, DDP, --init, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dvcli.cli import app
from dvcli.config import load_config
from dvcli.errors import UserError
from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
from dvcli.speaker.encoder import load_speaker_encoder
from dvcli.testing import make_corpus
from stages.demo import default_corpus
from stages.prepare import PrepareConfig
from stages.prepare import run as prepare
from stages.pretrain_speaker import PretrainSpeakerConfig, run, work_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("speakers")
    make_corpus(root / "corpus", speakers=8, utterances=8, seconds=(1.5, 2.5))
    return prepare(PrepareConfig(source=root / "corpus", out=root / "data", speakers_heldout=2)).manifest


def _config(manifest: Path, out: Path, **overrides: object) -> PretrainSpeakerConfig:
    settings: dict = dict(
        manifest=manifest,
        out=out,
        model="tiny",
        batch_size=16,
        utterances_per_speaker=2,
        crop_seconds=1.0,
        optimizer="adamw",
        learning_rate=3e-3,
        workers=0,
        snrs=(5.0,),
        export_embeddings=False,
        eval_utterances=3,
        device="cpu",
        log_every=5,
    )
    settings.update(overrides)
    return PretrainSpeakerConfig(**settings)


def test_training_lowers_the_loss_and_the_eer(manifest: Path, tmp_path: Path) -> None:
    baseline = run(_config(manifest, tmp_path / "random", steps=0))
    trained = run(_config(manifest, tmp_path / "trained", steps=40, aam_margin=0.0))
    losses = [row["loss"] for row in trained.history]
    assert len(losses) == 8 and losses[-1] < 0.4 * losses[0]
    assert trained.eer["seen"]["clean"] < baseline.eer["seen"]["clean"]
    out = tmp_path / "trained"
    report = json.loads((out / "eer.json").read_text())
    assert set(report) == {"seen", "unseen"} and set(report["seen"]) == {"clean", "noisy 5 dB"}
    assert "| seen speakers, held-out utterances (" in (out / "eer.md").read_text()
    assert (out / "trials" / "seen.tsv").is_file() and (out / "train.tsv").read_text().startswith("step\tloss")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-00000040.pt"]
    assert any((out / "tensorboard").iterdir()) and not work_folder(out).exists()
    assert (out / "train.png").read_bytes()[:4] == b"\x89PNG"
    # The published encoder is the trained one, and the .bin is its plain 3D-Speaker state dict.
    encoder = load_speaker_encoder(out)
    plain = torch.load(out / "campplus.bin", weights_only=True)
    assert encoder.config == CAMPPlusConfig.tiny() and list(plain) == list(encoder.state_dict())


def test_resume_reproduces_the_uninterrupted_run(manifest: Path, tmp_path: Path) -> None:
    settings = dict(steps=6, batch_size=8, checkpoint_every=3, keep_checkpoints=5, snrs=(), log_every=1)
    full = run(_config(manifest, tmp_path / "full", **settings))
    # A run killed after step 3 leaves its checkpoint in OUT.partial; resume from there.
    partial = work_folder(tmp_path / "resumed") / "checkpoints"
    partial.mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "checkpoint-00000003.pt", partial)
    torch.manual_seed(1234)  # the checkpoint must bring its own RNG state
    resumed = run(_config(manifest, tmp_path / "resumed", resume=True, workers=1, **settings))
    assert resumed.history == full.history
    a = load_speaker_encoder(tmp_path / "full").state_dict()
    b = load_speaker_encoder(tmp_path / "resumed").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_over_gloo(manifest: Path, tmp_path: Path) -> None:
    result = run(_config(manifest, tmp_path / "ddp", steps=2, batch_size=4, gpus=2, snrs=(), log_every=1))
    assert [row["step"] for row in result.history] == [1, 2]
    assert (tmp_path / "ddp" / "checkpoints" / "checkpoint-00000002.pt").is_file()


def test_cli_evaluates_an_init_bin_and_exports_embeddings(manifest: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(CAMPPlus(CAMPPlusConfig.tiny(embedding_size=32)).state_dict(), tmp_path / "campplus_tiny.bin")
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "pretrain-speaker",
            str(manifest),
            "-o",
            str(out),
            "--init",
            str(tmp_path / "campplus_tiny.bin"),
            "--steps",
            "0",
            "--device",
            "cpu",
            "--set",
            "snrs=[10]",
            "--set",
            "eval_utterances=3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "10 dB" in result.stderr and "EER seen" in result.stderr
    rows = (out / "embeddings.tsv").read_text().splitlines()
    assert len(rows) == 1 + 64 and np.load(out / "embeddings.npy").shape == (64, 32)
    assert "init:" in (out / "config.yaml").read_text()


def test_user_errors_are_one_line_and_leave_nothing(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    torch.save(CAMPPlus(CAMPPlusConfig.tiny()).state_dict(), tmp_path / "whole.bin")
    data = (tmp_path / "whole.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    cases = [
        (["--resume"], "no checkpoint"),
        (["--init", str(tmp_path / "cut.bin")], "cut.bin: checkpoint is truncated or corrupt"),
        (["--set", "batch_size=7"], "not a multiple"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, ["pretrain-speaker", str(manifest), "-o", str(out), "--model", "tiny", *args])
        assert result.exit_code == 2, result.output
        last = result.stderr.strip().splitlines()[-1]  # after the info logs: one error line, no traceback
        assert last.startswith("dv: error: ") and needle in last and "Traceback" not in result.stderr
        assert not out.exists() and not work_folder(out).exists()
    (work_folder(out) / "checkpoints").mkdir(parents=True)
    (work_folder(out) / "checkpoints" / "checkpoint-00000005.pt").write_bytes(b"x")
    result = runner.invoke(app, ["pretrain-speaker", str(manifest), "-o", str(out)])
    assert result.exit_code == 2 and "pass --resume" in result.stderr


TOY_RECIPE = Path(__file__).resolve().parents[2] / "examples" / "pretrain_speaker_tiny.yaml"


def test_shipped_toy_recipe_is_a_valid_config() -> None:
    config = load_config(PretrainSpeakerConfig, TOY_RECIPE)
    assert config.model == "tiny" and config.steps > 0 and config.batch_size % config.utterances_per_speaker == 0


@pytest.mark.slow
def test_toy_corpus_reaches_low_eer_in_a_few_cpu_minutes(tmp_path: Path) -> None:
    corpus = default_corpus()
    if not corpus.is_dir():
        pytest.skip("examples/toy is not in this checkout")
    data = prepare(PrepareConfig(source=corpus, out=tmp_path / "data")).manifest
    config = load_config(PretrainSpeakerConfig, TOY_RECIPE, values={"manifest": data, "out": tmp_path / "run"})
    result = run(config)
    assert result.eer["seen"]["clean"] < 0.05
    assert "unseen" in result.eer and set(result.eer["unseen"]) == {"clean", "noisy 10 dB", "noisy 5 dB", "noisy 0 dB"}


def test_evaluate_speaker_reads_the_trials_pretrain_speaker_writes_and_agrees(manifest: Path, tmp_path: Path) -> None:
    """One verification path: the trial list pretrain-speaker writes is dv evaluate speaker's input,
    and with the same trials, noise and seed both report the same EER in every condition."""
    torch.manual_seed(0)
    torch.save(CAMPPlus(CAMPPlusConfig.tiny()).state_dict(), tmp_path / "campplus_tiny.bin")
    trained = run(_config(manifest, tmp_path / "spk", steps=0, init=tmp_path / "campplus_tiny.bin", snrs=(5.0, 0.0)))
    trials = tmp_path / "spk" / "trials" / "unseen.tsv"
    assert trials.read_text().startswith("enrol\ttest\tlabel\tcondition\n")
    result = runner.invoke(
        app,
        [
            "evaluate",
            "speaker",
            "--trials",
            str(trials),
            "--verifier",
            str(tmp_path / "spk" / "campplus.pt"),
            "--snrs",
            "5,0",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "eval"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())["conditions"]
    assert list(report) == ["clean", "noisy 5 dB", "noisy 0 dB"] == list(trained.eer["unseen"])
    for condition, rate in trained.eer["unseen"].items():
        assert report[condition]["eer"] == pytest.approx(rate, abs=1e-6), condition
    assert report["noisy 0 dB"]["eer"] > report["clean"]["eer"]  # the noise is there and hurts


def test_evaluating_an_init_encoder_needs_no_training_speakers(tmp_path: Path) -> None:
    """--steps 0 --init X only evaluates and exports: one training speaker (or none) is enough."""
    root = tmp_path / "c"
    make_corpus(root / "corpus", speakers=3, utterances=3, seconds=(1.0, 1.2))
    manifest = prepare(PrepareConfig(source=root / "corpus", out=root / "data", speakers_heldout=2)).manifest
    torch.manual_seed(0)
    torch.save(CAMPPlus(CAMPPlusConfig.tiny()).state_dict(), tmp_path / "campplus_tiny.bin")
    result = run(_config(manifest, tmp_path / "eval", steps=0, init=tmp_path / "campplus_tiny.bin", snrs=()))
    assert set(result.eer) == {"unseen"}
    with pytest.raises(UserError, match="1 training speaker"):
        run(_config(manifest, tmp_path / "train", steps=2))


def test_unusable_audio_is_refused_before_training(manifest: Path, tmp_path: Path) -> None:
    rows = manifest.read_text().splitlines()
    header = rows[0].split("\t")
    cells = rows[3].split("\t")
    cells[header.index("audio")] = str(tmp_path / "missing.flac")
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join([rows[0], *rows[1:3], "\t".join(cells), *rows[4:]]) + "\n")
    with pytest.raises(UserError, match=r"bad.tsv: utterance '.*' has unusable audio.*missing.flac"):
        run(_config(bad, tmp_path / "out", steps=2))
    assert not (tmp_path / "out").exists() and not work_folder(tmp_path / "out").exists()


def test_resuming_over_a_corrupt_checkpoint_names_it_and_changes_nothing(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(_config(manifest, out, steps=2, batch_size=4, snrs=()))
    (checkpoint,) = (out / "checkpoints").iterdir()
    checkpoint.write_bytes(b"\x00garbage" * 512)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(UserError, match=rf"{checkpoint}: is not a checkpoint"):
        run(_config(manifest, out, steps=4, batch_size=4, snrs=(), resume=True))
    assert not work_folder(out).exists() and sorted(p.name for p in out.iterdir()) == before
