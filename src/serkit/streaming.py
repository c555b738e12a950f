"""Real-time sliding-window recognition: feed PCM chunks as they arrive, get one row per window.

The engine is transport-agnostic (the HTTP service's WebSocket, a microphone, stdin or a file read
in chunks all feed it the same way) and returns the same prediction table as
:class:`~serkit.inference.Recognizer` (``file, start, end, label, p_<label>..., error``).

>>> from serkit.streaming import SlidingWindow                         # doctest: +SKIP
>>> stream = SlidingWindow(recognizer, sampling_rate=48000, window=2.0, hop=1.0)  # doctest: +SKIP
>>> for chunk in chunks:                                               # doctest: +SKIP
...     print(stream.feed(chunk))          # rows for every window completed by this chunk
>>> print(stream.flush())                  # the tail, as one last end-aligned window
"""

from __future__ import annotations

import numpy as np

from .audio import MAX_SAMPLING_RATE, MIN_SAMPLING_RATE
from .errors import AudioError, ConfigError
from .windows import SILENCE_DB, Cutter, Scorer, StreamLimits

__all__ = ["SlidingWindow", "decode_pcm", "PCM_FORMATS"]

#: Wire formats of raw PCM chunks: little-endian mono samples.
PCM_FORMATS = {"f32": "<f4", "s16": "<i2"}


def decode_pcm(data: bytes, fmt: str = "f32") -> np.ndarray:
    """Raw little-endian mono PCM bytes as a float32 signal in [-1, 1].

    Parameters
    ----------
    data
        ``f32``: IEEE float32 samples; ``s16``: signed 16-bit integers (scaled by 1/32768).
    fmt
        ``"f32"`` or ``"s16"``.

    >>> decode_pcm(b"\\x00\\x40\\x00\\xc0", "s16").tolist()
    [0.5, -0.5]
    """
    if fmt not in PCM_FORMATS:
        raise ConfigError(f"unknown PCM format {fmt!r}; use one of {', '.join(PCM_FORMATS)}")
    width = np.dtype(PCM_FORMATS[fmt]).itemsize
    if len(data) % width:
        raise AudioError(
            f"a {fmt} PCM chunk must hold whole {width}-byte samples, got {len(data)} bytes; "
            "send chunks cut on sample boundaries"
        )
    samples = np.frombuffer(data, dtype=PCM_FORMATS[fmt])
    if fmt == "s16":
        return samples.astype(np.float32) / 32768.0
    signal = samples.astype(np.float32)
    if not np.all(np.isfinite(signal)):
        raise AudioError("the PCM chunk contains NaN or infinite samples; send float32 samples in [-1, 1]")
    return signal


class SlidingWindow:
    """Cut a stream of PCM chunks into windows and classify each window once it is complete.

    A thin pairing of the one window engine's :class:`~serkit.windows.Cutter` (grid, tail rule,
    work bounds) and :class:`~serkit.windows.Scorer` (silence gate, resampling, smoothing), so the
    WebSocket gives the same rows as ``serkit stream`` on the same audio.

    Parameters
    ----------
    recognizer : serkit.inference.Recognizer
        The model; windows are resampled to its :attr:`~serkit.inference.Recognizer.sampling_rate`.
    sampling_rate
        Rate of the incoming chunks (Hz).
    window, hop
        Window length and step (seconds); a window is classified as soon as its last sample arrives.
    ema
        Weight of the newest window in a moving average of probabilities (1 = no smoothing).
    silence_db
        Windows whose RMS is below this level (dBFS) are not classified: their row has an empty
        label and ``error == "silence"``, because a model's guess on silence means nothing.
    limits : serkit.windows.StreamLimits, optional
        Work bounds (window/hop ratio, windows per chunk and per second); default from the
        ``SERKIT_STREAM_*`` variables.
    name
        Value of the ``file`` column of every row.
    min_confidence
        A window whose top probability is below this gets the label ``"uncertain"`` (probabilities
        kept); ``None`` (default) always gives the top label.

    Notes
    -----
    Memory stays bounded: only the samples of the current (incomplete) window are kept.
    Times are seconds from the first sample fed.
    """

    def __init__(
        self,
        recognizer,
        *,
        sampling_rate: int,
        window: float = 2.0,
        hop: float = 1.0,
        ema: float = 1.0,
        silence_db: float = SILENCE_DB,
        limits: StreamLimits | None = None,
        name: str = "stream",
        min_confidence: float | None = None,
    ):
        if not MIN_SAMPLING_RATE <= int(sampling_rate) <= MAX_SAMPLING_RATE:
            raise ConfigError(
                f"stream sample rate {sampling_rate} Hz is outside {MIN_SAMPLING_RATE}..{MAX_SAMPLING_RATE} Hz; "
                "pass the rate the audio was recorded at"
            )
        self.recognizer = recognizer
        self.sampling_rate = int(sampling_rate)
        self.window = float(window)
        self.hop = float(hop)
        self.name = name
        self.cutter = Cutter(self.sampling_rate, window, hop, limits=limits)
        self.scorer = Scorer(
            recognizer, self.sampling_rate, ema=ema, silence_db=silence_db, name=name, min_confidence=min_confidence
        )

    def reset(self) -> None:
        """Forget all audio fed so far (times restart at 0)."""
        self.cutter.reset()
        self.scorer.smoothed = None

    @property
    def duration(self) -> float:
        """Seconds of audio fed so far."""
        return self.cutter.duration

    def feed(self, chunk):
        """Add samples; returns the rows of the windows this chunk completed (maybe none).

        Parameters
        ----------
        chunk : np.ndarray [shape=(n,), float32 in [-1, 1] or int16] or bytes (float32 little-endian)

        Raises
        ------
        serkit.windows.StreamLimitError
            The chunk would complete more windows than the limits allow.
        """
        return self.scorer.table(self.cutter.feed(self._as_signal(chunk)))

    def flush(self):
        """Classify the audio not yet covered by a window, as one window aligned to the end.

        Audio shorter than one window gives one window over all of it. After a flush the stream
        is reset.
        """
        min_samples = int(self.recognizer.min_duration * self.sampling_rate)
        table = self.scorer.table(self.cutter.flush(min_samples))
        self.reset()
        return table

    # -- internals ---------------------------------------------------------------------------------
    def _as_signal(self, chunk) -> np.ndarray:
        if isinstance(chunk, (bytes, bytearray, memoryview)):
            return decode_pcm(bytes(chunk), "f32")
        arr = np.asarray(chunk)
        if arr.ndim != 1:
            raise AudioError(f"a chunk must be mono [shape=(n,)], got shape {arr.shape}; mix channels down first")
        if arr.dtype == np.int16:
            return arr.astype(np.float32) / 32768.0
        if not np.issubdtype(arr.dtype, np.floating):
            raise AudioError(f"chunk dtype {arr.dtype} is not supported; send float32 in [-1, 1] or int16")
        arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            raise AudioError("the chunk contains NaN or infinite samples; send float32 samples in [-1, 1]")
        return arr
