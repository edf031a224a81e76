"""dv demo: runs what has landed, skips finished stages on a re-run, names the missing ones."""

from __future__ import annotations

from pathlib import Path

from dvcli.testing import make_corpus
from stages.demo import IMPLEMENTED, PIPELINE, DemoConfig, run


def test_rerun_skips_finished_stages(tmp_path: Path) -> None:
    make_corpus(tmp_path / "corpus", speakers=2, utterances=2)
    config = DemoConfig(out=tmp_path / "demo", corpus=tmp_path / "corpus")
    first = run(config)
    assert first.stages["prepare"] == "done"
    assert [s for s in PIPELINE if first.stages[s].startswith("missing")] == [
        s for s in PIPELINE if s not in IMPLEMENTED
    ]
    stamp = (tmp_path / "demo" / "data" / "meta.json").stat().st_mtime_ns
    second = run(config)
    assert second.stages["prepare"].startswith("skipped")
    assert (tmp_path / "demo" / "data" / "meta.json").stat().st_mtime_ns == stamp
    forced = run(DemoConfig(out=tmp_path / "demo", corpus=tmp_path / "corpus", force=True))
    assert forced.stages["prepare"] == "done"
