"""``report.html``: the listening page of ``dv evaluate run``, one folder that opens without a server.

On top, the summary table (every system x condition, each metric's mean ± 95% CI, as in
``report.json``) and the report's plots; below, one section per system x condition with a row per
test sentence: the reference clip the system was given, the cloned clip and the real recording of
the sentence (the ground truth) as audio players, each with a small spectrogram, then the text, the
recogniser's transcript and the clip's CER and SECS.

The audio is copied (not re-encoded) into ``listen/audio/`` and the spectrograms drawn into
``listen/spec/`` beside the page, so the report folder can be zipped or served as it is. The ground
truth of a clip is the ``recording`` column its ``synth.tsv`` carries (``dv evaluate refs`` writes
it); a ``ground truth`` system's clip is its own recording.

A script on the page counts the players whose audio the browser could open and shows it in
``#players`` (``data-loaded``, ``data-failed``, ``data-total``), so a headless browser can check
the page as a user would see it.
"""

from __future__ import annotations

import html
import json
import logging
import math
import shutil
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvcli.audio import load_audio
from dvcli.evaluation.clips import GROUND_TRUTH, Clip
from dvcli.evaluation.report import Group, Metric

log = logging.getLogger(__name__)

PAGE = "report.html"
FILES = "listen"


class _Media:
    """Copies each distinct audio file once into ``listen/audio/`` and draws its spectrogram."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: dict[Path, str] = {}
        self.missing: list[Path] = []  # named by a table but not there, or unreadable

    def add(self, path: Path | None) -> str | None:
        """The copy's index name (``"3"``), or None for no file or one that cannot be read."""
        if path is None:
            return None
        if not path.is_file():
            self.missing.append(path)
            return None
        path = path.resolve()
        if path not in self.names:
            name = str(len(self.names))
            audio_dir, spec_dir = self.folder / FILES / "audio", self.folder / FILES / "spec"
            audio_dir.mkdir(parents=True, exist_ok=True)
            spec_dir.mkdir(parents=True, exist_ok=True)
            try:
                spectrogram_png(load_audio(path), spec_dir / f"{name}.png")
            except Exception:  # an unreadable file gets no player rather than breaking the report
                self.missing.append(path)
                return None
            shutil.copyfile(path, audio_dir / f"{name}{path.suffix.lower()}")
            self.names[path] = name + path.suffix.lower()
        return self.names[path]


def spectrogram_png(wav: torch.Tensor, path: Path, *, sample_rate: int = 16000, height: int = 96) -> None:
    """A small log-power spectrogram of ``(T,)`` audio as a PNG: 100 columns a second, 0-8 kHz, 80 dB range."""
    from matplotlib import image  # no pyplot: imsave renders with Agg

    n_fft = 512
    if len(wav) < n_fft:
        wav = torch.nn.functional.pad(wav, (0, n_fft - len(wav)))
    spec = torch.stft(
        wav, n_fft, hop_length=sample_rate // 100, window=torch.hann_window(n_fft), return_complex=True
    ).abs()
    db = 20 * torch.log10(spec.clamp(min=1e-5))
    db = (db - db.max()).clamp(min=-80).numpy()  # (freq, frames)
    rows = np.linspace(0, db.shape[0] - 1, height).round().astype(int)
    image.imsave(str(path), db[rows], cmap="magma", origin="lower", vmin=-80, vmax=0)


def ground_truth_of(clip: Clip) -> Path | None:
    """The real recording of the clip's sentence: its own audio for ground truth, else ``recording``."""
    if clip.system == GROUND_TRUTH:
        return clip.audio
    value = clip.extra.get("recording", "").strip()
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else clip.audio.parent / path


def write_listening_page(
    folder: Path,
    clips: Sequence[Clip],
    records: Sequence[Mapping[str, Any]],
    groups: Sequence[Group],
    metrics: Sequence[Metric],
    plots: Sequence[str],
    *,
    rows_per_group: int = 20,
    title: str = "dv evaluate",
) -> Path:
    """Write ``folder/report.html`` and its ``listen/`` folder; returns the page's path.

    Args:
        clips, records: the scored clips and their score records, in the same order.
        groups: the summary (``report.json``'s groups); metrics: the columns of the summary table.
        plots: PNG file names in ``folder`` to show under the table.
        rows_per_group: sentences shown per system x condition (the first ones, in table order).
    """
    media = _Media(folder)
    summary = _summary_table(groups, metrics)
    figures = "".join(f'<img class="plot" src="{_url(p)}" alt="{html.escape(p)}">' for p in plots)
    sections = []
    for group in groups:
        pairs = [
            (c, r) for c, r in zip(clips, records) if r["system"] == group.system and r["condition"] == group.condition
        ][:rows_per_group]
        body = "".join(_clip_row(clip, record, media) for clip, record in pairs)
        sections.append(
            f'<section data-system="{html.escape(group.system)}" data-condition="{html.escape(group.condition)}">'
            f"<h2>{html.escape(group.system)} — {html.escape(group.condition)}</h2>"
            '<table class="clips"><thead><tr><th>id</th><th>reference</th><th>clone</th><th>ground truth</th>'
            f"<th>text / transcript</th><th>CER %</th><th>SECS</th></tr></thead><tbody>{body}</tbody></table>"
            "</section>"
        )
    page = (
        _TEMPLATE.replace("@TITLE@", html.escape(title))
        .replace("@SUMMARY@", summary)
        .replace("@PLOTS@", figures)
        .replace("@SECTIONS@", "".join(sections))
    )
    if media.missing:
        log.warning(
            "report.html: %d audio file(s) the tables name are missing or unreadable (shown as -), e.g. %s",
            len(media.missing),
            media.missing[0],
        )
    path = folder / PAGE
    path.write_text(page, encoding="utf-8")
    return path


def _summary_table(groups: Sequence[Group], metrics: Sequence[Metric]) -> str:
    head = "".join(f"<th>{html.escape(m.label)}</th>" for m in metrics)
    rows = []
    for g in groups:
        cells = []
        for m in metrics:
            stat = g.stats.get(m.key)
            data = f' data-metric="{m.key}"'
            if stat:
                data += f' data-mean="{_number(stat["mean"])}" data-ci95="{_number(stat["ci95"])}"'
            cells.append(f"<td{data}>{html.escape(m.cell(stat))}</td>")
        rows.append(
            f'<tr data-system="{html.escape(g.system)}" data-condition="{html.escape(g.condition)}">'
            f"<td>{html.escape(g.system)}</td><td>{html.escape(g.condition)}</td><td>{g.count}</td>"
            + "".join(cells)
            + "</tr>"
        )
    return (
        f'<table id="summary"><thead><tr><th>system</th><th>condition</th><th>n</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _clip_row(clip: Clip, record: Mapping[str, Any], media: _Media) -> str:
    players = [
        _player(media.add(path))
        for path in (clip.ref, clip.audio if clip.system != GROUND_TRUTH else None, ground_truth_of(clip))
    ]
    text = html.escape(str(record.get("text", clip.text)))
    heard = record.get("transcript")
    said = f"<div>{text}</div>" + (f'<div class="heard">heard: {html.escape(str(heard))}</div>' if heard else "")
    cer = record.get("cer")
    secs = record.get("secs")
    return (
        f"<tr><td>{html.escape(clip.id)}</td>{''.join(players)}<td>{said}</td>"
        f"<td>{'' if cer is None else f'{100 * float(cer):.1f}'}</td>"
        f"<td>{'' if secs is None else f'{float(secs):.3f}'}</td></tr>"
    )


def _player(name: str | None) -> str:
    if name is None:
        return "<td>–</td>"
    stem = name.rsplit(".", 1)[0]
    return (
        f'<td><audio controls preload="metadata" src="{FILES}/audio/{_url(name)}"></audio>'
        f'<br><img class="spec" src="{FILES}/spec/{_url(stem)}.png" alt="spectrogram"></td>'
    )


def _url(name: str) -> str:
    return urllib.parse.quote(name)


def _number(value: float) -> str:
    return json.dumps(float(value)) if math.isfinite(value) else "NaN"


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>@TITLE@</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; font-size: 0.9em; }
th { background: #f3f3f3; }
audio { width: 220px; }
img.spec { width: 220px; height: 48px; image-rendering: pixelated; }
img.plot { max-width: 32em; max-height: 300px; margin: 0 1em 1em 0; vertical-align: top; }
.heard { color: #666; font-style: italic; }
#players { color: #666; }
</style>
</head>
<body>
<h1>@TITLE@</h1>
<p>Mean ± half-width of the 95% confidence interval over clips; the numbers are report.json's.</p>
@SUMMARY@
<div>@PLOTS@</div>
<p id="players" data-loaded="0" data-failed="0" data-total="0"></p>
@SECTIONS@
<script>
(function () {
  const players = Array.from(document.querySelectorAll("audio"));
  const status = document.getElementById("players");
  let loaded = 0, failed = 0;
  function show() {
    status.dataset.loaded = loaded; status.dataset.failed = failed; status.dataset.total = players.length;
    status.textContent = loaded + " of " + players.length + " clips ready" + (failed ? ", " + failed + " failed" : "");
  }
  players.forEach(function (a) {
    if (a.readyState >= 1) { loaded++; return; }
    a.addEventListener("loadedmetadata", function () { loaded++; show(); }, { once: true });
    a.addEventListener("error", function () { failed++; show(); }, { once: true });
  });
  show();
})();
</script>
</body>
</html>
"""
