"""Config layering (defaults < YAML < options < --set) and the errors for unknown keys and bad types."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from dvcli.config import StageConfig, config_keys, load_config, save_config, to_dict
from dvcli.errors import UserError


@dataclasses.dataclass
class Model:
    hidden: int = 192
    dropout: float = 0.1
    kernels: list[int] = dataclasses.field(default_factory=lambda: [3, 7, 11])


@dataclasses.dataclass(kw_only=True)
class Toy(StageConfig):
    out: Path = Path("out")
    name: str = "toy"
    mode: Literal["dino", "aam", "none"] = "dino"
    init: Optional[Path] = None
    flag: bool = False
    model: Model = dataclasses.field(default_factory=Model)


def test_defaults() -> None:
    cfg = load_config(Toy)
    assert cfg == Toy()
    assert cfg.device == "auto" and cfg.seed == 0


def test_layers_override_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: from-yaml\nseed: 5\nmodel:\n  hidden: 64\n")
    cfg = load_config(Toy, path, ["seed=7", "model.kernels=[3, 5]", "init=/x/y.pt"], {"name": "cli", "seed": None})
    assert cfg.name == "cli"  # option beats YAML
    assert cfg.seed == 7  # --set beats YAML; a None option is "not given"
    assert cfg.model == Model(hidden=64, kernels=[3, 5])  # nested keys merge, others keep defaults
    assert cfg.init == Path("/x/y.pt")


def test_set_parses_by_field_type() -> None:
    cfg = load_config(Toy, overrides=["name=123", "flag=true", "model.dropout=1", "mode=aam", "init=null"])
    assert cfg.name == "123" and cfg.flag is True and cfg.model.dropout == 1.0 and cfg.mode == "aam"
    assert cfg.init is None


@pytest.mark.parametrize(
    "override,needle",
    [
        ("nope=1", "unknown key 'nope'"),
        ("model.nope=1", "unknown key 'model.nope'"),
        ("seed=abc", "key 'seed' expects int"),
        ("flag=3", "key 'flag' expects bool"),
        ("mode=other", "key 'mode' expects 'dino' | 'aam' | 'none'"),
        ("model.kernels=[1, x]", "key 'model.kernels' expects int, got 'x'"),
        ("noequals", "expected KEY=VALUE"),
        ("model.dropout=.nan", "key 'model.dropout' expects a number, got NaN"),  # NaN passes every bound check
        ("model.dropout=nan", "key 'model.dropout' expects a finite number, got 'nan'"),
    ],
)
def test_bad_overrides_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle.replace("[", r"\[").replace("|", r"\|")):
        load_config(Toy, overrides=[override])


def test_bad_yaml_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [unclosed\n")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML"):
        load_config(Toy, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="must be a YAML mapping"):
        load_config(Toy, listy)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  hiden: 3\n")
    with pytest.raises(UserError, match=r"typo.yaml: unknown key 'model.hiden'"):
        load_config(Toy, typo)


def test_saved_config_reloads_identically(tmp_path: Path) -> None:
    cfg = load_config(Toy, overrides=["init=/a/b", "model.hidden=8", "mode=none"])
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == to_dict(cfg)
    assert load_config(Toy, tmp_path / "config.yaml") == cfg


def test_config_keys_lists_nested_keys() -> None:
    assert "model.hidden" in config_keys(Toy) and "seed" in config_keys(Toy)


@pytest.mark.parametrize(
    "cls_path,old,new",
    [
        ("stages.pretrain_speaker:PretrainSpeakerConfig", "lr", "learning_rate"),
        ("stages.pretrain_speaker:PretrainSpeakerConfig", "noisy_snrs", "snrs"),
        ("stages.pretrain_speaker:PretrainSpeakerConfig", "scale", "aam_scale"),
        ("stages.pretrain_speaker:PretrainSpeakerConfig", "amp", "precision"),
        ("stages.train_t2u:TrainT2UConfig", "size", "model"),
        ("stages.train_t2u:TrainT2UConfig", "keep_last", "keep_checkpoints"),
        ("stages.cluster:ClusterConfig", "centroids", "kmeans"),
    ],
)
def test_old_setting_names_are_refused_naming_the_new_one(cls_path: str, old: str, new: str, tmp_path: Path) -> None:
    """One name per setting across the trainers; a YAML or --set with the old name says what it became."""
    import importlib

    module, name = cls_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    (tmp_path / "old.yaml").write_text(f"{old}: 1\n")
    with pytest.raises(UserError, match=rf"'{old}' is now called '{new}'"):
        load_config(cls, tmp_path / "old.yaml")
    with pytest.raises(UserError, match=rf"--set: '{old}' is now called '{new}'"):
        load_config(cls, overrides=[f"{old}=1"])


def test_numbers_in_e_notation_are_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads ``3e-4`` and ``1e3`` (no dot) as strings; they are what users type."""
    cfg = load_config(Toy, overrides=["model.dropout=3e-4", "model.hidden=1e3", "seed=2E1"])
    assert cfg.model.dropout == 3e-4 and cfg.model.hidden == 1000 and cfg.seed == 20
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  dropout: 5e-2\n")
    assert load_config(Toy, recipe).model.dropout == 0.05
    assert load_config(Toy, overrides=["name=1e3"]).name == "1e3"  # strings stay strings
