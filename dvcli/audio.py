"""Audio input and output.

Reading and writing go through ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3 and the
rest of its formats); torchaudio's own I/O would need torchcodec and FFmpeg. Resampling uses
``torchaudio.functional.resample``. Everything inside dv is float32 in [-1, 1].

Every failure a user can cause (missing file, a folder, empty or non-audio bytes, no samples) raises
:class:`~dvcli.errors.UserError` naming the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from dvcli.atomic import atomic_path
from dvcli.errors import UserError, check_file, path_error

#: The sample rate every model in dv reads (HuBERT, CAM++) and the default output rate.
SAMPLE_RATE = 16000
#: Audio files dv picks up in folders (corpora, noise and impulse-response folders): all read by libsndfile.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".sph", ".aiff", ".aif")
#: Formats dv writes (``dv synthesize -o clip.wav``).
OUTPUT_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the audio."""

    sample_rate: int
    frames: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Read an audio file's header: rate, length, channels.

    Raises:
        UserError: missing, empty, unreadable or zero-length file.
    """
    path = Path(path)
    check_file(path, "audio file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise path_error(path, f"not a readable audio file ({_reason(err)})") from None
    if info.frames <= 0:
        raise path_error(path, "contains no audio samples")
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels), info.format, info.subtype)


def check_readable(items: Iterable[tuple[str, str | Path]], source: str | Path) -> None:
    """Read the header of every ``(id, audio path)``, so that a run refuses a bad file before it
    starts rather than failing on it hours in.

    Raises:
        UserError: naming ``source`` (the manifest), how many files fail, and the first one's problem.
    """
    bad = []
    for uid, path in items:
        try:
            audio_info(path)
        except UserError as err:
            bad.append((uid, str(err)))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(
            f"{source}: utterance '{bad[0][0]}' has unusable audio{more}: {bad[0][1]}; "
            "fix or remove the row(s) before training"
        )


def load_audio(
    path: str | Path,
    sample_rate: int | None = SAMPLE_RATE,
    *,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Load an audio file as float32 in [-1, 1].

    Args:
        path: any format libsndfile reads.
        sample_rate: resample to this rate; ``None`` keeps the file's rate.
        mono: average the channels (returns ``(T,)``); otherwise returns ``(C, T)``.
        offset: seconds to skip at the start.
        duration: seconds to read (``None`` = to the end).

    Raises:
        UserError: the file is missing, empty, not audio, or has no samples.
    """
    wav, rate = load_audio_with_rate(path, mono=mono, offset=offset, duration=duration)
    if sample_rate is not None and rate != sample_rate:
        wav = resample(wav, rate, sample_rate)
    return wav


def load_audio_with_rate(
    path: str | Path, *, mono: bool = True, offset: float = 0.0, duration: float | None = None
) -> tuple[torch.Tensor, int]:
    """Like :func:`load_audio` without resampling; returns ``(audio, sample_rate)``."""
    path = Path(path)
    check_file(path, "audio file")
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = int(handle.samplerate)
            start = int(round(offset * rate))
            if start:
                handle.seek(min(start, handle.frames))
            frames = -1 if duration is None else int(round(duration * rate))
            data = handle.read(frames, dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise path_error(path, f"not a readable audio file ({_reason(err)})") from None
    if data.shape[0] == 0:
        raise path_error(path, "contains no audio samples")
    if not np.isfinite(data).all():
        raise path_error(path, "contains NaN or infinite samples")
    wav = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, T)
    if mono:
        wav = downmix(wav)  # (T,)
    return wav, rate


def downmix(wav: torch.Tensor) -> torch.Tensor:
    """``(C, T)`` -> ``(T,)``: the channels' mean, or the loudest channel where averaging cancels.

    Some phones and call recorders write a voice on two channels in opposite polarity, and their
    mean is near silence; when the mean is more than 12 dB below the loudest channel (RMS), that
    channel is taken instead. A channel that is silent costs the mean 6 dB, which level
    normalisation gives back.
    """
    if wav.shape[0] == 1:
        return wav[0]
    mean = wav.mean(dim=0)
    rms = wav.double().pow(2).mean(dim=1).sqrt()
    loudest = int(rms.argmax())
    if float(mean.double().pow(2).mean().sqrt()) < 0.25 * float(rms[loudest]):
        return wav[loudest].clone()
    return mean


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample ``(..., T)`` audio with torchaudio's windowed-sinc resampler."""
    if orig_rate == new_rate:
        return wav
    return AF.resample(wav, orig_rate, new_rate)


def pcm16(wav: torch.Tensor) -> bytes:
    """``(T,)`` float audio as 16-bit little-endian PCM bytes (clipped to [-1, 1], rounded)."""
    data = np.clip(wav.detach().cpu().float().numpy(), -1.0, 1.0)
    return np.round(data * 32767).astype("<i2").tobytes()


def wav_stream_header(sample_rate: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header for a stream of unknown length (sizes 0xFFFFFFFF, as ``sox`` and
    ``ffmpeg`` write to pipes); players read the samples after it until the stream ends."""
    import struct

    block = 2 * channels
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def save_audio(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write ``(T,)`` or ``(C, T)`` float audio atomically; the format follows the file suffix.

    Samples are clipped to [-1, 1]. ``subtype`` defaults to 16-bit PCM for WAV/FLAC.
    """
    path = Path(path)
    data = wav.detach().cpu().float().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, np.float32)
    data = np.clip(data, -1.0, 1.0)
    if data.ndim == 2:
        data = data.T  # soundfile wants (T, C)
    fmt = sf.available_formats()
    suffix = path.suffix.lstrip(".").upper()
    if suffix == "OGG":
        file_format, default_subtype = "OGG", "VORBIS"
    elif suffix in fmt:
        file_format, default_subtype = suffix, "PCM_16"
    else:
        raise path_error(path, f"unknown audio format '.{suffix.lower()}'", "use .wav, .flac or .ogg")
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), data, sample_rate, format=file_format, subtype=subtype or default_subtype)
    except sf.LibsndfileError as err:  # "System error." is libsndfile's word for the OS refusing a write
        raise path_error(
            path, f"cannot write the audio ({_reason(err)})", "is the disk full, or the folder read-only?"
        ) from None


def audio_files(folder: Path) -> list[Path]:
    """Every file with an audio suffix (:data:`AUDIO_SUFFIXES`, any case) below ``folder``, sorted; no checks."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def find_audio(folder: Path, *, rirs: bool = False) -> list[Path]:
    """Audio files (:data:`AUDIO_SUFFIXES`) below ``folder``, sorted.

    With ``rirs``: in an RIRS_NOISES tree, only the impulse responses (paths mentioning ``rir``,
    never files named ``*noise*``); any other folder: every audio file.

    Raises:
        UserError: the folder is missing or holds no audio.
    """
    if not folder.is_dir():
        raise UserError(
            f"{folder}: folder not found (give a folder of {'impulse responses' if rirs else 'noise files'})"
        )
    found = audio_files(folder)
    if rirs:
        named = [p for p in found if "rir" in str(p.relative_to(folder)).lower() and "noise" not in p.name.lower()]
        found = named or found
    if not found:
        raise UserError(f"{folder}: no audio files found (expected .wav/.flac files below it)")
    return found


def tile_to(wav: torch.Tensor, samples: int) -> torch.Tensor:
    """``(T,)`` repeated end to end and cut to exactly ``samples`` samples (``T`` >= 1).

    Raises:
        ValueError: an empty clip.
    """
    if wav.shape[0] == 0:
        raise ValueError("cannot tile an empty clip")
    if wav.shape[0] >= samples:
        return wav[:samples]
    return wav.repeat(-(-samples // wav.shape[0]))[:samples]


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    # libsndfile repeats the file name (a temp path or ours): keep only its reason.
    if ": " in text and text.lower().startswith("error opening"):
        text = text.split(": ", 1)[1]
    return text
