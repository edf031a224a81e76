"""``dv evaluate mos-kit``: build a static HTML listening test from systems' clips.

Writes ``OUT/index.html``, ``OUT/audio/`` (every clip and reference as 16-bit WAV under an
anonymous name, plus the attention-check beeps) and ``OUT/items.tsv`` (the key from anonymous ids to
systems and conditions, read back by ``dv evaluate mos``). See :mod:`dvcli.evaluation.mos` for the
design of the orders and checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path

from dvcli.audio import SAMPLE_RATE, load_audio_with_rate, save_audio
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.evaluation.clips import gather_clips
from dvcli.evaluation.mos import CHECK_SYSTEM, ITEMS_FILE, KitItem, beeps, build_orders, write_items
from dvcli.evaluation.mos_page import render_page
from dvcli.logs import track
from dvcli.outputs import add_meta, stage_output


@dataclasses.dataclass(kw_only=True)
class MosKitConfig(StageConfig):
    """Settings of ``dv evaluate mos-kit``."""

    systems: list[Path] = dataclasses.field(
        default_factory=list
    )  # synth.tsv files (or folders); manifests = ground truth
    out: Path  # kit folder
    names: list[str] = dataclasses.field(default_factory=list)  # one name per system (default: the table's folder name)
    ground_truth: Path | None = None  # a manifest whose recordings join the test as 'ground truth'
    split: str = ""  # with manifests: keep only this split
    max_clips: int = 0  # take at most this many clips per system (0 = all)
    lists: int = 4  # distinct balanced orders (raters are spread over them)
    per_group: int = 0  # clips per (system, condition) in each order; 0 = all
    checks: int = 3  # attention-check items per order
    similarity: bool = True  # ask speaker similarity against the reference when a clip has one
    title: str = "Listening test"  # page title


@dataclasses.dataclass
class MosKitResult:
    """What ``dv evaluate mos-kit`` wrote."""

    out: Path
    items: int
    checks: int
    lists: int
    clips_per_list: int

    def summary(self) -> dict[str, object]:
        return {
            "page": self.out / "index.html",
            "key (keep it)": self.out / ITEMS_FILE,
            "clips": self.items,
            "attention checks": self.checks,
            "orders": self.lists,
            "items per rater": self.clips_per_list,
        }


def run(config: MosKitConfig) -> MosKitResult:
    """Copy the clips, build balanced orders and checks, and write the page.

    Raises:
        UserError: unreadable tables or audio, or settings that leave nothing to rate.
    """
    if config.lists < 1 or config.checks < 0:
        raise UserError(f"lists={config.lists}, checks={config.checks}: need at least one list and no negative count")
    clips = gather_clips(config.systems, config.names, config.ground_truth, config.split, config.max_clips)
    rng = random.Random(config.seed)
    # Anonymous ids drawn at random, shared by clips and checks, so neither the page nor the file names tell them apart.
    ids = [
        f"i{n:04d}" for n in rng.sample(range(1, 10 * (len(clips) + config.checks) + 10), len(clips) + config.checks)
    ]
    out = Path(config.out)
    with stage_output(
        out, stage="evaluate-mos-kit", config=config, inputs={"systems": list(map(str, config.systems))}
    ) as tmp:
        (tmp / "audio").mkdir()
        refs: dict[Path, str] = {}
        items: list[KitItem] = []
        for clip, item_id in track(list(zip(clips, ids)), "copying audio"):
            audio = f"audio/{item_id}.wav"
            _copy_wav(clip.audio, tmp / audio)
            ref = ""
            if config.similarity and clip.target is not None:
                if clip.target not in refs:
                    refs[clip.target] = f"audio/r{len(refs) + 1:04d}.wav"
                    _copy_wav(clip.target, tmp / refs[clip.target])
                ref = refs[clip.target]
            items.append(KitItem(item_id, clip.system, clip.group, clip.id, audio, ref))
        ref_pool = sorted(refs.values())
        for k, item_id in enumerate(ids[len(clips) :]):
            count = (1, 2, 4, 5)[rng.randrange(4)]  # never 3: the scale's middle is where a careless rater lands
            audio = f"audio/{item_id}.wav"
            save_audio(tmp / audio, beeps(count), SAMPLE_RATE)
            items.append(
                KitItem(
                    item_id,
                    CHECK_SYSTEM,
                    f"check {k + 1}",
                    f"check{k + 1}",
                    audio,
                    rng.choice(ref_pool) if ref_pool else "",
                    check=count,
                )
            )
        orders = build_orders(items, lists=config.lists, per_group=config.per_group, seed=config.seed)
        kit_id = hashlib.sha1("\n".join(i.item + i.audio for i in items).encode()).hexdigest()[:12]
        page_items = {it.item: {"audio": it.audio, "ref": it.ref} for it in items}
        (tmp / "index.html").write_text(
            render_page({"id": kit_id, "items": page_items, "lists": orders}, config.title), encoding="utf-8"
        )
        write_items(tmp / ITEMS_FILE, items)
        add_meta(tmp, items=len(clips), checks=config.checks, lists=len(orders))
    return MosKitResult(out, len(clips), config.checks, len(orders), len(orders[0]) if orders else 0)


def _copy_wav(source: Path, target: Path) -> None:
    """Re-encode as 16-bit WAV at the source's rate: every browser plays it."""
    wav, rate = load_audio_with_rate(source, mono=True)
    save_audio(target, wav, rate)
