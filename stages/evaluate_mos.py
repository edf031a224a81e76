"""``dv evaluate mos``: MOS and similarity MOS ± 95% CI per system and condition from listening-test ratings.

Reads the kit's key (``items.tsv``) and the ratings CSVs the page downloaded; drops raters who
failed attention checks; every remaining rating of a real clip is one sample of its (system,
condition) cell. Writes ``report.json``, ``report.md``, ``raters.tsv`` and bar charts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dvcli.atomic import write_json
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.evaluation.mos import rating_records, read_items, read_ratings, screen_raters
from dvcli.evaluation.report import Group, Metric, long_markdown, plot_bars, summarize, table1_markdown
from dvcli.outputs import add_meta, stage_output

MOS_METRICS = (Metric("naturalness", "MOS"), Metric("similarity", "Sim-MOS"))


@dataclasses.dataclass(kw_only=True)
class MosConfig(StageConfig):
    """Settings of ``dv evaluate mos``."""

    kit: Path  # the folder written by `dv evaluate mos-kit` (its items.tsv is the key)
    ratings: list[Path] = dataclasses.field(default_factory=list)  # ratings CSVs, or folders of them
    out: Path  # report folder
    min_check_accuracy: float = 1.0  # keep raters who passed at least this fraction of their attention checks
    plots: bool = True  # write PNG bar charts


@dataclasses.dataclass
class MosResult:
    """What ``dv evaluate mos`` computed."""

    out: Path
    groups: list[Group]
    raters: list[str]
    dropped: dict[str, str]

    def summary(self) -> dict[str, object]:
        rows: dict[str, object] = {"report": self.out / "report.md", "raters kept": len(self.raters)}
        rows["raters dropped"] = "; ".join(f"{r} ({why})" for r, why in self.dropped.items()) or "none"
        for g in self.groups:
            rows[f"{g.system} / {g.condition}"] = ", ".join(
                f"{m.label} {m.cell(g.stats.get(m.key))}" for m in MOS_METRICS if m.key in g.stats
            )
        return rows


def run(config: MosConfig) -> MosResult:
    """Score the ratings.

    Raises:
        UserError: missing kit or ratings, ratings from another kit, scores off the scale, or no rater left.
    """
    items = read_items(config.kit)
    ratings = read_ratings(config.ratings, items)
    kept, dropped = screen_raters(ratings, items, config.min_check_accuracy)
    if not kept:
        raise UserError(
            f"{config.kit}: every rater failed the attention checks ({len(dropped)} dropped); "
            "lower --min-check-accuracy or collect more ratings"
        )
    records = rating_records(ratings, items, kept)
    systems = list(dict.fromkeys(it.system for it in items.values() if not it.check))
    conditions = list(dict.fromkeys(it.condition for it in items.values() if not it.check))
    keys = [m.key for m in MOS_METRICS]
    groups = summarize(records, keys, systems, conditions)
    for g in groups:
        g.extra["raters"] = len(
            {r["rater"] for r in records if r["system"] == g.system and r["condition"] == g.condition}
        )
    metrics = [m for m in MOS_METRICS if any(m.key in g.stats for g in groups)]

    out = Path(config.out)
    with stage_output(out, stage="evaluate-mos", config=config, inputs={"kit": config.kit}) as tmp:
        write_json(
            tmp / "report.json",
            {"groups": [g.to_dict() for g in groups], "raters": kept, "dropped": dropped, "ratings": len(records)},
        )
        plots = []
        if config.plots:
            for m in metrics:
                if plot_bars(groups, m, systems, conditions, tmp / f"{m.key}.png"):
                    plots.append(f"{m.key}.png")
        text = [
            "# dv evaluate mos",
            "",
            (
                f"{len(kept)} raters kept, {len(dropped)} dropped by attention checks; {len(records)} ratings. "
                "Mean ± half-width of the 95% confidence interval (Student's t over ratings)."
            ),
            "",
            table1_markdown(groups, metrics, systems, conditions),
            "",
            long_markdown(groups, metrics),
            "",
            *[f"![{p}]({p})" for p in plots],
        ]
        (tmp / "report.md").write_text("\n".join(text) + "\n", encoding="utf-8")
        (tmp / "raters.tsv").write_text(
            "rater\tstatus\n"
            + "".join(f"{r}\tkept\n" for r in kept)
            + "".join(f"{r}\tdropped: {why}\n" for r, why in dropped.items()),
            encoding="utf-8",
        )
        add_meta(tmp, raters=len(kept), dropped=len(dropped), ratings=len(records))
    return MosResult(out, groups, kept, dropped)
