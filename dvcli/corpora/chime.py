"""The CHiME-3 corpus (Barker et al. 2015), the noisy test set of the DINO-VITS paper.

Read from its ``data/`` tree (the corpus root, or its ``data`` folder, may be given):

- audio: ``audio/16kHz/isolated/SET_ENV_real/SPK_WSJNAME_ENV.CHn.wav`` for the real noisy
  recordings (SET ``tr05|dt05|et05``; ENV ``bus|caf|ped|str``; channels 1-6 on the tablet, 0 the
  close-talking microphone) and ``SET_bth/SPK_WSJNAME_BTH.CH0.wav`` for the booth (clean) ones;
  one channel is kept: ``chime_channel`` (5, the one Kaldi's 1-channel CHiME-4 recipe uses) for
  the noisy recordings, the close-talking CH0 for the booth. The simulated ``*_simu`` folders are
  not read.
- text: the ``.dot`` transcriptions (``transcriptions/*.dot*``, lines ``TEXT (ID)``, ID
  ``SPK_WSJNAME_ENV`` or ``WSJNAME``), with WSJ's bracketed noise and punctuation marks removed.
- ``condition``: ``booth`` for the booth recordings; ``bus``, ``cafe``, ``pedestrian`` or
  ``street`` for the noisy ones. The utterance id is ``SPK_WSJNAME_ENV``; the speaker, ``SPK``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from dvcli.corpora.entry import CorpusEntry, CorpusOptions
from dvcli.errors import UserError
from dvcli.manifest import read_utf8

CONDITIONS = {"bth": "booth", "bus": "bus", "caf": "cafe", "ped": "pedestrian", "str": "street"}
_FOLDER = re.compile(r"^(?P<set>tr05|dt05|et05)_(?P<env>bth|bus_real|caf_real|ped_real|str_real)$")
_FILE = re.compile(r"^(?P<spk>[^_]+)_(?P<wsj>[^_]+)_(?P<env>[A-Z]+)\.CH(?P<ch>\d)$", re.IGNORECASE)
_DOT_LINE = re.compile(r"^(?P<text>.*)\((?P<id>[^()]+)\)\s*$")
_MARKUP = re.compile(r"\[[^\]]*\]|<[^>]*>|[~*\\\"]")


def data_root(source: Path) -> Path | None:
    """The folder holding ``audio/16kHz/isolated`` (``source`` or ``source/data``), or None."""
    for root in (source, source / "data"):
        if (root / "audio" / "16kHz" / "isolated").is_dir():
            return root
    return None


def _transcripts(root: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    folder = root / "transcriptions"
    for path in sorted(folder.glob("*.dot*")) if folder.is_dir() else []:
        for line in read_utf8(path).splitlines():
            match = _DOT_LINE.match(line.strip())
            if match:
                texts[match["id"].strip().lower()] = " ".join(_MARKUP.sub(" ", match["text"]).split())
    return texts


def scan_chime3(source: Path, options: CorpusOptions) -> Iterator[CorpusEntry]:
    """The booth and real noisy recordings, one channel each (see the module docstring).

    Raises:
        UserError: no ``audio/16kHz/isolated`` folder below ``source``.
    """
    root = data_root(source)
    if root is None:
        raise UserError(f"{source}: not a CHiME-3 folder (expected data/audio/16kHz/isolated below it)")
    texts = _transcripts(root)
    for folder in sorted((root / "audio" / "16kHz" / "isolated").iterdir()):
        kind = _FOLDER.match(folder.name)
        if not kind or not folder.is_dir():
            continue
        booth = kind["env"] == "bth"
        for path in sorted(folder.glob("*.wav")):
            match = _FILE.match(path.stem)
            if not match or int(match["ch"]) != (0 if booth else options.chime_channel):
                continue
            spk, wsj, env = match["spk"], match["wsj"], match["env"].lower()
            uid = f"{spk}_{wsj}_{env.upper()}"
            text = texts.get(uid.lower(), texts.get(wsj.lower(), ""))
            yield CorpusEntry(uid, path, spk, text, condition=CONDITIONS.get(env, env))
