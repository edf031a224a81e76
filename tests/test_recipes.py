"""The shipped recipes: every YAML config loads into its stage's config, and every dv command line in
the run.sh scripts names real commands and options (so a renamed option cannot rot a recipe)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer

from dvcli.cli import app
from dvcli.config import load_config
from stages.cluster import ClusterConfig
from stages.pretrain_speaker import PretrainSpeakerConfig
from stages.train_joint import TrainJointConfig
from stages.train_t2u import TrainT2UConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
YAMLS = sorted(EXAMPLES.rglob("*.yaml"))
SCRIPTS = sorted(EXAMPLES.rglob("run.sh"))

#: command in a YAML's header -> (config class, values for the fields the command line gives)
CONFIGS = {
    "cluster": (ClusterConfig, {"features": [Path("feats")], "out": Path("km")}),
    "pretrain-speaker": (PretrainSpeakerConfig, {}),
    "train-joint": (TrainJointConfig, {"manifest": Path("m"), "units": Path("u"), "out": Path("o")}),
    "train-t2u": (TrainT2UConfig, {"manifest": Path("m"), "units": Path("u"), "out": Path("o")}),
}


def _command_of(yaml_file: Path) -> str:
    for line in yaml_file.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#\s+dv ([a-z0-9-]+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"{yaml_file}: the header must give the exact dv command that uses it")


@pytest.mark.parametrize("yaml_file", YAMLS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_shipped_yaml_loads_into_its_stage_config(yaml_file: Path) -> None:
    command = _command_of(yaml_file)
    assert command in CONFIGS, f"{yaml_file}: no config class known for dv {command}"
    cls, required = CONFIGS[command]
    load_config(cls, yaml_file, values=required)


def _dv_lines(script: Path) -> list[list[str]]:
    text = script.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0]
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"(?:^|[;&|]|then|do)\s*(dv\s[^;&|]*)", line):
            lines.append(shlex.split(match.group(1).replace('"${', '"$').replace('[@]}"', '"'), posix=True))
    return lines


def _options(command: list[str]) -> tuple[str, set[str]]:
    click_app = typer.main.get_command(app)
    node, name = click_app, []
    for word in command[1:]:
        sub = getattr(node, "commands", {}).get(word)
        if sub is None:
            break
        node, name = sub, [*name, word]
    assert name, f"unknown command in: {' '.join(command)}"
    flags = {opt for param in node.params for opt in (*param.opts, *param.secondary_opts)}
    return " ".join(name), flags


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_run_scripts_parse_and_use_real_options(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    for command in _dv_lines(script):
        name, flags = _options(command)
        used = {w.split("=", 1)[0] for w in command if w.startswith("--")}
        assert used <= flags, f"{script}: dv {name} has no option {sorted(used - flags)}"


def test_every_script_and_config_is_checked() -> None:
    assert len(SCRIPTS) >= 3 and len(YAMLS) >= 3
    assert sum(len(_dv_lines(s)) for s in SCRIPTS) >= 15
