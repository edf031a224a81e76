from pathlib import Path

import pytest
import torch

from dvcli.checkpoint import save_checkpoint
from dvcli.errors import UserError
from dvcli.joint.model import MODEL_FILE, UnitInfo, load_joint, save_joint
from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
from dvcli.models.vits import VitsConfig, VitsGenerator


def test_saved_model_loads_back_and_synthesizes_the_same_audio(tmp_path: Path) -> None:
    torch.manual_seed(0)
    generator = VitsGenerator(VitsConfig.tiny(n_units=30, speaker_embedding_dim=16)).eval()
    encoder = CAMPPlus(CAMPPlusConfig.tiny(embedding_size=16)).eval()
    save_joint(tmp_path / MODEL_FILE, generator, encoder, UnitInfo(k=30, frame_rate=50.0), steps=7)

    model = load_joint(tmp_path)
    assert model.units == UnitInfo(k=30, frame_rate=50.0)
    assert model.info == {"steps": 7} and model.sample_rate == 16000
    ref = torch.randn(1, 16000)
    emb = encoder(model.speaker.features(ref)[0])
    torch.testing.assert_close(model.speaker.encoder(model.speaker.features(ref)[0]), emb)
    units, lengths = torch.randint(0, 30, (1, 12)), torch.tensor([12])
    expected, _ = generator.infer(units, lengths, emb, rng=torch.Generator().manual_seed(1))
    got, _ = model.generator.infer(units, lengths, emb, rng=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, expected)


def test_refuses_other_files_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no model.pt"):
        load_joint(tmp_path)
    save_checkpoint({"model": {}}, tmp_path / "other.pt", kind="campplus")
    with pytest.raises(UserError, match="'campplus' checkpoint, expected a 'dino-vits'"):
        load_joint(tmp_path / "other.pt")
    save_checkpoint(
        {"vits_config": {"n_units": 5}, "units": {"k": 5}, "generator": {}}, tmp_path / MODEL_FILE, kind="dino-vits"
    )
    with pytest.raises(UserError, match="not a usable dv train-joint model"):
        load_joint(tmp_path)
