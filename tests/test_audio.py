"""Audio I/O: every format, resampling, mixing down, normalisation, trimming, segmenting, and the
clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from serkit import audio
from serkit.errors import AudioError

from .conftest import tone


@pytest.mark.parametrize(
    "fmt,ext,subtype",
    [("WAV", "wav", "PCM_16"), ("FLAC", "flac", "PCM_16"), ("OGG", "ogg", "VORBIS"), ("MP3", "mp3", "MPEG_LAYER_III")],
)
def test_reads_every_format_stereo_and_resamples(tmp_path, fmt, ext, subtype):
    left = tone(440, 1.0, 44100, 0.4)
    stereo = np.stack([left, left], axis=1)
    path = tmp_path / f"x.{ext}"
    sf.write(path, stereo, 44100, format=fmt, subtype=subtype)
    signal, sr = audio.read(path, 16000)
    assert sr == 16000
    assert signal.dtype == np.float32 and signal.ndim == 1
    # lossy codecs add encoder delay/padding; the length stays within 0.1 s of 1 s
    assert abs(len(signal) / sr - 1.0) < 0.1
    # mixed down from two equal channels: the tone keeps its RMS (0.4/sqrt(2)) within 5 %
    mid = signal[2000:-2000]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.05)


def test_mixdown_averages_channels(tmp_path):
    x = np.stack([np.full(1600, 0.5), np.full(1600, -0.1)], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.wav", x, 16000, subtype="FLOAT")
    signal, _ = audio.read(tmp_path / "s.wav")
    assert np.allclose(signal, 0.2)


def test_resample_keeps_a_tone():
    x = tone(1000, 1.0, 48000)
    y = audio.resample(x, 48000, 16000)
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins over 1 s


def test_segment_read_by_time(tmp_path):
    sr = 16000
    x = np.arange(sr * 2, dtype=np.float32) / (sr * 2)
    sf.write(tmp_path / "ramp.wav", x, sr, subtype="FLOAT")
    seg, _ = audio.read(tmp_path / "ramp.wav", start=0.5, end=1.0)
    assert len(seg) == 8000
    assert seg[0] == pytest.approx(0.25, abs=1e-4)


def test_normalize_peak_and_loudness():
    x = tone(220, 1.0, 16000, 0.1)
    assert np.max(np.abs(audio.normalise(x, "peak"))) == pytest.approx(1.0, abs=1e-6)
    y = audio.normalise(x, "loudness", target_db=-20)
    assert 20 * np.log10(np.sqrt(np.mean(y**2))) == pytest.approx(-20.0, abs=0.05)
    with pytest.raises(AudioError, match="unknown normalisation"):
        audio.normalise(x, "lufs-ish")


def test_trim_silence_cuts_leading_and_trailing_silence():
    sr = 16000
    x = np.concatenate([np.zeros(sr), tone(220, 0.5, sr), np.zeros(sr)])
    y = audio.trim_silence(x, sr)
    assert abs(len(y) / sr - 0.5) < 0.05
    with pytest.raises(AudioError, match="silent"):
        audio.trim_silence(np.zeros(sr, np.float32), sr)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        audio.read(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        audio.read(tmp_path / "empty.wav")


def test_text_file_renamed_wav(tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match="cannot decode .*notes.wav"):
        audio.read(tmp_path / "notes.wav")


def test_corrupt_truncated_wav(tmp_path):
    sf.write(tmp_path / "ok.wav", tone(), 16000)
    data = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "bad.wav").write_bytes(data[:30])  # header cut in the middle
    with pytest.raises(AudioError, match="bad.wav"):
        audio.read(tmp_path / "bad.wav")


def test_absurd_sample_rate(tmp_path):
    sf.write(tmp_path / "slow.wav", tone(sr=1000), 1000)
    with pytest.raises(AudioError, match="1000 Hz"):
        audio.read(tmp_path / "slow.wav")


def test_too_short_and_bad_segment(tmp_path):
    sf.write(tmp_path / "one.wav", np.zeros(1, np.float32), 16000)
    with pytest.raises(AudioError, match="shorter than"):
        audio.read(tmp_path / "one.wav", min_duration=0.1)
    sf.write(tmp_path / "t.wav", tone(), 16000)
    with pytest.raises(AudioError, match="no samples between"):
        audio.read(tmp_path / "t.wav", start=2.0, end=3.0)


def test_find_audio_files(tmp_path):
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "x.WAV", tone(), 16000)
    sf.write(tmp_path / "y.flac", tone(), 16000)
    (tmp_path / "readme.txt").write_text("hi")
    assert [p.name for p in audio.find_audio_files(tmp_path)] == ["x.WAV", "y.flac"]
