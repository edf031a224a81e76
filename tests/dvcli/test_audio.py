"""Audio loading against known sines: formats, bit depths, channel counts, sample rates, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dvcli.audio import audio_info, load_audio, load_audio_with_rate, save_audio
from dvcli.errors import UserError
from dvcli.testing import sine


def _peak_freq(wav: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav.numpy() * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / rate)[spectrum.argmax()])


def _rms(wav: torch.Tensor) -> float:
    return float(wav.pow(2).mean().sqrt())


@pytest.mark.parametrize(
    "suffix,subtype",
    [
        (".wav", "PCM_16"),
        (".wav", "PCM_24"),
        (".wav", "PCM_32"),
        (".wav", "FLOAT"),
        (".flac", "PCM_16"),
        (".flac", "PCM_24"),
        (".ogg", "VORBIS"),
    ],
)
def test_formats_and_bit_depths_keep_frequency_and_level(tmp_path: Path, suffix: str, subtype: str) -> None:
    path = tmp_path / f"tone{suffix}"
    sf.write(str(path), sine(440.0, 1.0, 16000, amplitude=0.5), 16000, subtype=subtype)
    wav = load_audio(path)
    assert wav.dtype == torch.float32 and wav.ndim == 1
    assert abs(_peak_freq(wav, 16000) - 440.0) < 2.0
    tolerance = 0.02 if subtype == "VORBIS" else 1e-3
    assert abs(_rms(wav) - 0.5 / np.sqrt(2)) < tolerance


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_to_16k_keeps_frequency_and_level(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "tone.wav"
    sf.write(str(path), sine(1000.0, 1.0, rate, amplitude=0.5), rate, subtype="PCM_16")
    wav = load_audio(path, 16000)
    assert abs(len(wav) - 16000) <= 1
    assert abs(_peak_freq(wav, 16000) - 1000.0) < 2.0
    # Ignore the filter's edge effects at the ends.
    assert abs(_rms(wav[800:-800]) - 0.5 / np.sqrt(2)) < 5e-3


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left, right = sine(300.0, 0.5, 16000, 0.4), sine(300.0, 0.5, 16000, 0.2)
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wav = load_audio(path)
    torch.testing.assert_close(wav, torch.from_numpy((left + right) / 2))
    both, rate = load_audio_with_rate(path, mono=False)
    assert both.shape == (2, 8000) and rate == 16000


def test_offset_and_duration_read_a_window(tmp_path: Path) -> None:
    path = tmp_path / "ramp.wav"
    ramp = np.linspace(-1, 1, 16000, dtype=np.float32)
    sf.write(str(path), ramp, 16000, subtype="FLOAT")
    wav = load_audio(path, offset=0.25, duration=0.5)
    torch.testing.assert_close(wav, torch.from_numpy(ramp[4000:12000]))


def test_audio_info_reads_header(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(str(path), np.zeros((24000, 2), np.float32), 48000)
    info = audio_info(path)
    assert (info.sample_rate, info.frames, info.channels) == (48000, 24000, 2)
    assert info.duration == pytest.approx(0.5)


def test_save_audio_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    tone = torch.from_numpy(sine(200.0, 0.3, 22050, 0.3))
    save_audio(tmp_path / "out.wav", tone, 22050)
    back, rate = load_audio_with_rate(tmp_path / "out.wav")
    assert rate == 22050
    torch.testing.assert_close(back, tone, atol=1e-4, rtol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "garbage.wav").write_bytes(b"this is not audio at all" * 20)
    sf.write(str(tmp_path / "zero.wav"), np.zeros(0, np.float32), 16000)
    (tmp_path / "folder.wav").mkdir()
    return {
        "missing": tmp_path / "missing.wav",
        "empty": tmp_path / "empty.wav",
        "garbage": tmp_path / "garbage.wav",
        "zero-length": tmp_path / "zero.wav",
        "directory": tmp_path / "folder.wav",
    }


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "zero-length", "directory"])
def test_bad_files_raise_user_error_naming_the_path(tmp_path: Path, kind: str) -> None:
    path = _bad_inputs(tmp_path)[kind]
    for reader in (load_audio, audio_info):
        with pytest.raises(UserError) as err:
            reader(path)
        assert str(path) in str(err.value)
        assert "\n" not in str(err.value)
