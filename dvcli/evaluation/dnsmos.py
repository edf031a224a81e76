"""DNSMOS (Reddy et al., 2022): a non-intrusive MOS estimate of speech quality, as an automatic proxy.

Runs the ONNX models that the ``speechmos`` wheel ships (the P.835 ``sig_bak_ovr`` model and the
P.808 model of Microsoft's DNS challenge) through ``speechmos``'s own scoring, which reproduces
Microsoft's reference script: clips shorter than 9.01 s are tiled to that length, longer ones are
scored in 9.01 s windows with a 1 s hop and averaged, and the raw P.835 outputs pass through the
published polynomial calibration. Scores are on the 1-5 MOS scale.

Cost: one model run per window, so a clip whose doubled length lands just under 9.01 s (1.12 s ->
8.96 s -> 17.9 s: 8 windows) costs up to 8 times more than its neighbours (1.13 s: one window).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dvcli.audio import SAMPLE_RATE
from dvcli.errors import UserError

if TYPE_CHECKING:
    import onnxruntime

#: The models' window: shorter clips are tiled (by doubling) past it, longer ones hop through it by 1 s.
INPUT_SECONDS = 9.01
#: Keys of a DNSMOS result: overall quality, speech signal, background noise (P.835), and P.808 MOS.
DNSMOS_KEYS = ("ovrl", "sig", "bak", "p808")


class DNSMOS:
    """Scores 16 kHz clips; the two ONNX sessions are built once."""

    def __init__(self, personalized: bool = False) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import speechmos
                from speechmos.dnsmos import DNSMOS as _Reference
        except ImportError as err:
            raise UserError(
                f"DNSMOS needs the speechmos package and librosa ({err}): pip install 'dino-vits[eval]'"
            ) from None
        root = Path(speechmos.__file__).parent
        primary = root / ("pdnsmos_models" if personalized else "dnsmos_models") / "sig_bak_ovr.onnx"
        p808 = root / "dnsmos_models" / "model_v8.onnx"
        self._model = _Reference(str(primary), str(p808))
        # Rebuild its sessions without busy-waiting threads: onnxruntime's default spin-wait keeps
        # the cores busy after each call and slows whatever runs next (ASR, the speaker verifier)
        # several-fold on a small machine.
        self._model.onnx_sess = _session(primary)
        self._model.p808_onnx_sess = _session(p808)
        self._personalized = personalized
        # Warm-up (librosa's lazy imports, onnxruntime's first run) on exactly one window: a shorter
        # clip would be tiled past 9.01 s and cost several windows.
        self.score(np.zeros(int(INPUT_SECONDS * SAMPLE_RATE), dtype=np.float32))

    def score(self, wav: np.ndarray) -> dict[str, float]:
        """``(T,)`` float32 at 16 kHz -> ``{"ovrl", "sig", "bak", "p808"}`` on the 1-5 scale.

        Raises:
            ValueError: an empty clip.
        """
        wav = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
        if len(wav) == 0:
            raise ValueError("empty clip")
        result = self._model(wav, SAMPLE_RATE, self._personalized)
        return {
            "ovrl": float(result["ovrl_mos"]),
            "sig": float(result["sig_mos"]),
            "bak": float(result["bak_mos"]),
            "p808": float(result["p808_mos"]),
        }


def _session(path: Path) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=2)
def load_dnsmos(personalized: bool = False) -> DNSMOS:
    """The DNSMOS scorer, built once per process."""
    return DNSMOS(personalized)
