"""The reference clip of zero-shot synthesis: load any audio file, check it, trim it, level it.

:func:`load_reference` reads any format, rate or channel count (16 kHz mono out; see
:func:`dvcli.audio.downmix`), then

1. refuses what no speaker embedding can come from: clips shorter than ``min_seconds`` (0.5 s) and
   digital silence;
2. removes DC offset and rumble below 20 Hz (cheap phone microphones and call recorders add both),
   then, with ``denoise``, enhances the clip (:mod:`dvcli.denoise`: the paper's denoiser front-end);
3. finds the speech with a voice-activity detector (:func:`voiced_frames`: WebRTC's GMM detector from
   the ``webrtcvad`` module, ``webrtcvad-wheels`` on PyPI, confirmed by frame energy above the clip's
   noise floor), so a short utterance inside long silence or quiet noise is found; a clip with less
   than ``min_speech_seconds`` of speech is refused;
4. keeps the speech with ``vad_margin_seconds`` of context around each stretch: the edges are
   trimmed and long pauses shortened (:func:`keep_speech`);
5. crops to ``max_seconds`` (the paper scores clones from 3 s references) and refuses a crop without
   enough speech in it;
6. scales the clip so its speech frames sit at ``target_dbfs`` RMS (peaks kept below 0 dBFS).

With ``vad`` off, steps 3-5 keep the whole clip (cropped to ``max_seconds``) and a clip whose frame
levels barely vary only draws a warning that it sounds like steady noise.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from dvcli.audio import SAMPLE_RATE, load_audio
from dvcli.denoise import load_denoiser
from dvcli.errors import path_error
from dvcli.speaker.encoder import MIN_SECONDS

log = logging.getLogger(__name__)

#: Analysis frames of the energy detector: 20 ms.
FRAME = SAMPLE_RATE // 50


@dataclasses.dataclass(kw_only=True)
class ReferenceOptions:
    """How a reference clip is prepared."""

    max_seconds: float = 0.0  # keep at most this much (after trimming); 0 = all of it
    min_seconds: float = MIN_SECONDS  # shorter clips are refused (CAM++'s minimum)
    vad: bool = True  # keep only the speech (voice-activity detection); off = the whole clip
    min_speech_seconds: float = 0.5  # less detected speech than this (in the clip, or in the crop) is refused
    vad_aggressiveness: int = 3  # WebRTC detector mode, 0 (keeps most) .. 3 (fewest false alarms on noise)
    vad_margin_seconds: float = 0.09  # context kept around each stretch of speech (pauses up to twice this stay whole)
    target_dbfs: float = -20.0  # RMS level of the speech frames after normalisation
    silence_dbfs: float = -70.0  # a clip whose loudest frame is below this is silent
    vad_floor_db: float = 40.0  # without vad: frames this far below the loudest (95th percentile) set no level
    noise_range_db: float = 4.0  # without vad: frame energies spread less than this (p95 - p10) -> warning
    denoise: str = "none"  # enhance the clip first: none, dfn3 (DeepFilterNet3) or rnnoise (dvcli.denoise)


@dataclasses.dataclass
class Reference:
    """A prepared reference clip."""

    wav: torch.Tensor  # (T,) float32, 16 kHz, level-normalised
    source_seconds: float  # length of the file as read
    trimmed_seconds: float  # removed as non-speech (edges and shortened pauses), before any crop
    noise_only: bool  # without vad: looked like noise with no speech (a warning was logged)
    speech_seconds: float | None = None  # detected speech in the prepared clip (None without vad)

    @property
    def seconds(self) -> float:
        return self.wav.shape[0] / SAMPLE_RATE


def frame_energies_db(wav: torch.Tensor, frame: int = FRAME) -> np.ndarray:
    """RMS level of consecutive ``frame``-sample frames in dBFS: ``(frames,)`` (the tail is a short frame)."""
    x = wav.double().numpy()
    count = -(-x.shape[0] // frame)
    padded = np.zeros(count * frame)
    padded[: x.shape[0]] = x
    frames = padded.reshape(count, frame)
    sizes = np.full(count, frame, dtype=np.float64)
    sizes[-1] = x.shape[0] - (count - 1) * frame
    power = (frames**2).sum(1) / sizes
    return 10 * np.log10(power + 1e-12)


#: Voice-activity frames: 30 ms, the longest frame WebRTC's detector takes.
VAD_FRAME = SAMPLE_RATE * 30 // 1000


def remove_dc(wav: torch.Tensor) -> torch.Tensor:
    """``(T,)`` 16 kHz -> the same with DC offset and rumble below 20 Hz removed (2nd-order high-pass)."""
    import torchaudio.functional as AF

    return AF.highpass_biquad(wav - wav.mean(), SAMPLE_RATE, 20.0)


def voiced_frames(wav: torch.Tensor, aggressiveness: int = 3) -> np.ndarray:
    """Which 30 ms frames of a 16 kHz clip ``(T,)`` hold speech: ``(T // 480,)`` bool.

    A frame is speech when WebRTC's detector (``webrtcvad``, mode ``aggressiveness``) says so *and*
    its level is at least 6 dB above the clip's noise floor (10th-percentile frame) -- the detector
    alone fires on steady noise (on white noise at -30 dBFS, 57% of the frames in its strictest
    mode). The detector is level-dependent, so it hears the clip scaled to put its loudest frames at
    -10 dBFS; the clip itself is not changed.
    """
    import webrtcvad

    x = wav.double().numpy()
    count = x.shape[0] // VAD_FRAME
    if count == 0:
        return np.zeros(0, dtype=bool)
    frames = x[: count * VAD_FRAME].reshape(count, VAD_FRAME)
    energies = 10 * np.log10((frames**2).mean(1) + 1e-12)
    loud = float(np.percentile(energies, 99))
    gain = 10 ** ((-10.0 - loud) / 20)
    pcm = np.clip(np.round(frames * gain * 32767), -32768, 32767).astype("<i2")
    detector = webrtcvad.Vad(aggressiveness)
    flags = np.fromiter((detector.is_speech(f.tobytes(), SAMPLE_RATE) for f in pcm), dtype=bool, count=count)
    floor = float(np.percentile(energies, 10))
    return flags & (energies >= floor + 3.0)


def keep_speech(wav: torch.Tensor, voiced: np.ndarray, margin_frames: int) -> tuple[torch.Tensor, np.ndarray]:
    """The speech of ``wav`` ``(T,)``: every frame within ``margin_frames`` of a voiced one.

    Leading and trailing non-speech goes, and a pause longer than twice the margin shrinks to twice
    the margin. Returns the kept samples and the voiced flags of the kept frames.
    """
    if not voiced.any():
        return wav, voiced
    window = np.ones(2 * margin_frames + 1)
    keep = np.convolve(voiced.astype(float), window, mode="same") > 0
    samples = torch.from_numpy(np.repeat(keep, VAD_FRAME))
    tail = wav[voiced.shape[0] * VAD_FRAME :] if keep[-1] else wav[:0]
    return torch.cat([wav[: voiced.shape[0] * VAD_FRAME][samples], tail]), voiced[keep]


def _refuse_no_speech(name: str | Path, speech: float, where: str) -> None:
    raise path_error(
        name,
        f"no speech found {where} (the voice-activity detector heard {speech:.2f} s)",
        "give a clip in which the voice can be heard, or --no-vad to use the clip as it is",
    )


def prepare_reference(wav: torch.Tensor, options: ReferenceOptions, *, name: str | Path = "reference") -> Reference:
    """Check, clean, trim, crop and level a 16 kHz mono clip ``(T,)`` (see the module docstring).

    Raises:
        UserError: the clip is shorter than ``options.min_seconds``, silent, or (with ``vad``) holds
            less than ``options.min_speech_seconds`` of speech, in all or in the ``max_seconds`` kept
            (names ``name``).
    """
    wav = wav.float().reshape(-1)
    seconds = wav.shape[0] / SAMPLE_RATE
    if seconds < options.min_seconds:
        raise path_error(
            name,
            f"reference is {seconds:.2f} s long; at least {options.min_seconds:g} s is needed",
            "give a longer clip of the voice (3-10 s of speech works best)",
        )
    energies = frame_energies_db(wav)
    if float(energies.max()) < options.silence_dbfs:
        raise path_error(
            name,
            f"reference is silent (loudest 20 ms frame {energies.max():.0f} dBFS)",
            "give a clip in which the voice can be heard",
        )
    wav = remove_dc(wav)
    if options.denoise != "none":
        wav = load_denoiser(options.denoise)(wav)
    if not options.vad:
        return _whole_clip(wav, seconds, options, name)
    voiced = voiced_frames(wav, options.vad_aggressiveness)
    frame_seconds = VAD_FRAME / SAMPLE_RATE
    if voiced.sum() * frame_seconds < options.min_speech_seconds:
        _refuse_no_speech(name, voiced.sum() * frame_seconds, f"in {seconds:.1f} s of audio")
    wav, voiced = keep_speech(wav, voiced, max(1, round(options.vad_margin_seconds / frame_seconds)))
    trimmed = seconds - wav.shape[0] / SAMPLE_RATE
    if options.max_seconds > 0 and wav.shape[0] > options.max_seconds * SAMPLE_RATE:
        wav = wav[: int(options.max_seconds * SAMPLE_RATE)]
        voiced = voiced[: wav.shape[0] // VAD_FRAME]
        if voiced.sum() * frame_seconds < options.min_speech_seconds:
            _refuse_no_speech(name, voiced.sum() * frame_seconds, f"in the {options.max_seconds:g} s kept")
    # Level from the speech frames only, so pauses do not inflate the gain.
    frames = wav[: voiced.shape[0] * VAD_FRAME].double().reshape(-1, VAD_FRAME)[torch.from_numpy(voiced)]
    speech_power = float(frames.pow(2).mean())
    wav = _level(wav, speech_power, options.target_dbfs)
    speech = float(voiced.sum() * frame_seconds)
    return Reference(wav=wav, source_seconds=seconds, trimmed_seconds=trimmed, noise_only=False, speech_seconds=speech)


def _whole_clip(wav: torch.Tensor, seconds: float, options: ReferenceOptions, name: str | Path) -> Reference:
    """Without voice-activity detection: warn on steady noise, crop, level from the loud frames."""
    energies = frame_energies_db(wav)
    spread = float(np.percentile(energies, 95) - np.percentile(energies, 10))
    noise_only = spread < options.noise_range_db
    if noise_only:
        log.warning(
            "%s: the reference sounds like steady noise with no speech in it (frame levels vary by %.1f dB); "
            "the cloned voice will not resemble anyone -- give a clip with speech",
            name,
            spread,
        )
    if options.max_seconds > 0 and wav.shape[0] > options.max_seconds * SAMPLE_RATE:
        keep = int(options.max_seconds * SAMPLE_RATE)
        wav, energies = wav[:keep], energies[: -(-keep // FRAME)]
    loud = energies >= float(np.percentile(energies, 95)) - options.vad_floor_db
    speech_power = float(np.mean(10 ** (energies[loud] / 10)))
    return Reference(
        wav=_level(wav, speech_power, options.target_dbfs),
        source_seconds=seconds,
        trimmed_seconds=0.0,
        noise_only=noise_only,
    )


def _level(wav: torch.Tensor, speech_power: float, target_dbfs: float) -> torch.Tensor:
    """Scale ``wav`` so that ``speech_power`` (mean square) lands at ``target_dbfs``, peaks below 0 dBFS."""
    gain = 10 ** ((target_dbfs - 10 * np.log10(speech_power + 1e-12)) / 20)
    peak = float(wav.abs().max())
    gain = min(gain, 0.99 / peak) if peak > 0 else gain
    return wav * gain


def load_reference(path: str | Path, options: ReferenceOptions | None = None) -> Reference:
    """Read ``path`` (any format, rate, channels) and :func:`prepare_reference` it.

    Raises:
        UserError: unreadable, too short or silent clip (names the file and the fix).
    """
    return prepare_reference(load_audio(path, SAMPLE_RATE, mono=True), options or ReferenceOptions(), name=path)
