"""CER/WER scoring, noise mixing and the grouped report arithmetic of dv evaluate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dvcli.evaluation.asr import normalize_for_cer, score_transcript
from dvcli.evaluation.noise import mix_at_snr
from dvcli.evaluation.report import Metric, long_markdown, plot_bars, summarize, table1_markdown
from dvcli.metrics import edit_distance

T_975_DF2 = 4.302652729749464  # Student's t, 97.5% quantile, 2 degrees of freedom (tables)


@pytest.mark.parametrize(
    "text,heard",
    [
        ("Please call me back tomorrow morning.", "please call me back to my world war il"),
        ("Dr. Smith paid $3.50!", "doctor smith paid three dollars and fifty cents"),
        ("The birch canoe slid on the smooth planks.", "the winner chicken who sleeps on that smooth learned"),
        ("Same words.", "same words"),
    ],
)
def test_cer_and_wer_equal_brute_force_levenshtein_on_normalised_text(text: str, heard: str) -> None:
    t = score_transcript(text, heard)
    ref, hyp = normalize_for_cer(text), normalize_for_cer(heard)
    assert (t.reference, t.hypothesis) == (ref, hyp)
    assert t.cer == pytest.approx(edit_distance(list(ref), list(hyp)) / len(ref))
    assert t.wer == pytest.approx(edit_distance(ref.split(), hyp.split()) / len(ref.split()))


@pytest.mark.parametrize(
    "text,normalised",
    [  # Whisper's English normaliser, as in the Whisper paper's evaluation
        ("Dr. Smith paid three dollars and fifty cents!", "doctor smith paid $3.50"),
        ("Dr. Smith paid $3.50.", "doctor smith paid $3.50"),
        ("It's easy to tell the depth of a well.", "it is easy to tell the depth of a well"),
        ("Hmm, uh, twenty-one   DOGS", "21 dogs"),
        ("It is easy to tell, but well...", "it is easy to tell but well"),  # no stray "."
        ("Version 3.5 costs $3.50.", "version 3.5 costs $3.50"),
    ],
)
def test_cer_normalisation_is_whispers(text: str, normalised: str) -> None:
    assert normalize_for_cer(text) == normalised


def test_empty_hypothesis_is_all_deletions_and_empty_text_is_not_scored() -> None:
    t = score_transcript("two words", "")
    assert t.cer == 1.0 and t.wer == 1.0
    assert math.isnan(score_transcript("", "anything").cer)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 5.0, 10.0, 20.0])
def test_mix_at_snr_hits_the_requested_snr(snr: float) -> None:
    rng = np.random.default_rng(0)
    clean = (0.1 * np.sin(np.arange(16000) / 7.0)).astype(np.float32)
    noise = rng.standard_normal(5000).astype(np.float32)  # shorter than the clip: tiled
    mixed = mix_at_snr(clean, noise, snr, rng)
    scale = 1.0
    if np.abs(mixed).max() >= 0.99 - 1e-6:  # rescaled as a whole against clipping: undo it
        scale = np.dot(mixed, clean) / np.dot(clean, clean)
    added = mixed / scale - clean
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr, abs=0.05)


def test_mix_at_snr_refuses_silent_noise() -> None:
    with pytest.raises(ValueError):
        mix_at_snr(np.ones(10, np.float32), np.zeros(10, np.float32), 5.0)


def _records() -> list[dict]:
    # Three clips per cell: the 95% half-width is t(2) * sd / sqrt(3), with t(2) exact.
    rows = []
    for system, cond, values in [
        ("A", "clean", [0.1, 0.2, 0.3]),
        ("A", "noisy", [0.2, 0.2, 0.5]),
        ("B", "clean", [0.4, 0.4, 0.4]),
    ]:
        for i, v in enumerate(values):
            rows.append(
                {"system": system, "condition": cond, "id": str(i), "secs": v, "cer": math.nan if system == "B" else v}
            )
    return rows


def test_summaries_match_hand_computed_means_and_intervals() -> None:
    groups = summarize(_records(), ["secs", "cer"], ["A", "B"], ["clean", "noisy"])
    cells = {(g.system, g.condition): g for g in groups}
    assert set(cells) == {("A", "clean"), ("A", "noisy"), ("B", "clean")}  # empty cells are skipped
    a_clean = cells[("A", "clean")].stats["secs"]
    assert a_clean["mean"] == pytest.approx(0.2)
    assert a_clean["ci95"] == pytest.approx(T_975_DF2 * 0.1 / math.sqrt(3))  # sd of 0.1, 0.2, 0.3 is 0.1
    a_noisy = cells[("A", "noisy")].stats["secs"]
    assert a_noisy["mean"] == pytest.approx(0.3)
    assert a_noisy["ci95"] == pytest.approx(T_975_DF2 * math.sqrt(0.03) / math.sqrt(3))  # var = (.01+.01+.04)/2
    assert cells[("B", "clean")].stats["secs"]["ci95"] == pytest.approx(0.0)
    assert "cer" not in cells[("B", "clean")].stats  # NaN = not measured, not a zero


def test_table1_has_one_row_per_system_and_a_column_block_per_condition(tmp_path: Path) -> None:
    metrics = [Metric("cer", "CER %", scale=100, digits=1), Metric("secs", "SECS", digits=3)]
    groups = summarize(_records(), ["secs", "cer"], ["A", "B"], ["clean", "noisy"])
    table = table1_markdown(groups, metrics, ["A", "B"], ["clean", "noisy"]).splitlines()
    assert table[0] == "| System | clean: CER % | clean: SECS | noisy: CER % | noisy: SECS |"
    assert (
        table[2]
        == f"| A | 20.0 ± {100 * T_975_DF2 * 0.1 / math.sqrt(3):.1f} | 0.200 ± 0.248 | 30.0 ± 43.0 | 0.300 ± 0.430 |"
    )
    assert table[3] == "| B | – | 0.400 ± 0.000 | – | – |"
    assert len(long_markdown(groups, metrics).splitlines()) == 2 + 3
    assert plot_bars(groups, metrics[1], ["A", "B"], ["clean", "noisy"], tmp_path / "secs.png")
    assert (tmp_path / "secs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plot_bars(groups, Metric("nothing", "x"), ["A"], ["clean"], tmp_path / "none.png")
    json.dumps([g.to_dict() for g in groups])  # the report.json payload is plain JSON


# -- variance across speakers --------------------------------------------------------------------


def _speaker_records(offsets: list[float], clips: int, noise: float, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"system": "s", "condition": "c", "speaker": f"spk{i}", "secs": off + noise * rng.standard_normal()}
        for i, off in enumerate(offsets)
        for _ in range(clips)
    ]


def test_speaker_spread_per_speaker_means_and_between_speaker_sd() -> None:
    from dvcli.evaluation.report import speaker_spread

    offsets = [0.2, 0.4, 0.6, 0.8, 1.0, 1.2]
    spread = speaker_spread(_speaker_records(offsets, clips=5, noise=0.0), "secs")
    assert spread is not None and spread["speakers"] == 6
    assert list(spread["per_speaker"].values()) == pytest.approx(offsets)
    assert spread["between_speaker_sd"] == pytest.approx(float(np.std(offsets, ddof=1)))
    assert speaker_spread(_speaker_records([0.5], clips=5, noise=0.1), "secs") is None  # one speaker


def test_speaker_bootstrap_interval_matches_the_analytic_spread_of_speaker_means() -> None:
    """With no spread within speakers and equal clip counts, the two-stage bootstrap is a bootstrap of
    the speaker means: its 95% interval is about mean ± 1.96 · SD · sqrt((n-1)/n) / sqrt(n)."""
    from dvcli.evaluation.report import speaker_spread

    offsets = list(np.linspace(0.0, 1.0, 12))
    spread = speaker_spread(_speaker_records(offsets, clips=4, noise=0.0), "secs", resamples=20000)
    n, sd = len(offsets), float(np.std(offsets, ddof=1))
    expected = 2 * 1.96 * sd * np.sqrt((n - 1) / n) / np.sqrt(n)
    low, high = spread["ci95_speakers"]
    assert high - low == pytest.approx(expected, rel=0.1)
    assert low < float(np.mean(offsets)) < high


def test_speaker_interval_is_wider_than_the_per_clip_one_when_speakers_differ() -> None:
    from dvcli.evaluation.report import speaker_spread, summarize

    records = _speaker_records([0.3, 0.5, 0.7, 0.9], clips=25, noise=0.02)
    per_clip = summarize(records, ["secs"], ["s"], ["c"])[0].stats["secs"]["ci95"]
    low, high = speaker_spread(records, "secs")["ci95_speakers"]
    # 100 clips look like 100 independent draws; they are 4 speakers.
    assert (high - low) / 2 > 3 * per_clip
    again = speaker_spread(records, "secs")
    assert again["ci95_speakers"] == [low, high]  # seeded: reproducible


def test_det_curve_runs_from_all_accepts_to_all_rejects_through_the_eer() -> None:
    from dvcli.metrics import det_curve, eer

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(1.0, 1.0, 200), rng.normal(-1.0, 1.0, 300)])
    labels = np.array([1] * 200 + [0] * 300)
    far, frr = det_curve(scores, labels)
    assert (far[0], frr[0], far[-1], frr[-1]) == (1.0, 0.0, 0.0, 1.0)
    assert np.all(np.diff(far) <= 0) and np.all(np.diff(frr) >= 0)
    rate, _ = eer(scores, labels)
    crossing = int(np.argmax(frr >= far))
    assert min(far[crossing - 1], frr[crossing]) - 0.01 <= rate <= max(far[crossing - 1], frr[crossing]) + 0.01
