"""Reading (whole, in parts or as a stream of blocks), resampling, normalising and trimming audio.

This is the only module that touches decoders. Every signal leaving it is a float32 mono
``numpy`` array; the sample rate travels beside it as ``sampling_rate`` (Hz).

Some files do not say how long they are (a FLAC whose STREAMINFO total-samples field is 0, legal
for "unknown"; libsndfile then reports 2^63 - 1 frames): :func:`info` counts their samples by
decoding them block by block, up to a limit, and :func:`read` / :func:`blocks` read them as a
stream. Nothing here ever allocates for a length a header merely claims.
"""

from __future__ import annotations

import math
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
    "pad_to",
    "normalise",
    "trim_silence",
    "blocks",
    "find_audio_files",
    "scan_audio_folder",
    "duration_limit_s",
    "DEFAULT_MAX_DURATION_S",
]

#: File extensions serkit reads (libsndfile decodes all of them, mp3 included).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

#: Shortest clip serkit trains on, evaluates or predicts (seconds): shorter corpus files are skipped
#: with a warning, and prediction answers an error row.
MIN_DURATION_S = 0.1

#: Sample rates outside this range are rejected as absurd (telephone 8 kHz ... studio 384 kHz).
MIN_SAMPLING_RATE = 4000
MAX_SAMPLING_RATE = 384000

#: Longest audio serkit processes (seconds) unless told otherwise: the HTTP service, ``serkit
#: predict`` and :class:`serkit.inference.Recognizer` share it (``SERKIT_MAX_DURATION_S``).
DEFAULT_MAX_DURATION_S = 600.0
MAX_DURATION_ENV = "SERKIT_MAX_DURATION_S"

#: libsndfile reports a length of 2^63 - 1 frames for a file whose header gives none.
_UNKNOWN_FRAMES = 2**62

#: Frames decoded per block when a file is read as a stream (4 s at 16 kHz).
_BLOCK = 65536


def duration_limit_s(environ=None) -> float:
    """The shared duration limit: ``SERKIT_MAX_DURATION_S`` if set, else :data:`DEFAULT_MAX_DURATION_S`.

    The one reader of the variable: the CLI, :class:`~serkit.inference.Recognizer` and the HTTP
    service's settings all take the limit from here.
    """
    env = os.environ if environ is None else environ
    raw = env.get(MAX_DURATION_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_DURATION_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= MIN_DURATION_S:  # a limit below the shortest usable clip would refuse every file
        raise AudioError(
            f"{MAX_DURATION_ENV}={raw!r} must be a positive number of seconds, at least {MIN_DURATION_S:g}; e.g. 600"
        )
    return value


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding the samples."""

    path: str
    sampling_rate: int
    channels: int
    frames: int
    format: str
    #: The header gave no length: ``frames`` was counted by decoding (see :func:`info`).
    counted: bool = False
    #: Counting stopped at the limit: the file holds at least ``frames`` frames, maybe more.
    truncated: bool = False

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sampling_rate if self.sampling_rate else 0.0


def _check_path(path) -> Path:
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise AudioError(f"'{p}' is a broken symbolic link (to '{os.readlink(p)}'); fix or remove the link")
        raise AudioError(f"audio file '{p}' does not exist; check the path (relative paths start at {os.getcwd()})")
    if p.is_dir():
        raise AudioError(f"'{p}' is a folder, not an audio file; pass a file, or use a command that takes folders")
    if not p.is_file():  # never opened: reading a FIFO blocks until someone writes to it
        raise AudioError(f"'{p}' is not a regular file (a FIFO, socket or device); save the audio to a file first")
    if not os.access(p, os.R_OK):
        raise AudioError(f"audio file '{p}' cannot be read (permission denied); check its permissions")
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


def info(path, *, max_duration_s: float | None = None) -> AudioInfo:
    """Read a file's header: sample rate, channels, length.

    A file whose header gives no length is decoded block by block to count its frames
    (``counted``); the count stops once it passes ``max_duration_s`` seconds (default: the shared
    limit, :func:`duration_limit_s`; ``math.inf`` counts everything), and then ``truncated`` says the
    file holds at least ``frames`` frames.

    Raises
    ------
    AudioError
        The file is missing, empty, not a regular file, not audio, or has an absurd sample rate.
    """
    import soundfile as sf

    p = _check_path(path)
    try:
        i = sf.info(str(p))
    except Exception as exc:  # libsndfile raises its own RuntimeError/LibsndfileError
        raise _open_error(p, exc) from None
    sr = int(i.samplerate)
    _check_rate(p, sr)
    frames, counted, truncated = int(i.frames), False, False
    if frames >= _UNKNOWN_FRAMES:
        seconds = duration_limit_s() if max_duration_s is None else max_duration_s
        limit = None if math.isinf(seconds) else int(seconds * sr) + 1
        frames, counted = 0, True
        for block in blocks(p, _BLOCK, mono=False):
            frames += len(block)
            if limit is not None and frames >= limit:
                truncated = True
                break
    return AudioInfo(str(p), sr, int(i.channels), frames, str(i.format), counted, truncated)


def blocks(path, blocksize: int = _BLOCK, *, start: int = 0, stop: int | None = None, mono: bool = True):
    """Decode a file as a stream of float32 blocks at its own rate (frames ``start`` … ``stop``).

    Works for files whose header gives no length: they are read until the decoder runs dry.
    Blocks are mono (channels averaged) unless ``mono=False`` ([shape=(n, channels)]).

    Yields
    ------
    np.ndarray [shape=(n,), float32]
    """
    import soundfile as sf

    p = Path(path)

    def open_at(pos: int):
        f = sf.SoundFile(str(p))
        if pos:
            f.seek(pos)
        return f

    try:
        f = open_at(start)
    except Exception as exc:
        raise _open_error(p, exc) from None
    try:
        unknown = f.frames >= _UNKNOWN_FRAMES
        pos = start
        while stop is None or pos < stop:
            want = blocksize if stop is None else min(blocksize, stop - pos)
            try:
                data = _read_raw(f, want) if unknown else f.read(want, dtype="float32", always_2d=True)
            except Exception as exc:
                if not unknown:
                    raise _open_error(p, exc) from None
                # without libsndfile's raw read: soundfile reads the last partial block of a length-less
                # FLAC, then fails to seek past the end (and the handle stays failed); reopen and read
                # the rest in halves (this may lose the last FLAC frame, < 0.3 s)
                data = None
                while data is None and want > 1:
                    want //= 2
                    f.close()
                    try:
                        f = open_at(pos)
                        data = f.read(want, dtype="float32", always_2d=True)
                    except Exception:
                        data = None
                if data is None:
                    return
            if len(data):
                pos += len(data)
                yield data.mean(axis=1, dtype=np.float32) if mono else data
            if len(data) < want:
                return
    finally:
        f.close()


def _read_raw(f, n: int) -> np.ndarray:
    """Up to ``n`` frames through libsndfile's ``sf_readf_float``, which, unlike ``SoundFile.read``,
    does not seek after reading (a seek that fails at the end of a FLAC that gives no length)."""
    import soundfile as sf

    out = np.empty((n, f.channels), np.float32)
    got = sf._snd.sf_readf_float(f._file, sf._ffi.cast("float *", out.ctypes.data), n)
    return out[: max(0, int(got))]


def read(
    path,
    sampling_rate: int | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
    normalisation: str | None = None,
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
    normalisation
        ``None``, ``"peak"`` or ``"loudness"`` (see :func:`normalise`).
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
            if f.frames >= _UNKNOWN_FRAMES:  # no length in the header: decode as a stream
                last = None if end is None else int(round(end * sr))
                parts = list(blocks(p, start=first, stop=last, mono=False)) if last is None or last > first else []
                data = np.concatenate(parts) if parts else np.zeros((0, f.channels), np.float32)
                if not len(data):
                    raise AudioError(f"'{p}' has no samples from {start or 0:.3f}s on; check the segment times")
            else:
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
    if normalisation:
        signal = normalise(signal, normalisation)
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


def pad_to(signal: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad ``signal`` symmetrically to at least ``n`` samples (the one padding rule of serkit).

    A signal already that long comes back as it is (the same object); the padding then counts as
    signal for whatever reads it (feature extractors, receptive fields). The dtype is kept.

    >>> import numpy as np
    >>> pad_to(np.ones(3, dtype=np.float32), 6).tolist()
    [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """
    if len(signal) >= n:
        return signal
    left = (n - len(signal)) // 2
    return np.pad(signal, (left, n - len(signal) - left))


def normalise(signal: np.ndarray, method: str = "peak", *, target_db: float = -23.0) -> np.ndarray:
    """Scale a signal: ``"peak"`` to a maximum magnitude of 1, ``"loudness"`` to an RMS of ``target_db`` dBFS.

    Silent signals come back unchanged (there is nothing to scale).

    >>> import numpy as np
    >>> float(np.abs(normalise(np.array([0.1, -0.25], dtype=np.float32))).max())
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
    raise AudioError(f"unknown normalisation {method!r}; use 'peak', 'loudness' or None")


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


def find_audio_files(root, *, recursive: bool = True) -> list[Path]:
    """All regular files under ``root`` with an audio extension, sorted; ``root`` may itself be a file.

    Linked folders are followed (each real folder once, so a link cycle ends); see
    :func:`scan_audio_folder` for the entries that are skipped.
    """
    p = Path(root)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise AudioError(f"'{p}' does not exist; pass an audio file or a folder of audio files")
    return scan_audio_folder(p, recursive=recursive)[0]


def scan_audio_folder(root, *, recursive: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Audio files under a folder, and the entries that look like audio but cannot be read.

    Symbolic links to folders are followed; a folder reached twice (a link cycle, or two links to
    one folder) is listed once.

    Returns
    -------
    files : list of Path
        Regular files with an audio extension (links to them included), sorted.
    problems : list of (Path, str)
        Entries with an audio extension that are not regular files (FIFOs, sockets, devices),
        broken links, and folders that cannot be listed, each with a message saying why.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen: set = set()

    def walk(folder: Path) -> None:
        try:
            st = folder.stat()
        except OSError as exc:
            problems.append(
                (folder, f"folder '{folder}' cannot be read ({exc.strerror or exc}); check its permissions")
            )
            return
        if (st.st_dev, st.st_ino) in seen:
            return  # reached again through a link: a cycle, or the same folder twice
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            problems.append(
                (folder, f"folder '{folder}' cannot be listed ({exc.strerror or exc}); check its permissions")
            )
            return
        for e in entries:
            path = Path(e.path)
            try:
                is_dir = e.is_dir()  # follows links
            except OSError:
                is_dir = False
            if is_dir:
                if recursive:
                    walk(path)
                continue
            if path.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            try:
                regular = e.is_file()
            except OSError:
                regular = False
            if regular:
                files.append(path)
            elif e.is_symlink() and not path.exists():
                problems.append(
                    (path, f"'{path}' is a broken symbolic link (to '{os.readlink(path)}'); fix or remove the link")
                )
            else:
                problems.append(
                    (path, f"'{path}' is not a regular file (a FIFO, socket or device); save the audio to a file first")
                )

    walk(Path(root))
    return sorted(files), problems
