"""dv train-joint end to end on synthetic speakers: overfitting, exact resume across the phase switch,
DDP over gloo, the ablation switches, the two-phase freezing, and one-line user errors."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dvcli.checkpoint import save_checkpoint
from dvcli.cli import app
from dvcli.config import load_config
from dvcli.errors import UserError
from dvcli.joint.model import load_joint
from dvcli.manifest import read_manifest, write_units
from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
from dvcli.testing import make_corpus
from stages.prepare import PrepareConfig
from stages.prepare import run as prepare
from stages.train_joint import TrainJointConfig, run, work_folder

runner = CliRunner()
K = 20


def _write_units(manifest: Path, folder: Path, seed: int = 0) -> Path:
    """Random 50 Hz units (runs of 1-4 frames) for every utterance, in a dv cluster-like folder."""
    rng = random.Random(seed)
    units = {}
    for u in read_manifest(manifest):
        seq: list[int] = []
        while len(seq) < int(u.duration * 50):
            seq += [rng.randrange(K)] * rng.randint(1, 4)
        units[u.id] = seq[: int(u.duration * 50)]
    folder.mkdir(parents=True, exist_ok=True)
    write_units(folder / "units.tsv", units)
    (folder / "meta.json").write_text(json.dumps({"k": K, "frame_rate": 50.0}))
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("joint")
    make_corpus(root / "corpus", speakers=3, utterances=4, seconds=(1.0, 1.3))
    manifest = prepare(PrepareConfig(source=root / "corpus", out=root / "data")).manifest
    return manifest, _write_units(manifest, root / "units")


def _config(corpus: tuple[Path, Path], out: Path, **overrides: object) -> TrainJointConfig:
    manifest, units = corpus
    settings: dict = {
        "manifest": manifest,
        "units": units,
        "out": out,
        "model": "tiny",
        "speaker_model": "tiny",
        "vits": {"segment_size": 2048},
        "phase1_steps": 1,
        "phase2_steps": 1,
        "batch_size": 4,
        "learning_rate": 2e-3,
        "crop_seconds": 0.5,
        "ref_seconds": 0.8,
        "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "warmup_teacher_temp_steps": 0},
        "workers": 0,
        "log_every": 1,
        "sample_every": 1000,
        "checkpoint_every": 1000,
        "device": "cpu",
    }
    settings.update(overrides)
    return load_config(TrainJointConfig, values=settings)


def test_overfitting_one_batch_lowers_the_mel_loss_and_publishes_a_loadable_model(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, _ = corpus
    one_batch = manifest.parent / "one-batch.tsv"  # beside the manifest: audio paths are relative to it
    lines = manifest.read_text().splitlines()
    one_batch.write_text("\n".join(lines[:5]) + "\n")  # header + 4 utterances = one batch per epoch
    out = tmp_path / "joint"
    result = run(
        _config(
            corpus, out, manifest=one_batch, phase1_steps=4, phase2_steps=8, batch_size=4, log_every=3, sample_every=12
        )
    )
    mel = [row["loss_mel"] for row in result.history]
    assert len(mel) == 4 and mel[-1] < 0.7 * mel[0], mel
    assert all("loss_dino" in row and "teacher_entropy" in row and "embedding_std" in row for row in result.history)

    model = load_joint(out)
    assert model.units.k == K and model.units.frame_rate == 50.0
    assert model.info["speaker_loss"] == "dino" and model.info["steps"] == 12 and model.info["dedup"] is True
    assert model.generator.config.speaker_embedding_dim == model.speaker.embedding_size
    meta = json.loads((out / "meta.json").read_text())
    assert meta["mel_l1_last"] < meta["mel_l1_first"]
    assert (out / "train.tsv").read_text().startswith("step\t") and not work_folder(out).exists()
    assert (out / "train.png").read_bytes()[:4] == b"\x89PNG"  # learning curves
    card = (out / "README.md").read_text()  # model card
    assert "# DINO-VITS voice-cloning model (tiny)" in card and "dv synthesize --model THIS_FOLDER" in card
    assert "4 utterances of 1 speaker |" in card and "mel L1, first -> last logged" in card
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-00000012.pt"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "audio": 0}).Reload()
    tags = events.Tags()
    assert {
        "vits/loss_mel",
        "vits/lr",
        "vits/grad_norm_g",
        "vits/grad_norm_d",
        "speaker/loss_dino",
        "speaker/teacher_entropy",
        "speaker/embedding_std",
        "speaker/grad_norm_speaker",
    } <= set(tags["scalars"])
    assert {"mel/real", "mel/generated", "alignment"} <= set(tags["images"])
    assert {"audio/real_segment", "audio/generated_segment", "audio/synthesized"} <= set(tags["audio"])


def test_resume_across_the_phase_switch_matches_the_uninterrupted_run(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    settings = {"phase1_steps": 2, "phase2_steps": 2, "checkpoint_every": 2, "keep_checkpoints": 5}
    full = run(_config(corpus, tmp_path / "full", **settings))
    # A run killed after step 2 (the end of phase 1) leaves its checkpoint in OUT.partial.
    partial = work_folder(tmp_path / "resumed") / "checkpoints"
    partial.mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "checkpoint-00000002.pt", partial)
    torch.manual_seed(1234)  # the checkpoint must bring its own RNG state
    resumed = run(_config(corpus, tmp_path / "resumed", resume=True, **settings))
    assert [r["step"] for r in resumed.history] == [1, 2, 3, 4]
    assert resumed.history == full.history  # steps 3 and 4 (phase 2) equal to the last bit
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    assert all(torch.equal(a["generator"][k], b["generator"][k]) for k in a["generator"])


def test_two_processes_over_gloo(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    result = run(_config(corpus, tmp_path / "ddp", gpus=2, batch_size=2))
    assert [r["step"] for r in result.history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss_g"])) for r in result.history)
    assert load_joint(tmp_path / "ddp").info["steps"] == 2
    assert len(list((tmp_path / "ddp" / "tensorboard").iterdir())) == 1  # only rank 0 writes


def _encoder_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["speaker"]["model"]


def test_phase_one_trains_only_the_last_layer_and_freeze_trains_nothing(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    start = CAMPPlus(CAMPPlusConfig.tiny())
    speaker = tmp_path / "campplus.pt"
    save_checkpoint(
        {"model": start.state_dict(), "model_config": {**CAMPPlusConfig.tiny().__dict__}}, speaker, kind="campplus"
    )
    before = start.state_dict()
    run(_config(corpus, tmp_path / "p1", speaker=speaker, phase1_steps=2, phase2_steps=0))
    after = _encoder_weights(tmp_path / "p1" / "model.pt")
    changed = {k for k in before if before[k].dtype.is_floating_point and not torch.equal(before[k], after[k])}
    weights = {k for k in changed if "running" not in k}  # batch norm statistics follow the data
    assert weights == {"xvector.dense.linear.weight"}

    run(_config(corpus, tmp_path / "frozen", speaker=speaker, freeze_speaker=True, ref_augment=False))
    frozen = _encoder_weights(tmp_path / "frozen" / "model.pt")
    assert all(torch.equal(before[k], frozen[k]) for k in before)


def test_aam_and_no_sidecar_ablations_run(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    aam = run(_config(corpus, tmp_path / "aam", speaker_loss="aam", phase1_steps=0, phase2_steps=2))
    assert all("loss_aam" in r and "loss_dino" not in r for r in aam.history)
    none = run(
        _config(
            corpus,
            tmp_path / "none",
            speaker_loss="none",
            ref_augment=False,
            dedup=False,
            phase1_steps=0,
            phase2_steps=1,
        )
    )
    assert all("loss_aam" not in r and "loss_dino" not in r for r in none.history)
    info = load_joint(tmp_path / "none").info
    assert info["speaker_loss"] == "none" and info["ref_augment"] is False and info["dedup"] is False


SSL_MONITORS = {
    "simclr": {"loss_simclr"},
    "moco": {"loss_moco"},
    "byol": {"loss_byol"},
    "vicreg": {"loss_vicreg", "vicreg_invariance", "vicreg_variance", "vicreg_covariance"},
}


@pytest.mark.parametrize("kind", sorted(SSL_MONITORS))
def test_other_self_supervised_sidecars_train_and_resume(kind: str, corpus: tuple[Path, Path], tmp_path: Path) -> None:
    settings = {
        "speaker_loss": kind,
        "phase1_steps": 1,
        "phase2_steps": 2,
        "checkpoint_every": 2,
        "keep_checkpoints": 5,
        "ssl": {"hidden_dim": 32, "out_dim": 16, "queue_size": 32, "predictor_dim": 16},
    }
    full = run(_config(corpus, tmp_path / "full", **settings))
    assert all(SSL_MONITORS[kind] <= set(r) and "loss_dino" not in r for r in full.history)
    assert all(math.isfinite(r[m]) and r["embedding_std"] > 0 for r in full.history for m in SSL_MONITORS[kind])
    assert load_joint(tmp_path / "full").info["speaker_loss"] == kind
    # the EMA target (moco, byol) and the key queue (moco) come back with the checkpoint
    partial = work_folder(tmp_path / "resumed") / "checkpoints"
    partial.mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "checkpoint-00000002.pt", partial)
    resumed = run(_config(corpus, tmp_path / "resumed", resume=True, **settings))
    assert resumed.history == full.history


def test_text_content_trains_on_phonemes_and_synthesizes_text_without_t2u(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("piper.phonemize_espeak")
    from dvcli.phonemes import phoneme_ids, vocabulary_size
    from stages.synthesize import SynthesizeConfig
    from stages.synthesize import run as synthesize

    manifest, _ = corpus
    result = run(_config((manifest, tmp_path / "no-units"), tmp_path / "text", content="text", phase2_steps=1))
    model = load_joint(tmp_path / "text")
    assert model.units.content == "phonemes" and model.units.k == vocabulary_size() and model.info["content"] == "text"
    assert model.generator.config.n_units == vocabulary_size() and len(result.history) == 2
    assert "dv synthesize --model THIS_FOLDER --ref" in (tmp_path / "text" / "README.md").read_text()
    ref = read_manifest(manifest)[0].audio
    out = synthesize(
        SynthesizeConfig(model=tmp_path / "text", ref=ref, text="Speaker one says hello.", out=tmp_path / "a.wav")
    )
    assert out.seconds > 0 and phoneme_ids("Speaker one says hello.")


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["train-joint", *args])
    return result.exit_code, result.output


def test_user_errors_are_one_line_and_leave_nothing(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, units = corpus
    common = ["--config", str(Path(__file__).parents[2] / "examples" / "toy" / "train_joint_tiny.yaml")]
    out = tmp_path / "out"

    # An utterance of the manifest without units.
    partial = tmp_path / "partial-units"
    partial.mkdir()
    rows = (units / "units.tsv").read_text().splitlines()
    (partial / "units.tsv").write_text("\n".join(rows[1:]) + "\n")
    missing_id = rows[0].split("\t")[0]
    code, output = _cli(str(manifest), "-u", str(partial), "-o", str(out), *common)
    assert code == 2 and missing_id in output and "no units for utterance" in output
    assert len(output.strip().splitlines()) == 1

    # A speaker checkpoint of the wrong kind.
    wrong = tmp_path / "wrong.pt"
    save_checkpoint({"model": {}}, wrong, kind="text-to-unit")
    code, output = _cli(str(manifest), "-u", str(units), "-s", str(wrong), "-o", str(out), *common)
    assert code == 2 and "wrong.pt" in output and "text-to-unit" in output

    # Unit ids beyond the k-means size in meta.json.
    small = tmp_path / "small-k"
    shutil.copytree(units, small)
    (small / "meta.json").write_text(json.dumps({"k": 3}))
    code, output = _cli(str(manifest), "-u", str(small), "-o", str(out), *common)
    assert code == 2 and "outside the k-means size 3" in output

    # No --units for a unit model (only --content text reads none).
    code, output = _cli(str(manifest), "-o", str(out), *common)
    assert code == 2 and "give --units (a dv cluster folder) or --content text" in output

    # An unknown VITS setting, --resume with nothing to resume.
    code, output = _cli(str(manifest), "-u", str(units), "-o", str(out), *common, "--set", "vits={hiden: 3}")
    assert code == 2 and "hiden" in output
    code, output = _cli(str(manifest), "-u", str(units), "-o", str(out), *common, "--resume")
    assert code == 2 and "no checkpoint" in output
    assert not out.exists() and not work_folder(out).exists()

    # A manifest row whose audio is gone: refused before training starts, nothing written (the issue's
    # example trained, failed later and left OUT.partial with a checkpoint).
    lines = manifest.read_text().splitlines()
    header = lines[0].split("\t")
    cells = lines[1].split("\t")
    cells[header.index("audio")] = str(tmp_path / "gone.wav")
    (tmp_path / "gone.tsv").write_text("\n".join([lines[0], "\t".join(cells), *lines[2:]]) + "\n")
    code, output = _cli(str(tmp_path / "gone.tsv"), "-u", str(units), "-o", str(out), *common)
    assert code == 2 and "gone.wav" in output and "unusable audio" in output and "Traceback" not in output
    assert len([line for line in output.splitlines() if "gone.wav" in line]) == 1
    assert not out.exists() and not work_folder(out).exists()


def test_help_and_shipped_tiny_recipe() -> None:
    result = runner.invoke(app, ["train-joint", "--help"])
    assert result.exit_code == 0 and "Example: dv train-joint" in result.output
    recipe = Path(__file__).parents[2] / "examples" / "toy" / "train_joint_tiny.yaml"
    config = load_config(TrainJointConfig, recipe)
    assert config.model == "tiny" and config.steps <= 150 and config.dino.out_dim < 65536
    paper = load_config(TrainJointConfig, recipe.parents[1] / "libritts" / "train_joint.yaml")
    assert (paper.model, paper.phase1_steps, paper.phase2_steps, paper.batch_size) == ("base", 95000, 175000, 40)


def test_resuming_over_a_corrupt_checkpoint_names_it_and_changes_nothing(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(_config(corpus, out))
    (checkpoint,) = (out / "checkpoints").iterdir()
    checkpoint.write_bytes(b"\x00garbage" * 512)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(UserError, match=rf"{checkpoint}: is not a checkpoint"):
        run(_config(corpus, out, resume=True, phase2_steps=3))
    assert not work_folder(out).exists() and sorted(p.name for p in out.iterdir()) == before
