"""The speaker encoder as other stages use it: load one, turn waveforms into embeddings.

Two architectures serve as speaker encoders (:data:`SpeakerEncoder`): CAM++ (the paper's, Kaldi fbank
input) and BYOL-A (the frozen generic baseline of the paper's Table 1, log-mel input,
:mod:`dvcli.models.byola`). Each saved ``model_config`` says which: BYOL-A's carries ``arch: byol-a``.

Public API (joint training, synthesis and evaluation build on these):

- :func:`load_speaker_encoder` ``(source) -> SpeakerEncoder``: a ``dv pretrain-speaker`` output folder,
  its ``campplus.pt`` or ``byola.pt``, one of its training checkpoints, a raw 3D-Speaker
  ``campplus_*.bin`` state dict, or an already-loaded state dict; the architecture is rebuilt from the file.
- :func:`build_speaker_encoder` ``(model_config) -> SpeakerEncoder``: an untrained one from a saved config.
- :class:`SpeakerFrontend` ``(encoder)``: an ``nn.Module`` from 16 kHz waveforms ``(B, T)`` to
  embeddings ``(B, D)`` (the encoder's features, then the encoder). ``forward`` is differentiable (for
  training the encoder jointly); :meth:`SpeakerFrontend.embed` is the no-grad inference helper that
  also takes a list of clips of different lengths: ``embed(wavs) -> (N, D)``.
- :func:`export_onnx` ``(encoder, path)``: the encoder (fbank frames in, embedding out) as an ONNX
  graph for ONNX Runtime deployments (about 3-4x faster than eager PyTorch on one CPU core).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dvcli.atomic import atomic_write_bytes
from dvcli.audio import SAMPLE_RATE, tile_to
from dvcli.checkpoint import KIND_KEY, load_checkpoint
from dvcli.errors import UserError, path_error
from dvcli.features.fbank import KaldiFbank
from dvcli.models.byola import ARCH as BYOLA_ARCH
from dvcli.models.byola import ByolaConfig, ByolaEncoder, ByolaLogMel, body_state_from_upstream
from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig, config_from_state_dict

log = logging.getLogger(__name__)

#: ``dv_kind`` of the encoder file ``dv pretrain-speaker`` publishes (``OUT/campplus.pt``).
ENCODER_KIND = "campplus"
#: ``dv_kind`` of its training checkpoints (``OUT/checkpoints/checkpoint-*.pt``).
TRAIN_KIND = "pretrain-speaker"
ENCODER_FILE = "campplus.pt"
#: The encoder weights alone, as a plain state dict in 3D-Speaker's layout.
PLAIN_FILE = "campplus.bin"
#: ``dv_kind`` and file of a BYOL-A encoder (``dv pretrain-speaker --objective byol-a``).
BYOLA_KIND = "byol-a"
BYOLA_FILE = "byola.pt"
#: BYOL-A's body alone, in the layout of BYOL-A's own ``AudioNTT2020-BYOLA-*.pth`` files.
BYOLA_PLAIN_FILE = "byola.pth"

#: A speaker encoder: ``forward((B, T, feat_dim) features) -> (B, embedding_size)``, with ``config``,
#: ``embedding_size`` and ``last_layer_parameters()``.
SpeakerEncoder = CAMPPlus | ByolaEncoder


def build_speaker_encoder(model_config: Mapping[str, Any]) -> SpeakerEncoder:
    """An untrained encoder of a saved ``model_config`` (BYOL-A's when ``arch`` is ``byol-a``, else CAM++)."""
    if model_config.get("arch") == BYOLA_ARCH:
        return ByolaEncoder(ByolaConfig(**model_config))
    return CAMPPlus(CAMPPlusConfig(**model_config))


def speaker_features(encoder: SpeakerEncoder) -> nn.Module:
    """The features ``encoder`` reads: ``(B, T)`` waveforms, lengths -> ``(B, M, feat_dim)``, frames."""
    if isinstance(encoder, ByolaEncoder):
        return ByolaLogMel(encoder.config)
    return KaldiFbank(encoder.config.feat_dim)


def load_speaker_encoder(
    source: str | Path | Mapping[str, Any], *, map_location: str | torch.device = "cpu"
) -> SpeakerEncoder:
    """Build a :class:`CAMPPlus` or :class:`ByolaEncoder` from a file, folder or state dict, in eval mode.

    Args:
        source: a ``dv pretrain-speaker`` output folder (reads ``campplus.pt`` or ``byola.pt``), either file,
            a training checkpoint (``checkpoint-*.pt``), a 3D-Speaker ``campplus_*.bin`` (plain
            state dict; ``module.`` prefixes are stripped), or a dict holding any of these.
        map_location: where the weights go.

    Raises:
        UserError: missing or unsafe file, a checkpoint of another kind, or weights that do not
            fit a CAM++ (names the file and the first mismatching keys).
    """
    name = "state dict" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        obj: Any = source
    else:
        path = Path(source)
        if path.is_dir():
            found = [path / f for f in (ENCODER_FILE, BYOLA_FILE) if (path / f).is_file()]
            if not found:
                raise path_error(
                    path,
                    f"no {ENCODER_FILE} or {BYOLA_FILE} in this folder",
                    "give a `dv pretrain-speaker` output folder",
                )
            path = found[0]
        name = str(path)
        obj = load_checkpoint(path, map_location=map_location)
    state, config = _unpack(obj, name)
    model = ByolaEncoder(config) if isinstance(config, ByolaConfig) else CAMPPlus(config)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        detail = ", ".join(
            [f"missing {k}" for k in result.missing_keys[:2]] + [f"unexpected {k}" for k in result.unexpected_keys[:2]]
        )
        what = "a BYOL-A encoder" if isinstance(model, ByolaEncoder) else "a CAM++"
        raise UserError(f"{name}: weights do not fit {what} ({detail})")
    return model.eval()


def _unpack(obj: Any, name: str) -> tuple[dict[str, torch.Tensor], CAMPPlusConfig | ByolaConfig]:
    if not isinstance(obj, Mapping):
        raise UserError(f"{name}: not a state dict or a dv speaker checkpoint")
    kind = obj.get(KIND_KEY)
    if kind is not None and kind not in (ENCODER_KIND, BYOLA_KIND, TRAIN_KIND):
        raise UserError(f"{name}: is a '{kind}' checkpoint, expected a speaker encoder ('{ENCODER_KIND}')")
    config: CAMPPlusConfig | ByolaConfig | None = None
    if "model" in obj and isinstance(obj["model"], Mapping):
        state = dict(obj["model"])
        saved = obj.get("model_config")
        if isinstance(saved, Mapping) and saved.get("arch") == BYOLA_ARCH:
            config = ByolaConfig(**saved)
        elif saved is not None:
            config = CAMPPlusConfig(**saved)
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        state, config = dict(obj["state_dict"]), None
    else:
        state, config = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}, None
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    if config is None and body_state_from_upstream(state) is not None:
        raise UserError(
            f"{name}: a bare BYOL-A encoder, without the normalisation statistics and projection dv needs; "
            f"make it usable with: dv pretrain-speaker MANIFEST --objective byol-a --init {name} --steps 0 -o OUT"
        )
    if config is None:
        try:
            config = config_from_state_dict(state)
        except KeyError as err:
            raise UserError(f"{name}: not a CAM++ state dict (no {err.args[0]})") from None
    return state, config


#: The shortest audio (seconds) dv gives CAM++: references shorter than this are refused, training
#: crops must be at least this long, and :meth:`SpeakerFrontend.embed` tiles shorter clips to it.
MIN_SECONDS = 0.5


class SpeakerFrontend(nn.Module):
    """16 kHz waveforms -> speaker embeddings: the encoder's features (:func:`speaker_features`: Kaldi
    fbank, 80 bins, mean-normalised, for CAM++; log-mel for BYOL-A), then the encoder.

    Args:
        encoder: a :data:`SpeakerEncoder` (e.g. from :func:`load_speaker_encoder`).
        min_seconds: :meth:`embed` tiles clips shorter than this (CAM++ needs a few frames).
    """

    def __init__(self, encoder: SpeakerEncoder, *, min_seconds: float = MIN_SECONDS) -> None:
        super().__init__()
        self.encoder = encoder
        self.fbank = speaker_features(encoder)
        self.min_samples = int(min_seconds * SAMPLE_RATE)

    @classmethod
    def from_pretrained(cls, source: str | Path | Mapping[str, Any], **kwargs: Any) -> SpeakerFrontend:
        """:func:`load_speaker_encoder` wrapped in a frontend (eval mode)."""
        return cls(load_speaker_encoder(source), **kwargs).eval()

    @property
    def embedding_size(self) -> int:
        return self.encoder.embedding_size

    def features(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T)`` -> ``(B, M, feat_dim)`` features and ``(B,)`` frame counts (in float32)."""
        with torch.autocast(wavs.device.type, enabled=False):
            return self.fbank(wavs.float(), lengths)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T)`` 16 kHz waveforms (zero-padded past ``lengths``) -> ``(B, D)`` embeddings.

        Rows of different lengths are encoded in groups of equal length, so a row's embedding
        never depends on the padding or on its batch mates (in eval mode). Differentiable with
        respect to the encoder's parameters (and to ``wavs``, when they require it).
        """
        feats, frames = self.features(wavs, lengths)
        if lengths is None or bool((frames == frames[0]).all()):
            return self.encoder(feats[:, : int(frames[0])])
        out = feats.new_zeros(wavs.shape[0], self.embedding_size)
        for count in frames.unique().tolist():
            rows = (frames == count).nonzero().squeeze(1)
            out = out.index_copy(0, rows, self.encoder(feats[rows, :count]).to(out.dtype))
        return out

    @torch.no_grad()
    def embed(
        self,
        wavs: torch.Tensor | Sequence[torch.Tensor | np.ndarray],
        lengths: torch.Tensor | None = None,
        *,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Embeddings of a batch or a list of clips, in eval mode, without gradients.

        Args:
            wavs: ``(N, T)`` (with optional ``lengths``) or a list of ``(T_i,)`` clips at 16 kHz.
            batch_size: clips per forward pass (equal lengths are grouped together).

        Returns:
            ``(N, D)`` float32 on the encoder's device (not normalised; cosine-score them).
        """
        device = next(self.parameters()).device
        if isinstance(wavs, torch.Tensor) and wavs.dim() == 2:
            sizes = lengths.tolist() if lengths is not None else [wavs.shape[1]] * wavs.shape[0]
            clips = [wavs[i, : int(n)] for i, n in enumerate(sizes)]
        else:
            clips = [
                torch.as_tensor(np.asarray(w, dtype=np.float32)) if not isinstance(w, torch.Tensor) else w for w in wavs
            ]
        clips = [self._tile(c.float().reshape(-1)) for c in clips]
        was_training = self.training
        self.eval()
        try:
            out = torch.zeros(len(clips), self.embedding_size, device=device)
            by_length: dict[int, list[int]] = {}
            for i, clip in enumerate(clips):
                by_length.setdefault(clip.shape[0], []).append(i)
            for rows in by_length.values():
                for start in range(0, len(rows), batch_size):
                    chunk = rows[start : start + batch_size]
                    batch = torch.stack([clips[i] for i in chunk]).to(device)
                    out[chunk] = self(batch).float()
        finally:
            self.train(was_training)
        return out

    def _tile(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.numel() == 0:
            raise ValueError("cannot embed an empty clip")
        return clip if clip.shape[0] >= self.min_samples else tile_to(clip, self.min_samples)


def export_onnx(encoder: CAMPPlus, path: str | Path | None = None) -> bytes:
    """CAM++ as ONNX: input ``feats`` ``(batch, frames, 80)`` mean-normalised fbank (dynamic batch
    and frames), output ``embedding`` ``(batch, D)``. Written atomically to ``path`` when given;
    the serialized model is returned either way. The fbank stays outside (:class:`KaldiFbank`).
    """
    buffer = io.BytesIO()
    was_training = encoder.training
    encoder.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
            torch.onnx.export(
                encoder,
                (torch.zeros(1, 200, encoder.config.feat_dim),),
                buffer,
                dynamo=False,
                input_names=["feats"],
                output_names=["embedding"],
                dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
            )
    finally:
        encoder.train(was_training)
    data = buffer.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)
    return data
