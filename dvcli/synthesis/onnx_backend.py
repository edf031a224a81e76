"""ONNX export of a joint model's inference networks, and a :class:`~dvcli.synthesis.pipeline.Backend` that runs them.

Three graphs, all with dynamic batch and length axes (opset 17):

- ``speaker.onnx``: ``wav`` ``(B, T)`` 16 kHz -> ``embedding`` ``(B, D)``: the Kaldi fbank (framing
  as a strided convolution, the DFT as two matrix products, so no FFT operator is needed) and CAM++,
  or BYOL-A's log-mel (also a strided convolution) and BYOL-A;
- ``vits_prior.onnx``: :class:`~dvcli.synthesis.pipeline.VitsPrior` (text encoder + duration predictor);
- ``vits_decoder.onnx``: :class:`~dvcli.synthesis.pipeline.VitsDecoder` (inverse flow + HiFi-GAN).

The randomness stays outside the graphs (noise tensors are inputs), so ONNX Runtime and PyTorch
produce the same audio from the same seed, to float rounding. ``export_onnx`` also writes
``onnx.json`` (the unit vocabulary and VITS configuration the graphs were made from).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dvcli.atomic import atomic_dir, atomic_write_bytes
from dvcli.audio import SAMPLE_RATE
from dvcli.errors import path_error
from dvcli.features.fbank import KaldiFbank
from dvcli.joint.model import JointModel
from dvcli.models.vits import VitsConfig
from dvcli.runtime import cache_root
from dvcli.synthesis.pipeline import VitsDecoder, VitsPrior

log = logging.getLogger(__name__)

OPSET = 17
#: Bump when the graphs change, so cached exports of older code are not reused.
EXPORT_VERSION = 1
GRAPHS = ("speaker", "vits_prior", "vits_decoder")
INFO_FILE = "onnx.json"


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


class ExportableFbank(nn.Module):
    """:class:`KaldiFbank` of one full-length batch (every row ``T`` samples), in exportable operators.

    Everything from framing to the DFT is linear in the samples of a frame -- DC removal,
    pre-emphasis, the window, the real and imaginary parts of the DFT -- so it folds into one strided
    convolution whose output channels are the real and imaginary parts; then power, mel banks, log
    and mean normalisation as in KaldiFbank (tested equal). No FFT operator is needed.
    """

    def __init__(self, fbank: KaldiFbank) -> None:
        super().__init__()
        window, fft = fbank.window_size, fbank.fft_size
        self.shift = fbank.window_shift
        self.mean_normalize = fbank.mean_normalize
        self.bins = fft // 2 + 1
        eye = torch.eye(window, dtype=torch.float64)
        dc = eye - torch.full((window, window), 1.0 / window, dtype=torch.float64)  # x - mean(x)
        previous = torch.diag(torch.ones(window - 1, dtype=torch.float64), -1)
        previous[0, 0] = 1.0  # Kaldi's pre-emphasis reuses the first sample
        emphasis = eye - fbank.preemphasis * previous
        frame_map = torch.diag(fbank.window.double()) @ emphasis @ dc  # (W, W): raw frame -> windowed frame
        samples = torch.arange(window, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * samples * torch.arange(self.bins)[None, :] / fft  # (W, bins)
        basis = torch.cat([frame_map.T @ torch.cos(angle), frame_map.T @ torch.sin(angle)], dim=1)  # (W, 2 * bins)
        self.register_buffer("kernel", basis.T.unsqueeze(1).float().contiguous(), persistent=False)  # (2 bins, 1, W)
        self.register_buffer("mel_banks", fbank.mel_banks.T.contiguous(), persistent=False)  # (bins, mels)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> ``(B, M, mels)``."""
        spectrum = nn.functional.conv1d(wav.unsqueeze(1), self.kernel, stride=self.shift)  # (B, 2 bins, M)
        power = spectrum[:, : self.bins].pow(2) + spectrum[:, self.bins :].pow(2)  # (B, bins, M)
        feats = torch.matmul(power.transpose(1, 2), self.mel_banks).clamp_min(torch.finfo(torch.float32).eps).log()
        if self.mean_normalize:
            feats = feats - feats.mean(dim=1, keepdim=True)
        return feats  # (B, M, mels)


class SpeakerGraph(nn.Module):
    """``(B, T)`` 16 kHz waveforms (each full length) -> ``(B, D)`` embeddings: fbank + CAM++ (or log-mel + BYOL-A)."""

    def __init__(self, joint: JointModel) -> None:
        super().__init__()
        features = joint.speaker.fbank
        self.features = ExportableFbank(features) if isinstance(features, KaldiFbank) else features
        self.encoder = joint.speaker.encoder

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if isinstance(self.features, ExportableFbank):
            return self.encoder(self.features(wav))
        return self.encoder(self.features.full_length(wav))


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> bytes:
    buffer = io.BytesIO()
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings and the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module,
            args,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
        )
    return buffer.getvalue()


def export_graphs(joint: JointModel) -> dict[str, bytes]:
    """The three graphs of ``joint`` (see the module docstring), serialised."""
    c = joint.generator.config
    joint.to("cpu")
    d = c.speaker_embedding_dim
    n, t = 13, 29  # example lengths; every length axis is dynamic
    units = torch.randint(0, c.n_units, (2, n))
    lengths = torch.tensor([n, n - 4])
    speaker = torch.randn(2, d)
    graphs = {
        "speaker": _export(
            SpeakerGraph(joint),
            (torch.randn(1, SAMPLE_RATE) * 0.1,),
            ["wav"],
            ["embedding"],
            {"wav": {0: "batch", 1: "samples"}, "embedding": {0: "batch"}},
        ),
        "vits_prior": _export(
            VitsPrior(joint.generator),
            (units, lengths, speaker, torch.randn(2, 2, n)),
            ["units", "unit_lengths", "speaker", "duration_noise"],
            ["log_durations", "m_p", "logs_p", "unit_mask"],
            {
                "units": {0: "batch", 1: "units"},
                "unit_lengths": {0: "batch"},
                "speaker": {0: "batch"},
                "duration_noise": {0: "batch", 2: "units"},
                "log_durations": {0: "batch", 2: "units"},
                "m_p": {0: "batch", 2: "units"},
                "logs_p": {0: "batch", 2: "units"},
                "unit_mask": {0: "batch", 2: "units"},
            },
        ),
        "vits_decoder": _export(
            VitsDecoder(joint.generator),
            (torch.randn(2, c.inter_channels, t), torch.ones(2, 1, t), speaker),
            ["z_p", "frame_mask", "speaker"],
            ["wav"],
            {
                "z_p": {0: "batch", 2: "frames"},
                "frame_mask": {0: "batch", 2: "frames"},
                "speaker": {0: "batch"},
                "wav": {0: "batch", 1: "samples"},
            },
        ),
    }
    return graphs


def read_export_config(folder: str | Path) -> VitsConfig:
    """The :class:`VitsConfig` an :func:`export_onnx` folder was made from (for ``Synthesizer(config, backend)``).

    Raises:
        UserError: no readable ``onnx.json`` in ``folder``.
    """
    path = Path(folder) / INFO_FILE
    try:
        return VitsConfig(**json.loads(path.read_text(encoding="utf-8"))["vits_config"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        raise path_error(path, "missing or unreadable", "export again with dv synthesize --export-onnx") from None


def export_onnx(joint: JointModel, folder: str | Path) -> list[Path]:
    """Write ``speaker.onnx``, ``vits_prior.onnx``, ``vits_decoder.onnx`` and ``onnx.json`` to ``folder``
    (all or nothing). Returns the written files."""
    folder = Path(folder)
    graphs = export_graphs(joint)
    info = {
        "units": dataclasses.asdict(joint.units),
        "vits_config": dataclasses.asdict(joint.generator.config),
        "model": str(joint.path),
        "opset": OPSET,
    }
    with atomic_dir(folder) as tmp:
        for name, data in graphs.items():
            atomic_write_bytes(tmp / f"{name}.onnx", data)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return [folder / f"{name}.onnx" for name in GRAPHS] + [folder / INFO_FILE]


def cache_folder(model_file: Path) -> Path:
    """Where the graphs of ``model_file`` are cached: ``$DV_CACHE`` (default ``$XDG_CACHE_HOME/dv`` or
    ``~/.cache/dv``) ``/onnx/<sha256 of the file>-v<EXPORT_VERSION>``."""
    import hashlib

    digest = hashlib.sha256()
    with open(model_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return cache_root() / "onnx" / f"{digest.hexdigest()[:24]}-v{EXPORT_VERSION}"


class OnnxBackend:
    """The three graphs in ONNX Runtime sessions on the CPU."""

    name = "onnx"

    def __init__(self, graphs: dict[str, bytes | Path], threads: int | None = None) -> None:
        import onnxruntime as ort

        threads = threads or torch.get_num_threads()

        def options(name: str) -> Any:
            # Only the decoder, where the time goes, gets a thread pool: each session's pool spins
            # after its runs, and three pools spinning on two cores made dv 1.87x piper's time at
            # 2 threads, 1.26x with one pool (bench/synth_vs_piper.py); the small graphs run on
            # the calling thread.
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads if name == "vits_decoder" else 1
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3  # errors only
            return opts

        self.sessions = {
            name: ort.InferenceSession(
                data if isinstance(data, bytes) else str(data), options(name), providers=["CPUExecutionProvider"]
            )
            for name, data in graphs.items()
        }

    @classmethod
    def from_joint(cls, joint: JointModel, threads: int | None = None) -> OnnxBackend:
        """Export ``joint`` in memory and load the graphs (a few seconds for the base model)."""
        return cls(dict(export_graphs(joint)), threads)

    @classmethod
    def cached(cls, joint: JointModel, threads: int | None = None) -> OnnxBackend:
        """Graphs of ``joint`` from the export cache (:func:`cache_folder`), exporting them on first use.

        Exporting the base model takes ~20 s; later runs load the cached graphs in a second. When the
        cache cannot be written the graphs are exported in memory for this run only.
        """
        folder = cache_folder(joint.path)
        if all((folder / f"{name}.onnx").is_file() for name in GRAPHS):
            return cls.from_folder(folder, threads)
        log.info("exporting %s to ONNX (once; cached in %s)", joint.path, folder)
        try:
            export_onnx(joint, folder)
        except OSError as err:
            log.warning("cannot cache the ONNX graphs in %s (%s); exporting for this run only", folder, err)
            return cls.from_joint(joint, threads)
        return cls.from_folder(folder, threads)

    @classmethod
    def from_folder(cls, folder: str | Path, threads: int | None = None) -> OnnxBackend:
        """Load the graphs :func:`export_onnx` wrote.

        Raises:
            UserError: a graph is missing.
        """
        folder = Path(folder)
        for name in GRAPHS:
            if not (folder / f"{name}.onnx").is_file():
                raise path_error(folder, f"no {name}.onnx here", "export one with dv synthesize --export-onnx")
        return cls({name: folder / f"{name}.onnx" for name in GRAPHS}, threads)

    def _run(self, name: str, **inputs: torch.Tensor) -> list[np.ndarray]:
        session = self.sessions[name]
        # The exporter drops inputs a graph does not use (duration noise with the deterministic predictor).
        wanted = {i.name for i in session.get_inputs()}
        return session.run(None, {k: v.detach().cpu().numpy() for k, v in inputs.items() if k in wanted})

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run("speaker", wav=wav.float())[0])

    def prior(self, units, unit_lengths, speaker, duration_noise):  # noqa: ANN001, ANN201 (see Backend)
        out = self._run(
            "vits_prior",
            units=units.long(),
            unit_lengths=unit_lengths.long(),
            speaker=speaker.float(),
            duration_noise=duration_noise.float(),
        )
        return tuple(torch.from_numpy(o) for o in out)

    def decode(self, z_p, frame_mask, speaker):  # noqa: ANN001, ANN201 (see Backend)
        return torch.from_numpy(
            self._run("vits_decoder", z_p=z_p.float(), frame_mask=frame_mask.float(), speaker=speaker.float())[0]
        )
