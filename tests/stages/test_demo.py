"""dv demo end to end on the toy corpus with tiny step counts: every stage runs, its outputs chain into
the next, the report scores clean and noisy references, and a re-run skips everything."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import soundfile as sf

from stages.demo import DemoConfig, default_corpus, pipeline, run


@pytest.mark.skipif(not default_corpus().is_dir(), reason="examples/toy is not in this checkout")
def test_demo_runs_every_stage_then_skips_them(tmp_path: Path) -> None:
    config = DemoConfig(
        out=tmp_path / "demo", speaker_steps=4, joint_steps=(1, 1), t2u_steps=4, tests_per_speaker=1, max_clips=4
    )
    first = run(config)
    names = [s.name for s in pipeline(config)]
    assert names[0] == "prepare" and names[-2:] == ["synthesize", "evaluate"]
    assert list(first.stages) == names
    assert all(r.state == "done" for r in first.stages.values()), first.stages
    assert "EER unseen" in first.stages["pretrain-speaker"].headline

    # One held-out test sentence per speaker, spoken from a clean and from a 0 dB reference.
    synth = tmp_path / "demo" / "synth"
    with open(synth / "synth.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert sorted(r["condition"] for r in rows) == ["clean", "clean", "noisy", "noisy"]
    for row in rows:
        audio, rate = sf.read(synth / row["out"])
        # (with 4 + 2 training steps the length says nothing; the full demo's is checked by hand)
        assert rate == 16000 and len(audio) > 0 and abs(len(audio) / rate - float(row["seconds"])) < 0.01
    report = (tmp_path / "demo" / "report" / "report.md").read_text(encoding="utf-8")
    assert "dino-vits" in report and "ground truth" in report and "noisy" in report
    assert "dino-vits / clean" in first.stages["evaluate"].headline
    # The listening page holds the demo's clips: both conditions, every cloned clip copied beside it.
    page = (tmp_path / "demo" / "report" / "report.html").read_text(encoding="utf-8")
    assert page.count('<section data-system="dino-vits"') == 2
    copied = {p.read_bytes() for p in (tmp_path / "demo" / "report" / "listen" / "audio").iterdir()}
    assert all((synth / r["out"]).read_bytes() in copied for r in rows)

    stamp = (tmp_path / "demo" / "data" / "meta.json").stat().st_mtime_ns
    again = run(config)
    assert all(r.state.startswith("skipped") for r in again.stages.values())
    assert (tmp_path / "demo" / "data" / "meta.json").stat().st_mtime_ns == stamp
