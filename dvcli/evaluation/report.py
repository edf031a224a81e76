"""Grouping per-clip scores by system and condition, with means and 95% confidence intervals.

Shared by ``dv evaluate`` (CER, SECS, DNSMOS) and ``dv evaluate mos`` (listening-test ratings):
records are plain dicts with ``system``, ``condition`` and numeric metric fields; NaN means "not
measured for this record" and is left out of that metric's mean. Intervals are Student's t
intervals from :func:`dvcli.metrics.mean_ci95`.

The Markdown table is shaped like Table 1 of the DINO-VITS paper: one row per system, one block
of columns per condition (clean, noisy...), ``mean ± half-width`` in each cell.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dvcli.metrics import mean_ci95


@dataclasses.dataclass(frozen=True)
class Metric:
    """How a metric is shown."""

    key: str  # field name in the records
    label: str  # column header
    scale: float = 1.0  # e.g. 100 for rates shown in percent
    digits: int = 2  # decimals shown
    higher_is_better: bool = True

    def cell(self, stat: Mapping[str, float] | None) -> str:
        """``mean ± ci`` (or ``–`` when not measured)."""
        if not stat or not math.isfinite(stat.get("mean", math.nan)):
            return "–"
        mean, ci = stat["mean"] * self.scale, stat["ci95"] * self.scale
        return f"{mean:.{self.digits}f} ± {ci:.{self.digits}f}"


@dataclasses.dataclass
class Group:
    """Summary of one (system, condition) cell."""

    system: str
    condition: str
    count: int  # records in the group
    stats: dict[str, dict[str, float]]  # metric -> {"mean", "ci95", "n"}
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "condition": self.condition,
            "count": self.count,
            "metrics": self.stats,
            **self.extra,
        }


def summarize(
    records: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    systems: Sequence[str],
    conditions: Sequence[str],
) -> list[Group]:
    """Mean and 95% CI of every metric per (system, condition), in the given orders; empty cells skipped."""
    groups = []
    for system in systems:
        for condition in conditions:
            rows = [r for r in records if r["system"] == system and r["condition"] == condition]
            if not rows:
                continue
            stats = {}
            for m in metrics:
                values = [float(r[m]) for r in rows if m in r and r[m] is not None and math.isfinite(float(r[m]))]
                if values:
                    mean, half = mean_ci95(values)
                    stats[m] = {"mean": mean, "ci95": half, "n": len(values)}
            groups.append(Group(system, condition, len(rows), stats))
    return groups


def table1_markdown(
    groups: Sequence[Group], metrics: Sequence[Metric], systems: Sequence[str], conditions: Sequence[str]
) -> str:
    """A Table-1-style Markdown table: systems x (condition x metric) cells of ``mean ± ci``."""
    index = {(g.system, g.condition): g for g in groups}
    used = [c for c in conditions if any((s, c) in index for s in systems)]
    head = ["System"] + [f"{c}: {m.label}" for c in used for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in systems:
        cells = [s]
        for c in used:
            g = index.get((s, c))
            cells += [m.cell(g.stats.get(m.key) if g else None) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def long_markdown(groups: Sequence[Group], metrics: Sequence[Metric]) -> str:
    """One row per (system, condition) with every metric and the clip count; wide tables stay readable."""
    head = ["System", "Condition", "n"] + [m.label for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g.system, g.condition, str(g.count)] + [m.cell(g.stats.get(m.key)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_bars(
    groups: Sequence[Group],
    metric: Metric,
    systems: Sequence[str],
    conditions: Sequence[str],
    path: str | Path,
    title: str = "",
) -> bool:
    """Grouped bar chart (x: condition, one bar per system) with 95% CI error bars, as a PNG.

    Returns False (and writes nothing) when no group measured the metric.
    """
    from matplotlib.figure import Figure  # object API: no pyplot global state, renders with Agg

    index = {(g.system, g.condition): g.stats.get(metric.key) for g in groups}
    used = [c for c in conditions if any(index.get((s, c)) for s in systems)]
    if not used:
        return False
    fig = Figure(figsize=(max(4.0, 1.2 + 1.1 * len(used) * max(1, len(systems)) * 0.6), 3.6), dpi=120)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(systems))
    for i, s in enumerate(systems):
        xs, means, cis = [], [], []
        for j, c in enumerate(used):
            stat = index.get((s, c))
            if stat:
                xs.append(j - 0.4 + width * (i + 0.5))
                means.append(stat["mean"] * metric.scale)
                cis.append(stat["ci95"] * metric.scale)
        if xs:
            ax.bar(xs, means, width=width * 0.95, yerr=cis, capsize=3, label=s)
    ax.set_xticks(range(len(used)), used)
    ax.set_ylabel(metric.label + ("" if metric.higher_is_better else " (lower is better)"))
    ax.set_title(title or f"{metric.label}: mean ± 95% CI")
    ax.grid(axis="y", alpha=0.3)
    if len(systems) > 1:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(str(path))
    return True


# -- variance across speakers (the seed analysis's Experiment 2) ----------------------------------


def speaker_spread(
    records: Sequence[Mapping[str, Any]],
    metric: str,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """How one group's ``metric`` varies across speakers (``records`` carry ``speaker``).

    Returns ``None`` with fewer than two speakers, else:

    - ``per_speaker``: each speaker's mean over its clips;
    - ``between_speaker_sd``: the standard deviation of those means (ddof 1);
    - ``ci95_speakers``: a 95% percentile interval of the clip mean from a two-stage bootstrap that
      resamples speakers with replacement, then clips within each drawn speaker (clips nested in
      speakers, as in Field & Welsh 2007's cluster bootstrap), ``resamples`` times;
    - ``speakers``: how many speakers had the metric.

    Clips are not independent draws when a speaker contributes several: the per-clip Student's t
    interval then understates the uncertainty about a new speaker; this one does not.
    """
    import numpy as np

    by_speaker: dict[str, list[float]] = {}
    for r in records:
        value = r.get(metric)
        if value is None or not math.isfinite(float(value)) or not r.get("speaker"):
            continue
        by_speaker.setdefault(str(r["speaker"]), []).append(float(value))
    if len(by_speaker) < 2:
        return None
    names = sorted(by_speaker)
    values = [np.asarray(by_speaker[s]) for s in names]
    means = np.array([v.mean() for v in values])
    rng = np.random.default_rng(seed)
    estimates = np.empty(resamples)
    for i in range(resamples):
        picked = rng.integers(0, len(values), len(values))
        clips = [values[j][rng.integers(0, len(values[j]), len(values[j]))] for j in picked]
        estimates[i] = np.concatenate(clips).mean()
    low, high = np.percentile(estimates, [2.5, 97.5])
    return {
        "speakers": len(names),
        "per_speaker": dict(zip(names, means.tolist())),
        "between_speaker_sd": float(means.std(ddof=1)),
        "ci95_speakers": [float(low), float(high)],
    }


def add_speaker_spread(
    groups: Sequence[Group], records: Sequence[Mapping[str, Any]], metrics: Sequence[str], *, seed: int = 0
) -> None:
    """Put :func:`speaker_spread` of every metric into each group's ``extra["speakers"]``."""
    for g in groups:
        rows = [r for r in records if r["system"] == g.system and r["condition"] == g.condition]
        spread = {m: s for m in metrics if (s := speaker_spread(rows, m, seed=seed)) is not None}
        if spread:
            g.extra["speakers"] = spread


def speaker_markdown(groups: Sequence[Group], metrics: Sequence[Metric]) -> str:
    """Per (system, condition, metric): mean, the per-clip CI, the speaker-resampling CI and the
    between-speaker SD; empty when no group knows its clips' speakers."""
    head = [
        "System / condition",
        "Metric",
        "speakers",
        "mean",
        "95% CI (clips)",
        "95% CI (speakers)",
        "SD between speakers",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = 0
    for g in groups:
        for m in metrics:
            spread = g.extra.get("speakers", {}).get(m.key)
            stat = g.stats.get(m.key)
            if not spread or not stat:
                continue
            f = f".{m.digits}f"
            low, high = (v * m.scale for v in spread["ci95_speakers"])
            mean, half = stat["mean"] * m.scale, stat["ci95"] * m.scale
            cells = [
                f"{g.system} / {g.condition}",
                m.label,
                str(spread["speakers"]),
                format(mean, f),
                f"{format(mean - half, f)} – {format(mean + half, f)}",
                f"{format(low, f)} – {format(high, f)}",
                format(spread["between_speaker_sd"] * m.scale, f),
            ]
            lines.append("| " + " | ".join(cells) + " |")
            rows += 1
    return "\n".join(lines) if rows else ""


def plot_per_speaker(groups: Sequence[Group], metric: Metric, path: str | Path) -> bool:
    """Per-speaker means of ``metric``: one row of points per (system, condition), a line at the
    mean, as a PNG. Returns False (writes nothing) when no group has speakers for it."""
    from matplotlib.figure import Figure

    rows = [(f"{g.system} / {g.condition}", g) for g in groups if metric.key in g.extra.get("speakers", {})]
    if not rows:
        return False
    fig = Figure(figsize=(6.0, 1.0 + 0.45 * len(rows)), dpi=120)
    ax = fig.add_subplot()
    for y, (_, g) in enumerate(rows):
        means = [v * metric.scale for v in g.extra["speakers"][metric.key]["per_speaker"].values()]
        ax.scatter(means, [y] * len(means), s=18, alpha=0.7)
        ax.plot([g.stats[metric.key]["mean"] * metric.scale] * 2, [y - 0.3, y + 0.3], color="black")
    ax.set_yticks(range(len(rows)), [name for name, _ in rows])
    ax.set_xlabel(metric.label + " per speaker" + ("" if metric.higher_is_better else " (lower is better)"))
    ax.set_title(f"{metric.label}: speaker means (dots) and the overall mean (bar)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path))
    return True
