"""dv pretrain-speaker --objective byol-a end to end on synthetic speakers: learning without collapse, the
PCA projection, exact resume across the mixup memory, BYOL-A's own weights as --init, errors, and the
encoder frozen under dv train-joint (the paper's Table 1 baseline), then scored as a verifier."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dvcli.cli import app
from dvcli.config import load_config
from dvcli.errors import UserError
from dvcli.evaluation.verifiers import load_verifier
from dvcli.joint.model import load_joint
from dvcli.manifest import read_manifest, write_units
from dvcli.models.byola import AudioNTT2020, ByolaEncoder, ByolaLogMel
from dvcli.speaker.byola import log_mel_statistics
from dvcli.speaker.encoder import load_speaker_encoder
from dvcli.testing import make_corpus
from stages.prepare import PrepareConfig
from stages.prepare import run as prepare
from stages.pretrain_speaker import PretrainSpeakerConfig, run, split_utterances, work_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("byola")
    make_corpus(root / "corpus", speakers=6, utterances=6, seconds=(0.8, 1.6))
    return prepare(PrepareConfig(source=root / "corpus", out=root / "data", speakers_heldout=2)).manifest


def _config(manifest: Path, out: Path, **overrides: object) -> PretrainSpeakerConfig:
    settings: dict = {
        "manifest": manifest,
        "out": out,
        "objective": "byol-a",
        "model": "byol-a-tiny",
        "embedding_size": 16,
        "batch_size": 8,
        "byola": {"hidden_dim": 128, "projection_size": 32},
        "workers": 0,
        "snrs": [],
        "export_embeddings": False,
        "eval_utterances": 2,
        "device": "cpu",
        "log_every": 5,
    }
    settings.update(overrides)
    return load_config(PretrainSpeakerConfig, values=settings)


@pytest.fixture(scope="module")
def trained(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "byola"
    run(_config(manifest, out, steps=30))
    return out


def test_training_lowers_the_byol_loss_without_collapse_and_publishes_the_encoder(
    manifest: Path, trained: Path
) -> None:
    rows = (trained / "train.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", "loss", "z_std", "lr"]
    losses = [float(r.split("\t")[1]) for r in rows[1:]]
    spreads = [float(r.split("\t")[2]) for r in rows[1:]]
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0]
    assert min(spreads) > 0.05  # L2-normalised 32-d projections: 0 = collapsed, 1/sqrt(32) = 0.18 = spread out
    encoder = load_speaker_encoder(trained)
    assert isinstance(encoder, ByolaEncoder) and encoder.embedding_size == 16
    assert json.loads((trained / "eer.json").read_text()).keys() == {"seen", "unseen"}
    # byola.pth is the body alone, in BYOL-A's layout.
    body = AudioNTT2020(64, encoder.config.feature_d)
    body.load_state_dict(torch.load(trained / "byola.pth", weights_only=True), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(body.state_dict().values(), encoder.body.state_dict().values()))
    # Normalisation: the training utterances' log-mel statistics.
    config = _config(manifest, trained)
    train = split_utterances(read_manifest(manifest), config).train
    mean, std = log_mel_statistics(ByolaLogMel(encoder.config), train, 1000, 0)
    assert float(encoder.norm_mean) == pytest.approx(mean, abs=1e-4) and float(encoder.norm_std) == pytest.approx(
        std, abs=1e-4
    )
    # Projection: the PCA of the training utterances' representations (centred, uncorrelated outputs).
    log_mel = ByolaLogMel(encoder.config)
    with torch.no_grad():
        reps = torch.cat([encoder.representation(log_mel(_audio(u).unsqueeze(0))[0]) for u in train])
        projected = encoder.projection(reps).double()
    covariance = torch.cov(projected.T)
    assert float(projected.mean(dim=0).abs().max()) < 1e-3 * float(projected.std())
    assert float((covariance - torch.diag(covariance.diag())).abs().max()) < 1e-3 * float(covariance.diag().max())
    assert bool((covariance.diag()[:-1] >= covariance.diag()[1:] - 1e-6).all())


def _audio(u):
    from dvcli.audio import load_audio

    return load_audio(u.audio)


def test_resume_reproduces_the_uninterrupted_run_across_the_mixup_memory(manifest: Path, tmp_path: Path) -> None:
    settings = {
        "steps": 6,
        "batch_size": 4,
        "checkpoint_every": 3,
        "keep_checkpoints": 5,
        "log_every": 1,
        "byola": {"hidden_dim": 64, "projection_size": 16, "mixup_memory": 6},  # two steps' inputs
    }
    full = run(_config(manifest, tmp_path / "full", **settings))
    partial = work_folder(tmp_path / "resumed") / "checkpoints"
    partial.mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "checkpoint-00000003.pt", partial)
    torch.manual_seed(1234)  # the checkpoint must bring its own RNG state
    # The heads' sizes come from the checkpoint, not from this command line (it leaves them at the defaults).
    again = {**settings, "byola": {"mixup_memory": 6}}
    resumed = run(_config(manifest, tmp_path / "resumed", resume=True, workers=1, **again))
    assert resumed.history == full.history and len(full.history) == 6
    a, b = (load_speaker_encoder(tmp_path / name).state_dict() for name in ("full", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Without the memory rebuilt at the resume point, the first resumed step mixes differently.
    from stages import pretrain_speaker_byola

    shutil.rmtree(tmp_path / "resumed")
    partial.mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "checkpoint-00000003.pt", partial)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretrain_speaker_byola, "_rebuild_memory", lambda *args: pretrain_speaker_byola._Memory(6))
        forgetful = run(_config(manifest, tmp_path / "resumed", resume=True, **settings))
    assert forgetful.history[:3] == full.history[:3] and forgetful.history[3] != full.history[3]


def test_byol_a_s_own_weights_serve_as_init(manifest: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    upstream = AudioNTT2020(64, 512).state_dict()
    torch.save(upstream, tmp_path / "AudioNTT2020-BYOLA-64x96d512.pth")
    out = tmp_path / "init"
    args = ["pretrain-speaker", str(manifest), "-o", str(out), "--objective", "byol-a", "--steps", "0"]
    args += ["--init", str(tmp_path / "AudioNTT2020-BYOLA-64x96d512.pth"), "--device", "cpu", "--set", "snrs=[]"]
    result = runner.invoke(app, [*args, "--set", "eval_utterances=2", "--set", "embedding_size=24"])
    assert result.exit_code == 0, result.output
    encoder = load_speaker_encoder(out)
    assert encoder.config.feature_d == 512 and encoder.embedding_size == 24
    assert all(torch.equal(upstream[k], v) for k, v in encoder.body.state_dict().items())


def test_settings_that_cannot_work_are_refused(manifest: Path, tmp_path: Path, trained: Path) -> None:
    cases = [
        ({"model": "campplus"}, "byol-a trains byol-a or byol-a-tiny"),
        ({"objective": "aam", "model": "byol-a"}, "aam trains campplus or tiny"),
        ({"byola": {"virtual_crop": [0.5, 1.5]}}, "byola.virtual_crop"),
        ({"byola": {"time_scale": [1.2, 0.8]}}, "byola.time_scale"),
        ({"embedding_size": 300}, "embedding_size 300 exceeds the representation size 256: set a smaller"),
        ({"byola": {"hidden_dim": 0}}, "hidden_dim >= 1"),
        ({"embedding_size": 0}, "embedding_size >= 1"),
        ({"model": "byol-a-tiny", "objective": "aam"}, "add --objective byol-a"),
        ({"byola": {"ema_decay": 1.0}}, "ema_decay"),
        ({"init": trained / "eer.json"}, "eer.json"),
    ]
    for overrides, needle in cases:
        with pytest.raises(UserError, match=needle):
            run(_config(manifest, tmp_path / "bad", steps=1, **overrides))
        assert not (tmp_path / "bad").exists()
    # An AAM run's checkpoint does not resume as BYOL-A.
    aam = tmp_path / "aam"
    run(_config(manifest, aam, objective="aam", model="tiny", steps=2, batch_size=4, crop_seconds=0.5, byola={}))
    partial = work_folder(tmp_path / "switch") / "checkpoints"
    partial.mkdir(parents=True)
    shutil.copy(next((aam / "checkpoints").iterdir()), partial)
    with pytest.raises(UserError, match="was trained with --objective aam"):
        run(_config(manifest, tmp_path / "switch", steps=4, resume=True))


def test_train_joint_conditions_vits_on_the_frozen_encoder(manifest: Path, trained: Path, tmp_path: Path) -> None:
    rng = random.Random(0)
    units = {u.id: [rng.randrange(20) for _ in range(int(u.duration * 50))] for u in read_manifest(manifest)}
    (tmp_path / "units").mkdir()
    write_units(tmp_path / "units" / "units.tsv", units)
    (tmp_path / "units" / "meta.json").write_text(json.dumps({"k": 20, "frame_rate": 50.0}))
    out = tmp_path / "joint"
    args = ["train-joint", str(manifest), "--units", str(tmp_path / "units"), "--speaker", str(trained)]
    args += ["--freeze-speaker", "-o", str(out), "--device", "cpu"]
    sets = {"model": "tiny", "phase1_steps": 1, "phase2_steps": 2, "batch_size": 4, "workers": 0}
    sets.update({"vits.segment_size": 2048, "crop_seconds": 0.5, "ref_seconds": 0.8, "sample_every": 1000})
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    joint = load_joint(out)
    assert joint.info["speaker_encoder"] == "byol-a" and joint.info["freeze_speaker"]
    card = (out / "README.md").read_text()
    assert "on a frozen BYOL-A speaker encoder" in card and "BYOL-A speaker encoder kept frozen" in card
    assert "3 (speaker encoder frozen)" in card
    # Frozen: every weight and statistic of the published encoder is the pretrained one.
    before = load_speaker_encoder(trained).state_dict()
    after = joint.speaker.encoder.state_dict()
    assert list(before) == list(after) and all(torch.equal(before[k], after[k]) for k in before)
    # dv evaluate can score with it: the joint model's and the encoder file's embeddings agree.
    clip = _audio(read_manifest(manifest)[0]).numpy()
    a = load_verifier(str(out / "model.pt")).embed([clip])
    b = load_verifier(str(trained / "byola.pt")).embed([clip])
    assert a.shape == (1, 16) and abs(float((a * b).sum()) - 1.0) < 1e-5
    assert load_verifier(str(trained)).name == "byol-a:byola.pt"  # an output folder serves too
    with pytest.raises(UserError, match="bare BYOL-A body.*--objective byol-a --init"):
        load_verifier(str(trained / "byola.pth"))
