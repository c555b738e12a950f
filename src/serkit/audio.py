"""Reading, resampling, normalising, trimming and segmenting audio.

This is the only module that touches decoders. Every signal leaving it is a float32 mono
``numpy`` array; the sample rate travels beside it as ``sampling_rate`` (Hz).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError

__all__ = [
    "AUDIO_EXTENSIONS",
    "MIN_DURATION_S",
    "AudioInfo",
    "info",
    "read",
    "resample",
    "normalize",
    "trim_silence",
    "frames",
    "segment",
    "find_audio_files",
]

#: File extensions serkit reads (libsndfile decodes all of them, mp3 included).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

#: Shortest clip serkit trains on, evaluates or predicts (seconds): shorter corpus files are skipped
#: with a warning, and prediction answers an error row.
MIN_DURATION_S = 0.1

#: Sample rates outside this range are rejected as absurd (telephone 8 kHz ... studio 384 kHz).
MIN_SAMPLING_RATE = 4000
MAX_SAMPLING_RATE = 384000


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding the samples."""

    path: str
    sampling_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sampling_rate if self.sampling_rate else 0.0


def _check_path(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioError(f"audio file '{p}' does not exist; check the path (relative paths start at {os.getcwd()})")
    if p.is_dir():
        raise AudioError(f"'{p}' is a folder, not an audio file; pass a file, or use a command that takes folders")
    if p.stat().st_size == 0:
        raise AudioError(f"audio file '{p}' is empty (0 bytes); re-export or re-copy it")
    return p


def _open_error(p: Path, exc: Exception) -> AudioError:
    return AudioError(
        f"cannot decode '{p}' as audio ({exc}); serkit reads {' '.join(AUDIO_EXTENSIONS)}: "
        "check that the file is not truncated or another format renamed, e.g. convert it with "
        "`ffmpeg -i in -ar 16000 out.wav`"
    )


def _check_rate(p, sampling_rate: int) -> None:
    if not MIN_SAMPLING_RATE <= sampling_rate <= MAX_SAMPLING_RATE:
        raise AudioError(
            f"'{p}' claims a sample rate of {sampling_rate} Hz, outside {MIN_SAMPLING_RATE}..{MAX_SAMPLING_RATE} Hz; "
            "the header is probably corrupt: re-export the file"
        )


def info(path) -> AudioInfo:
    """Read a file's header: sample rate, channels, length.

    Raises
    ------
    AudioError
        The file is missing, empty, not audio, or has an absurd sample rate.
    """
    import soundfile as sf

    p = _check_path(path)
    try:
        i = sf.info(str(p))
    except Exception as exc:  # libsndfile raises its own RuntimeError/LibsndfileError
        raise _open_error(p, exc) from None
    _check_rate(p, int(i.samplerate))
    return AudioInfo(str(p), int(i.samplerate), int(i.channels), int(i.frames), str(i.format))


def read(
    path,
    sampling_rate: int | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
    normalization: str | None = None,
    min_duration: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Read an audio file as a float32 mono signal.

    Parameters
    ----------
    path
        A wav, flac, ogg or mp3 file.
    sampling_rate
        Resample to this rate (Hz); ``None`` keeps the file's rate.
    start, end
        Read only this part of the file (seconds).
    normalization
        ``None``, ``"peak"`` or ``"loudness"`` (see :func:`normalize`).
    min_duration
        Raise :class:`AudioError` when the (cut) signal is shorter than this (seconds).

    Returns
    -------
    signal : np.ndarray [shape=(n_samples,), float32]
    sampling_rate : int
    """
    import soundfile as sf

    p = _check_path(path)
    try:
        with sf.SoundFile(str(p)) as f:
            sr = int(f.samplerate)
            _check_rate(p, sr)
            first = 0 if start is None else max(0, int(round(start * sr)))
            last = f.frames if end is None else min(f.frames, int(round(end * sr)))
            if last <= first:
                raise AudioError(
                    f"'{p}' has no samples between {start or 0:.3f}s and {end if end is not None else f.frames / sr:.3f}s "
                    f"(file length {f.frames / sr:.3f}s); check the segment times"
                )
            if first:
                f.seek(first)
            data = f.read(last - first, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:
        raise _open_error(p, exc) from None
    if data.size == 0:
        raise AudioError(f"'{p}' decodes to zero samples; the file is empty or truncated")
    signal = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(signal)):
        raise AudioError(f"'{p}' contains NaN or infinite samples; the file is corrupt: re-export it")
    if sampling_rate is not None and sampling_rate != sr:
        signal = resample(signal, sr, sampling_rate)
        sr = int(sampling_rate)
    if len(signal) < min_duration * sr:
        raise AudioError(
            f"'{p}' is {len(signal) / sr:.3f}s long, shorter than the {min_duration:.3f}s needed; use a longer recording"
        )
    if normalization:
        signal = normalize(signal, normalization)
    return np.ascontiguousarray(signal, dtype=np.float32), sr


def resample(signal: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with soxr's high-quality filter.

    >>> import numpy as np
    >>> resample(np.zeros(48000, dtype=np.float32), 48000, 16000).shape
    (16000,)
    """
    if target_sr <= 0 or orig_sr <= 0:
        raise AudioError(f"cannot resample from {orig_sr} Hz to {target_sr} Hz; both rates must be positive")
    if orig_sr == target_sr:
        return np.asarray(signal, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(signal, dtype=np.float32), orig_sr, target_sr, quality="HQ").astype(np.float32)


def normalize(signal: np.ndarray, method: str = "peak", *, target_db: float = -23.0) -> np.ndarray:
    """Scale a signal: ``"peak"`` to a maximum magnitude of 1, ``"loudness"`` to an RMS of ``target_db`` dBFS.

    Silent signals come back unchanged (there is nothing to scale).

    >>> import numpy as np
    >>> float(np.abs(normalize(np.array([0.1, -0.25], dtype=np.float32))).max())
    1.0
    """
    signal = np.asarray(signal, dtype=np.float32)
    if method == "peak":
        peak = float(np.max(np.abs(signal))) if signal.size else 0.0
        return signal / peak if peak > 0 else signal
    if method == "loudness":
        rms = float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) if signal.size else 0.0
        if rms <= 0:
            return signal
        out = signal * (10 ** (target_db / 20) / rms)
        return np.clip(out, -1.0, 1.0).astype(np.float32)
    raise AudioError(f"unknown normalization {method!r}; use 'peak', 'loudness' or None")


def trim_silence(
    signal: np.ndarray,
    sampling_rate: int,
    *,
    top_db: float = 40.0,
    frame_length: float = 0.025,
    hop_length: float = 0.010,
) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``top_db`` below the loudest frame.

    An all-silent signal raises :class:`AudioError` (there is no speech left to classify).
    """
    signal = np.asarray(signal, dtype=np.float32)
    n = max(1, int(frame_length * sampling_rate))
    hop = max(1, int(hop_length * sampling_rate))
    rms = _frame_rms(signal, n, hop)
    if rms.size == 0 or rms.max() <= 1e-8:
        raise AudioError("the signal is silent (no frame above -160 dBFS); there is no speech to analyse")
    db = 20 * np.log10(np.maximum(rms, 1e-10) / rms.max())
    loud = np.flatnonzero(db > -top_db)
    first = loud[0] * hop
    last = min(len(signal), loud[-1] * hop + n)
    return signal[first:last]


def _frame_rms(signal: np.ndarray, n: int, hop: int) -> np.ndarray:
    if len(signal) < n:
        return np.sqrt(np.mean(np.square(signal, dtype=np.float64), keepdims=True)) if len(signal) else np.zeros(0)
    idx = np.arange(0, len(signal) - n + 1, hop)
    cs = np.concatenate([[0.0], np.cumsum(np.square(signal, dtype=np.float64))])
    return np.sqrt((cs[idx + n] - cs[idx]) / n)


def frames(duration: float, *, window: float, hop: float) -> list[tuple[float, float]]:
    """``(start, end)`` times (seconds) of fixed windows over ``duration`` seconds.

    The last window is aligned to the end so the tail is covered; audio shorter than one window
    gives one window over the whole signal.

    >>> frames(10.0, window=4.0, hop=3.0)
    [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    """
    if window <= 0 or hop <= 0:
        raise AudioError(f"window ({window}s) and hop ({hop}s) must both be positive")
    if duration <= window:
        return [(0.0, float(duration))]
    out = []
    t = 0.0
    while t + window < duration - 1e-9:
        out.append((round(t, 6), round(t + window, 6)))
        t += hop
    last = (round(duration - window, 6), round(float(duration), 6))
    if not out or out[-1][1] < duration - 1e-9:
        out.append(last)
    return out


def segment(
    signal: np.ndarray, sampling_rate: int, *, window: float = 4.0, hop: float = 2.0
) -> list[tuple[float, float, np.ndarray]]:
    """Cut a long signal into ``(start, end, piece)`` windows of ``window`` seconds every ``hop`` seconds."""
    duration = len(signal) / sampling_rate
    out = []
    for s, e in frames(duration, window=window, hop=hop):
        out.append((s, e, signal[int(round(s * sampling_rate)) : int(round(e * sampling_rate))]))
    return out


def find_audio_files(root, *, recursive: bool = True) -> list[Path]:
    """All files under ``root`` with an audio extension, sorted; ``root`` may itself be a file."""
    p = Path(root)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise AudioError(f"'{p}' does not exist; pass an audio file or a folder of audio files")
    it = p.rglob("*") if recursive else p.iterdir()
    return sorted(f for f in it if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
