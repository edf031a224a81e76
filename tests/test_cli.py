"""The `dv` command as a user meets it: help, version, exit statuses, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvcli.cli import COMMAND_ORDER, app
from dvcli.testing import make_corpus

runner = CliRunner()


def test_every_command_is_listed_and_has_help_with_an_example() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in COMMAND_ORDER:
        assert command in top.output
        result = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert "Example: dv " in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("dv ")


def test_prepare_writes_manifest_and_summary(tmp_path: Path) -> None:
    make_corpus(tmp_path / "c", speakers=2, utterances=2)
    result = runner.invoke(app, ["prepare", str(tmp_path / "c"), "-o", str(tmp_path / "out"), "--set", "seed=4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "manifest.tsv").is_file()
    assert "utterances" in result.stderr
    assert "seed: 4" in (tmp_path / "out" / "config.yaml").read_text()


def test_corrupt_wav_is_reported_without_traceback(tmp_path: Path) -> None:
    make_corpus(tmp_path / "c", speakers=2, utterances=1)
    (tmp_path / "c" / "spk1" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    result = runner.invoke(app, ["prepare", str(tmp_path / "c"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0
    assert "broken.wav" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "nope=1"], "unknown key 'nope'"),
        (["--set", "min_duration=abc"], "key 'min_duration' expects float"),
        (["--format", "wav"], "key 'format' expects"),
        (["--speakers-heldout", "5"], "no speaker would be left"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    make_corpus(tmp_path / "c", speakers=2, utterances=1)
    result = runner.invoke(app, ["prepare", str(tmp_path / "c"), "-o", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("dv: error: ") and needle in last
    assert not (tmp_path / "out").exists()


def test_nothing_usable_exits_2(tmp_path: Path) -> None:
    (tmp_path / "c" / "s").mkdir(parents=True)
    (tmp_path / "c" / "s" / "x.wav").write_bytes(b"not audio")
    result = runner.invoke(app, ["prepare", str(tmp_path / "c"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no usable utterances" in result.stderr
    assert not (tmp_path / "out").exists()


def test_internal_errors_are_brief_unless_verbose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stages.prepare

    def boom(config: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(stages.prepare, "run", boom)
    make_corpus(tmp_path / "c", speakers=1, utterances=1)
    args = ["prepare", str(tmp_path / "c"), "-o", str(tmp_path / "out")]
    quiet = runner.invoke(app, args)
    assert quiet.exit_code == 1 and "internal error: ZeroDivisionError: bug" in quiet.stderr
    assert "Traceback" not in quiet.stderr
    loud = runner.invoke(app, ["--verbose", *args])
    assert loud.exit_code == 1 and "Traceback" in loud.stderr


def test_python_m_dvcli_runs_the_same_app() -> None:
    done = subprocess.run([sys.executable, "-m", "dvcli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("dv ")


def test_shell_completion_script_is_available() -> None:
    done = subprocess.run([sys.executable, "-m", "dvcli", "--show-completion", "bash"], capture_output=True, text=True)
    assert done.returncode == 0 and "_dv_completion" in done.stdout


def test_option_help_shows_the_default_the_stage_uses() -> None:
    """Defaults in --help are read from the stage's config class, never restated by hand."""
    import re

    from stages.cluster import ClusterConfig
    from stages.synthesize import SynthesizeConfig

    cluster_help = " ".join(runner.invoke(app, ["cluster", "--help"]).output.split())
    assert f"Clusters = unit vocabulary size. (default: {ClusterConfig.k})" in cluster_help.replace("│ ", "")
    synth_help = " ".join(runner.invoke(app, ["synthesize", "--help"]).output.replace("│", " ").split())
    assert f"Text-to-unit beam width. (default: {SynthesizeConfig.beams})" in synth_help
    commands = Path(__file__).resolve().parents[1] / "dvcli" / "commands"
    restated = [
        f"{path.name}: {m.group(0)}"
        for path in sorted(commands.glob("*.py"))
        for m in re.finditer(r"\(default:? [0-9][^)]*\)", path.read_text(encoding="utf-8"))
    ]
    assert not restated, restated


def test_setting_reads_nested_and_factory_defaults() -> None:
    import dataclasses

    from dvcli.commands.common import _default_of, setting

    @dataclasses.dataclass
    class Inner:
        snr: float = 5.0

    @dataclasses.dataclass
    class Outer:
        inner: Inner = dataclasses.field(default_factory=Inner)
        snrs: list[float] = dataclasses.field(default_factory=lambda: [0.0, 5.0])
        vad: bool = True

    assert _default_of(Outer, "inner.snr") == 5.0
    assert setting(Outer, "snrs", "SNRs.").help == "SNRs. (default: 0,5)"
    assert setting(Outer, "vad", "Detect speech.").help == "Detect speech. (default: on)"
