"""Speaker verifiers: 16 kHz clips -> L2-normalised speaker embeddings, for SECS and EER.

A verifier is anything with ``embed(wavs) -> (N, D)``. SECS (speaker-encoder cosine similarity)
must come from a verifier independent of the model under test, so the default is ``resemblyzer``
(the GE2E LSTM that YourTTS measured SECS with; its wheel ships ``pretrained.pt``). A CAM++
checkpoint (``dv pretrain-speaker`` output, a ``dv train-joint`` checkpoint holding an encoder, or a
3D-Speaker ``campplus_*.bin``) plugs in through the same interface, and other checkpoint kinds can
be added with :func:`register_verifier`.

resemblyzer is installed with ``pip install --no-deps resemblyzer`` (the Makefile does it): its
declared dependencies include ``webrtcvad``, which only builds from source, and a ``typing``
backport; the ``eval`` extra provides what it actually imports (librosa, scipy, and the
binary ``webrtcvad-wheels`` that installs the same ``webrtcvad`` module).
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from dvcli.audio import SAMPLE_RATE
from dvcli.checkpoint import KIND_KEY, load_checkpoint
from dvcli.errors import UserError, path_error

log = logging.getLogger(__name__)

RESEMBLYZER = "resemblyzer"


class SpeakerVerifier(Protocol):
    """Embeds clips of speech so that same-speaker clips have a high cosine similarity."""

    name: str

    def embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """``N`` clips ``(T_i,)`` float32 at 16 kHz -> ``(N, D)`` float32, each row of unit norm.

        A clip with no signal (all zeros) gives a row of NaN, so its similarities are left out.
        """
        ...


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``(N, D)`` and ``(N, D)`` (or ``(D,)``) embeddings -> ``(N,)``."""
    a = np.atleast_2d(a).astype(np.float64)
    b = np.atleast_2d(b).astype(np.float64)
    num = (a * b).sum(-1)
    return num / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


class Resemblyzer:
    """resemblyzer's ``VoiceEncoder`` (3-layer LSTM, 256-d) with its own preprocessing (level, VAD trim)."""

    name = RESEMBLYZER
    dim = 256

    def __init__(self, device: str = "cpu") -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # its scipy.ndimage.morphology import
                from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as err:
            raise UserError(
                f"--verifier resemblyzer: cannot import resemblyzer ({err}); install it with "
                "`pip install 'dino-vits[eval]' && pip install --no-deps resemblyzer==0.1.4`"
            ) from None
        self._preprocess = preprocess_wav
        self.encoder = VoiceEncoder(device, verbose=False)
        # librosa imports half of scipy on its first spectrogram: pay that here, not in the first clip's timing.
        self.embed([np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1])

    def embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        # One thread: a small LSTM synchronises its threads at every one of its 3 x 160 steps, which
        # made it 4-40x slower with 2 threads on a busy 2-core machine (38 ms -> 0.16-1.5 s a clip).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._embed(wavs)
        finally:
            torch.set_num_threads(threads)

    def _embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for wav in wavs:
            wav = np.asarray(wav, dtype=np.float32)
            if not np.any(wav):
                rows.append(np.full(self.dim, np.nan, dtype=np.float32))
                continue
            trimmed = self._preprocess(wav)  # 16 kHz in, so no resampling: level to -30 dBFS, long pauses cut
            if len(trimmed) < 1600:  # the VAD found (almost) no speech: embed what there is
                trimmed = wav
            rows.append(self.encoder.embed_utterance(trimmed).astype(np.float32))
        return np.stack(rows)


class CampplusVerifier:
    """A dv speaker encoder behind :class:`dvcli.speaker.encoder.SpeakerFrontend`: CAM++ (Kaldi fbank,
    mean-normalised), or BYOL-A (log-mel) for a BYOL-A file or a joint model conditioned on one."""

    def __init__(self, frontend: Any, name: str) -> None:
        self.frontend = frontend
        self.name = name

    def embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        clips = [np.asarray(w, dtype=np.float32) for w in wavs]
        silent = [not np.any(c) for c in clips]
        live = [c for c, quiet in zip(clips, silent) if not quiet]
        dim = self.frontend.embedding_size
        rows = np.full((len(clips), dim), np.nan, dtype=np.float32)
        if live:
            emb = self.frontend.embed(live).float().cpu().numpy()
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            rows[[i for i, quiet in enumerate(silent) if not quiet]] = emb
        return rows


#: Builds a verifier from a loaded checkpoint object: ``(obj, path, device) -> verifier``.
VerifierLoader = Callable[[Any, Path, str], SpeakerVerifier]
_LOADERS: dict[str, VerifierLoader] = {}


def register_verifier(kind: str, loader: VerifierLoader) -> None:
    """Let checkpoints whose ``dv_kind`` is ``kind`` serve as speaker verifiers."""
    _LOADERS[kind] = loader


@functools.lru_cache(maxsize=4)
def load_verifier(spec: str, device: str = "cpu") -> SpeakerVerifier:
    """``resemblyzer`` or a checkpoint path; loaded once per process.

    Raises:
        UserError: missing package, unreadable checkpoint, or a checkpoint that holds no speaker encoder.
    """
    if spec == RESEMBLYZER:
        return Resemblyzer(device)
    path = Path(spec)
    if path.is_dir():  # an output folder: the encoder file it publishes
        found = [path / name for name in VERIFIER_FILES if (path / name).is_file()]
        if not found:
            raise path_error(path, f"holds none of {', '.join(VERIFIER_FILES)}", "give a dv output folder or the file")
        path = found[0]
    obj = load_checkpoint(path)
    kind = obj.get(KIND_KEY) if isinstance(obj, Mapping) else None
    if kind in _LOADERS:
        return _LOADERS[kind](obj, path, device)
    if _find_campplus_state(obj) is not None:
        return _campplus_verifier(obj, path, device)
    from dvcli.models.byola import body_state_from_upstream

    if isinstance(obj, Mapping) and body_state_from_upstream(obj) is not None:
        raise path_error(
            path,
            "is a bare BYOL-A body, without the normalisation statistics and projection dv needs",
            f"dv pretrain-speaker MANIFEST --objective byol-a --init {path} --steps 0 -o OUT, then --verifier OUT",
        )
    raise path_error(
        path,
        f"holds no speaker encoder that dv can run (checkpoint kind: {kind or 'unknown'})",
        "give --verifier resemblyzer, a CAM++ or BYOL-A checkpoint (campplus.pt, byola.pt), or a joint model.pt",
    )


#: What ``--verifier FOLDER`` looks for, in order: a joint model, a CAM++, a BYOL-A encoder.
VERIFIER_FILES = ("model.pt", "campplus.pt", "byola.pt")


_CAMPPLUS_KEY = "xvector.dense.linear.weight"


def _find_campplus_state(obj: Any, depth: int = 0) -> dict[str, torch.Tensor] | None:
    """The CAM++ state dict inside ``obj`` (3D-Speaker's bare one, or nested/prefixed in a dv checkpoint)."""
    if not isinstance(obj, Mapping):
        return None
    for key in obj:
        if isinstance(key, str) and key.endswith(_CAMPPLUS_KEY):
            prefix = key[: -len(_CAMPPLUS_KEY)]
            return {k[len(prefix) :]: v for k, v in obj.items() if isinstance(k, str) and k.startswith(prefix)}
    if depth >= 2:
        return None
    # The student encoder is what the synthesizer uses; prefer it over an EMA teacher.
    for key in sorted(obj, key=lambda k: "teacher" in str(k)):
        found = _find_campplus_state(obj[key], depth + 1)
        if found is not None:
            return found
    return None


def _campplus_verifier(obj: Any, path: Path, device: str) -> SpeakerVerifier:
    state = _find_campplus_state(obj)
    if state is None:
        raise path_error(path, "holds no CAM++ weights")
    return _encoder_verifier(state, path, device)


def _encoder_verifier(obj: Any, path: Path, device: str) -> SpeakerVerifier:
    """A dv speaker-encoder file (BYOL-A's ``byola.pt``) or a joint ``model.pt``: whichever encoder it holds."""
    from dvcli.models.campplus import CAMPPlus
    from dvcli.speaker.encoder import SpeakerFrontend, load_speaker_encoder

    held = obj.get("speaker", obj)  # a joint model keeps its encoder under "speaker"
    try:
        encoder = load_speaker_encoder(held)
    except UserError as err:
        raise path_error(path, str(err).split(": ", 1)[-1]) from None
    frontend = SpeakerFrontend(encoder).to(device).eval()
    kind = "campplus" if isinstance(encoder, CAMPPlus) else "byol-a"
    return CampplusVerifier(frontend, name=f"{kind}:{path.name}")


register_verifier("campplus", _campplus_verifier)
register_verifier("byol-a", _encoder_verifier)
register_verifier("dino-vits", _encoder_verifier)
