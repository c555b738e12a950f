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

from .audio import MAX_SAMPLING_RATE, MIN_SAMPLING_RATE, resample
from .errors import AudioError, ConfigError

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

    Parameters
    ----------
    recognizer : serkit.inference.Recognizer
        The model; windows are resampled to its :attr:`~serkit.inference.Recognizer.sampling_rate`.
    sampling_rate
        Rate of the incoming chunks (Hz).
    window, hop
        Window length and step (seconds); a window is classified as soon as its last sample arrives.
    silence_db
        Windows whose RMS is below this level (dBFS) are not classified: their row has an empty
        label and ``error == "silence"``, because a model's guess on silence means nothing.
    name
        Value of the ``file`` column of every row.

    Notes
    -----
    Memory stays bounded: only the samples of the current (incomplete) window are kept.
    Times are seconds from the first sample fed.
    """

    def __init__(self, recognizer, *, sampling_rate: int, window: float = 2.0, hop: float = 1.0,
                 silence_db: float = -60.0, name: str = "stream"):
        if not MIN_SAMPLING_RATE <= int(sampling_rate) <= MAX_SAMPLING_RATE:
            raise ConfigError(
                f"stream sample rate {sampling_rate} Hz is outside {MIN_SAMPLING_RATE}..{MAX_SAMPLING_RATE} Hz; "
                "pass the rate the audio was recorded at"
            )
        if not (window > 0 and hop > 0):
            raise ConfigError(f"window ({window}s) and hop ({hop}s) must both be positive")
        self.recognizer = recognizer
        self.sampling_rate = int(sampling_rate)
        self.window = float(window)
        self.hop = float(hop)
        self.silence_db = float(silence_db)
        self.name = name
        self._win = max(1, int(round(self.window * self.sampling_rate)))
        self._hop = max(1, int(round(self.hop * self.sampling_rate)))
        self.reset()

    def reset(self) -> None:
        """Forget all audio fed so far (times restart at 0)."""
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0   # stream index of self._buffer[0]
        self._next_start = 0     # stream index where the next window starts
        self._seen = 0           # samples fed so far
        self._last_end = 0       # stream index where the last emitted window ended

    @property
    def duration(self) -> float:
        """Seconds of audio fed so far."""
        return self._seen / self.sampling_rate

    def feed(self, chunk):
        """Add samples; returns the rows of the windows this chunk completed (maybe none).

        Parameters
        ----------
        chunk : np.ndarray [shape=(n,), float32 in [-1, 1] or int16] or bytes (float32 little-endian)
        """
        signal = self._as_signal(chunk)
        self._buffer = np.concatenate([self._buffer, signal]) if self._buffer.size else signal
        self._seen += len(signal)
        spans = []
        while self._next_start + self._win <= self._seen:
            spans.append((self._next_start, self._next_start + self._win))
            self._next_start += self._hop
        # keep the last full window too, so that flush() can classify an end-aligned window
        return self._emit(spans, drop_before=min(self._next_start, max(0, self._seen - self._win)))

    def flush(self):
        """Classify the audio not yet covered by a window, as one window aligned to the end.

        Audio shorter than one window gives one window over all of it. After a flush the stream
        is reset.
        """
        spans = []
        if self._seen > self._last_end and self._seen > 0:
            start = max(0, self._seen - self._win, self._buffer_start)
            min_samples = int(self.recognizer.min_duration * self.sampling_rate)
            if self._seen - start >= max(1, min_samples):
                spans.append((start, self._seen))
        table = self._emit(spans, drop_before=self._seen)
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

    def _emit(self, spans, *, drop_before: int):
        import pandas as pd

        rec = self.recognizer
        rows: list[dict | None] = []
        pieces, where = [], []
        floor = 10 ** (self.silence_db / 20)
        for a, b in spans:
            piece = self._buffer[a - self._buffer_start : b - self._buffer_start]
            t0, t1 = a / self.sampling_rate, b / self.sampling_rate
            rms = float(np.sqrt(np.mean(np.square(piece, dtype=np.float64)))) if piece.size else 0.0
            if rms < floor:
                row = {"file": self.name, "start": t0, "end": t1, "label": ""}
                row.update({f"p_{l}": np.nan for l in rec.labels})
                row["error"] = "silence"
                rows.append(row)
            else:
                rows.append(None)
                where.append((len(rows) - 1, t0, t1))
                pieces.append(resample(piece, self.sampling_rate, rec.sampling_rate))
            self._last_end = max(self._last_end, b)
        if pieces:
            table = rec.predict_signals(pieces, names=[self.name] * len(pieces))
            for (i, t0, t1), rec_row in zip(where, table.to_dict("records")):
                rec_row["start"], rec_row["end"] = t0, t1
                rows[i] = rec_row
        # keep only what a future window can still need
        cut = drop_before - self._buffer_start
        if cut > 0:
            self._buffer = self._buffer[cut:]
            self._buffer_start = drop_before
        # typed even when empty, so that concatenating the tables of many feeds keeps float columns
        numeric = ["start", "end", *(f"p_{l}" for l in rec.labels)]
        return pd.DataFrame(rows, columns=rec._columns()).astype({c: float for c in numeric})
