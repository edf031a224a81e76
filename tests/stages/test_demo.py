"""dv demo end to end on the toy corpus with tiny step counts: every stage runs, a re-run skips them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.demo import DemoConfig, default_corpus, pipeline, run


@pytest.mark.skipif(not default_corpus().is_dir(), reason="examples/toy is not in this checkout")
def test_demo_runs_every_stage_then_skips_them(tmp_path: Path) -> None:
    config = DemoConfig(out=tmp_path / "demo", speaker_steps=4, tests_per_speaker=1, max_ground_truth=2)
    first = run(config)
    names = [s.name for s in pipeline(config)]
    assert list(first.stages) == names
    assert all(r.state == "done" for r in first.stages.values()), first.stages
    assert "EER unseen" in first.stages["pretrain-speaker"].headline
    stamp = (tmp_path / "demo" / "data" / "meta.json").stat().st_mtime_ns
    again = run(config)
    assert all(r.state.startswith("skipped") for r in again.stages.values())
    assert (tmp_path / "demo" / "data" / "meta.json").stat().st_mtime_ns == stamp
