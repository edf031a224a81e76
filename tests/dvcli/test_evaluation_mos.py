"""The listening-test kit: balanced orders, the page, attention checks, and MOS ± CI from ratings."""

from __future__ import annotations

import csv
import html
import json
import math
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from dvcli.errors import UserError
from dvcli.evaluation.clips import Clip, write_synth_table
from dvcli.evaluation.mos import KitItem, beeps, build_orders, read_items, read_ratings, screen_raters
from dvcli.testing import make_corpus
from stages.evaluate_mos import MosConfig
from stages.evaluate_mos import run as score_mos
from stages.evaluate_mos_kit import MosKitConfig
from stages.evaluate_mos_kit import run as build_kit

T_975_DF2 = 4.302652729749464  # Student's t, 97.5% quantile, 2 degrees of freedom (tables)


def _items(systems: int = 3, conditions: int = 2, clips: int = 4, checks: int = 2) -> list[KitItem]:
    items = [
        KitItem(f"s{s}c{c}k{k}", f"S{s}", f"C{c}", f"u{k}", f"audio/{s}{c}{k}.wav")
        for s in range(systems)
        for c in range(conditions)
        for k in range(clips)
    ]
    return items + [KitItem(f"chk{i}", "(attention check)", f"check {i}", "", "a.wav", check=2) for i in range(checks)]


def test_orders_are_balanced_randomised_and_cover_every_clip() -> None:
    items = _items()
    orders = build_orders(items, lists=4, per_group=2, seed=0)
    group = {it.item: (it.system, it.condition) for it in items if not it.check}
    seen: Counter[str] = Counter()
    for order in orders:
        real = [i for i in order if i in group]
        assert Counter(group[i] for i in real) == {g: 2 for g in set(group.values())}  # every cell equally often
        assert sorted(i for i in order if i.startswith("chk")) == ["chk0", "chk1"] and not order[0].startswith("chk")
        # Dealt in rounds of one clip per cell: each half of a session holds every cell once.
        half = len(real) // 2
        assert len({group[i] for i in real[:half]}) == half
        seen.update(real)
    assert set(seen) == set(group) and set(seen.values()) == {2}  # 4 lists x 2 per cell = each clip twice
    assert len({tuple(o) for o in orders}) == 4  # randomised differently per list
    assert build_orders(items, lists=4, per_group=2, seed=0) == orders  # and reproducibly


def test_beeps_count() -> None:
    wav = beeps(4)
    onsets = sum(1 for a, b in zip(wav[:-1] == 0, wav[1:] != 0) if a and b)
    assert onsets == 4


def _systems(root: Path) -> list[Path]:
    """Two systems (A, B) of three clips each, one condition; references are the next clip of the speaker."""
    utts = make_corpus(root / "corpus", speakers=1, utterances=3, seconds=(0.4, 0.5))
    paths = []
    for name in "AB":
        clips = [
            Clip(name, u.id, u.audio, u.text, utts[(i + 1) % 3].audio, condition="clean") for i, u in enumerate(utts)
        ]
        write_synth_table(root / name / "synth.tsv", clips)
        paths.append(root / name / "synth.tsv")
    return paths


def _write_ratings(path: Path, rows: list[tuple]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["rater", "list", "position", "item", "naturalness", "similarity", "seconds"])
        for i, row in enumerate(rows):
            w.writerow([row[0], 0, i + 1, row[1], row[2], row[3], 1.5])


def test_kit_round_trips_synthetic_ratings_to_the_expected_mos_and_ci(tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    result = build_kit(MosKitConfig(systems=_systems(tmp_path), out=kit, lists=2, checks=2, seed=1))
    assert result.items == 6 and (kit / "index.html").is_file()
    items = read_items(kit)
    real = {(it.system, it.clip_id): it.item for it in items.values() if not it.check}
    checks = {it.item: it.check for it in items.values() if it.check}
    # Anonymous names: nothing in the page or the audio folder says which system a clip is from.
    page = (kit / "index.html").read_text()
    assert "spk0" not in page and '"A"' not in page and "(attention check)" not in page
    assert all(re.fullmatch(r"[ir]\d{4}\.wav", p.name) for p in (kit / "audio").iterdir())

    ids = ["spk0_000", "spk0_001", "spk0_002"]
    good = [("ann", real[("A", u)], n, s) for u, n, s in zip(ids, (3, 4, 5), (2, 2, 5))]
    good += [("ann", real[("B", u)], n, s) for u, n, s in zip(ids, (2, 2, 5), (4, 4, 4))]
    good += [("ann", item, answer, answer) for item, answer in checks.items()]
    careless = [("bob", item, 1, 1) for item in real.values()] + [("bob", item, 3, 3) for item in checks]
    _write_ratings(tmp_path / "ann.csv", good)
    _write_ratings(tmp_path / "bob.csv", careless)

    report = score_mos(MosConfig(kit=kit, ratings=[tmp_path / "ann.csv", tmp_path / "bob.csv"], out=tmp_path / "mos"))
    assert report.raters == ["ann"] and "bob" in report.dropped
    cells = {g.system: g.stats for g in report.groups}
    # A naturalness 3, 4, 5: mean 4, sd 1. B naturalness 2, 2, 5: mean 3, sd sqrt(3).
    assert cells["A"]["naturalness"]["mean"] == pytest.approx(4.0)
    assert cells["A"]["naturalness"]["ci95"] == pytest.approx(T_975_DF2 / math.sqrt(3))
    assert cells["B"]["naturalness"]["mean"] == pytest.approx(3.0)
    assert cells["B"]["naturalness"]["ci95"] == pytest.approx(T_975_DF2)
    assert cells["A"]["similarity"]["mean"] == pytest.approx(3.0)
    assert cells["A"]["similarity"]["ci95"] == pytest.approx(T_975_DF2)
    assert cells["B"]["similarity"] == {"mean": 4.0, "ci95": 0.0, "n": 3}
    md = (tmp_path / "mos" / "report.md").read_text()
    assert "| A | 4.00 ± 2.48 | 3.00 ± 4.30 |" in md
    saved = json.loads((tmp_path / "mos" / "report.json").read_text())
    assert saved["dropped"] == {"bob": "passed 0 of 2 attention checks"}
    assert (tmp_path / "mos" / "naturalness.png").is_file()

    # Everyone careless: nothing to report, said on one line.
    with pytest.raises(UserError, match="every rater failed the attention checks"):
        score_mos(MosConfig(kit=kit, ratings=[tmp_path / "bob.csv"], out=tmp_path / "none"))
    assert not (tmp_path / "none").exists()


def test_screening_and_bad_ratings(tmp_path: Path) -> None:
    items = {it.item: it for it in _items(systems=1, conditions=1, clips=2, checks=2)}
    path = tmp_path / "r.csv"
    _write_ratings(path, [("x", "chk0", 2, 2), ("x", "chk1", 2, 4), ("y", "s0c0k0", 3, 3)])
    ratings = read_ratings([tmp_path], items)  # a folder of CSVs works too
    kept, dropped = screen_raters(ratings, items, min_accuracy=0.5)
    assert kept == ["x"] and dropped == {"y": "answered no attention check"}
    assert screen_raters(ratings, items, min_accuracy=1.0)[0] == []
    _write_ratings(path, [("x", "nope", 2, 2)])
    with pytest.raises(UserError, match="item 'nope' is not in this kit"):
        read_ratings([path], items)
    _write_ratings(path, [("x", "chk0", 7, 2)])
    with pytest.raises(UserError, match="outside the 1-5 scale"):
        read_ratings([path], items)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="needs a Chromium binary (apt-get install chromium)")
def test_page_runs_in_headless_chromium_and_its_csv_scores(tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    build_kit(MosKitConfig(systems=_systems(tmp_path), out=kit, lists=2, checks=2, seed=3))
    items = read_items(kit)
    right = ",".join(f"{i}:{it.check}" for i, it in items.items() if it.check)
    wrong = ",".join(f"{i}:{6 - it.check}" for i, it in items.items() if it.check)
    for rater, answers in (("ann", right), ("bob", wrong)):
        url = f"{(kit / 'index.html').as_uri()}?autotest=1&rater={rater}&answers={answers}"
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        match = re.search(r'<textarea id="csv"[^>]*>(.*?)</textarea>', dom, re.DOTALL)
        assert match, dom[-2000:]
        text = html.unescape(match.group(1))
        (tmp_path / f"{rater}.csv").write_text(text)
        rows = list(csv.DictReader(text.splitlines()))
        order = json.loads(re.search(r'<script id="kit"[^>]*>(.*?)</script>', dom, re.DOTALL).group(1))["lists"][
            int(rows[0]["list"])
        ]
        assert [r["item"] for r in rows] == order  # every item of the rater's list, in its order, once
        assert all(r["naturalness"] in "12345" and r["similarity"] in "12345" for r in rows)
    report = score_mos(MosConfig(kit=kit, ratings=[tmp_path / "ann.csv", tmp_path / "bob.csv"], out=tmp_path / "mos"))
    assert report.raters == ["ann"] and list(report.dropped) == ["bob"]
    assert {g.system for g in report.groups} == {"A", "B"} and all(
        g.stats["naturalness"]["n"] == 3 for g in report.groups
    )
