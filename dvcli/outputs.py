"""Stage output folders: artifacts + the resolved ``config.yaml`` + ``meta.json``, all or nothing."""

from __future__ import annotations

import contextlib
import datetime as _dt
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dvcli.atomic import META_FILE, atomic_dir, write_json
from dvcli.config import save_config
from dvcli.runtime import git_revision, versions

CONFIG_FILE = "config.yaml"


@contextlib.contextmanager
def stage_output(
    out: str | Path,
    *,
    stage: str,
    config: Any,
    inputs: Mapping[str, Any] | None = None,
    replace: bool = True,
) -> Iterator[Path]:
    """Fill a stage's output folder under a temporary name; publish it complete or not at all.

    Yields the temporary folder to write artifacts into. On success ``config.yaml`` and then
    ``meta.json`` (the done-marker) are written and the folder is renamed to ``out``; on any
    exception nothing appears at ``out``. Call :func:`add_meta` with the yielded folder to record
    counts or metrics in ``meta.json``.
    """
    with atomic_dir(out, replace=replace) as tmp:
        _extra_meta[tmp] = {}
        try:
            yield tmp
            save_config(config, tmp / CONFIG_FILE)
            meta = {
                "stage": stage,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "command": sys.argv,
                "git": git_revision(),
                "versions": versions(),
                "inputs": {k: str(v) for k, v in (inputs or {}).items()},
                **_extra_meta[tmp],
            }
            write_json(tmp / META_FILE, meta)
        finally:
            _extra_meta.pop(tmp, None)


_extra_meta: dict[Path, dict[str, Any]] = {}


def add_meta(folder: Path, **fields: Any) -> None:
    """Record extra fields (counts, metrics) for the ``meta.json`` of a folder being written."""
    _extra_meta.setdefault(folder, {}).update(fields)


def write_model_card(
    folder: Path, *, title: str, summary: str, facts: Mapping[str, Any], usage: str, files: Mapping[str, str]
) -> None:
    """``folder/README.md``: a model card, so that the folder explains itself once shared (a git
    repository of it is what ``dv synthesize --model`` reads).

    Args:
        title: the heading. summary: one paragraph on what the model is.
        facts: what it was trained on and how (data, steps, sizes) and what it scored, in order.
        usage: the shell command that uses it. files: the folder's files and what each holds.
    """
    command = " ".join(["dv", *sys.argv[1:]]) if Path(sys.argv[0]).name == "dv" else None
    lines = [f"# {title}", "", summary, "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in facts.items()]
    lines += ["", "## Use", "", f"    {usage}", "", "## Files", ""]
    lines += [f"- `{name}`: {what}" for name, what in files.items()]
    lines += ["", "## How it was made", ""]
    if command:
        lines += [f"    {command}", ""]
    lines += [
        f"Every setting is in `{CONFIG_FILE}` (`--config {CONFIG_FILE}` repeats the run); versions and inputs "
        f"in `{META_FILE}`. Written by dv {versions()['dv']} on {_dt.date.today().isoformat()}.",
    ]
    (folder / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
