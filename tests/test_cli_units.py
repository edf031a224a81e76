"""`dv extract-units` and `dv cluster` as a user runs them: the pipeline, one-line errors, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvcli.cli import app
from dvcli.manifest import read_manifest, read_units
from dvcli.testing import make_manifest
from stages.demo import default_corpus
from stages.prepare import PrepareConfig
from stages.prepare import run as prepare

runner = CliRunner()


def test_extract_then_cluster(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "c", speakers=2, utterances=2)
    result = runner.invoke(app, ["extract-units", str(manifest), "-o", str(tmp_path / "f"), "--features", "mfcc"])
    assert result.exit_code == 0, result.output
    assert "audio hours" in result.stderr
    result = runner.invoke(
        app, ["cluster", str(tmp_path / "f"), "-o", str(tmp_path / "km"), "--k", "5", "--dedup", "--set", "sample=1.0"]
    )
    assert result.exit_code == 0, result.output
    assert set(read_units(tmp_path / "km")) == {u.id for u in read_manifest(manifest)}
    assert (tmp_path / "km" / "durations.tsv").is_file()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["cluster", "{f}", "--k", "100000"], "is more than the"),
        (["cluster", "{tmp}/missing"], "feature folder not found"),
        (["extract-units", "{m}", "--checkpoint", "{m}"], "is not a PyTorch checkpoint"),
        (["extract-units", "{m}", "--kmeans", "{tmp}/nope.bin", "--features", "mfcc"], "k-means model not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    manifest = make_manifest(tmp_path / "c", speakers=1, utterances=2)
    assert (
        runner.invoke(app, ["extract-units", str(manifest), "-o", str(tmp_path / "f"), "--features", "mfcc"]).exit_code
        == 0
    )
    args = [a.format(f=tmp_path / "f", m=manifest, tmp=tmp_path) for a in args]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("dv: error: ") and any(n in last for n in needle.split("|")), last
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.skipif(not (default_corpus() / "speakers.tsv").is_file(), reason="examples/toy has not landed")
def test_toy_corpus_gets_units_for_every_utterance(tmp_path: Path) -> None:
    prepare(PrepareConfig(source=default_corpus(), out=tmp_path / "data"))
    assert (
        runner.invoke(
            app, ["extract-units", str(tmp_path / "data"), "-o", str(tmp_path / "f"), "--features", "mfcc"]
        ).exit_code
        == 0
    )
    result = runner.invoke(app, ["cluster", str(tmp_path / "f"), "-o", str(tmp_path / "km"), "--k", "100"])
    assert result.exit_code == 0, result.output
    assert set(read_units(tmp_path / "km")) == {u.id for u in read_manifest(tmp_path / "data")}
