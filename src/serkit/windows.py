"""The one window engine: how serkit cuts audio into windows, gates silence and smooths.

Every windowed prediction goes through this module: ``serkit stream`` (file, stdin, microphone),
the WebSocket ``/v1/stream``, ``Recognizer.timeline`` / ``serkit predict --timeline`` /
``/v1/timeline``, and the one-row summary of a long file in ``serkit predict``.

The rules, in samples at the rate of the incoming audio (a file's own rate, a stream's ``rate``):

- **grid**: window ``k`` covers ``[k·hop, k·hop + window)`` with ``window`` and ``hop`` rounded
  to whole samples once, so windows never drift however long the audio;
- **tail**: when the regular windows leave samples at the end uncovered (even one), one more
  window aligned to the end, ``[max(0, n - window), n)``, covers them, so every sample is in at
  least one window; audio shorter than one window gives one window over all of it (when it is at
  least ``min_samples`` long);
- **times**: seconds from the first sample, rounded to the microsecond;
- **silence**: a window whose RMS is below :data:`SILENCE_DB` is not classified (row
  ``error == "silence"``, empty label): a model's guess on silence means nothing;
- **smoothing** (streams, optional): an exponential moving average of the probabilities over the
  classified windows, ``ema`` being the newest window's weight (1 = off);
- **bounds** (:class:`StreamLimits`): the window/hop ratio, the windows one chunk may complete and
  the windows per second a stream may ask for are capped, each limit named by its setting.

Long files use :data:`LONG_WINDOW_S` / :data:`LONG_HOP_S` (4 s every 2 s) for the timeline, for
its summary and for the one-row prediction of a file longer than ``Recognizer.long_file_s``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from .errors import ConfigError

__all__ = [
    "SILENCE_DB",
    "LONG_WINDOW_S",
    "LONG_HOP_S",
    "StreamLimits",
    "StreamLimitError",
    "Grid",
    "Window",
    "Cutter",
    "Scorer",
    "spans",
    "cut",
    "is_silent",
]

#: Windows whose RMS is below this level (dBFS) are silent: not classified, not averaged.
SILENCE_DB = -60.0

#: Default windows of a long recording: 4 s windows every 2 s (half overlap, so a change of
#: emotion is seen within 2 s, and every moment is in two windows but the ends).
LONG_WINDOW_S = 4.0
LONG_HOP_S = 2.0

#: The time grid of :func:`spans` when no sample rate is given: microseconds.
_MICROSECOND_RATE = 1_000_000


def is_silent(piece: np.ndarray, silence_db: float = SILENCE_DB) -> bool:
    """True when ``piece`` is empty or its RMS is below ``silence_db`` dBFS.

    >>> is_silent(np.zeros(160, np.float32)), is_silent(np.full(160, 0.1, np.float32))
    (True, False)
    """
    if piece.size == 0:
        return True
    return float(np.sqrt(np.mean(np.square(piece, dtype=np.float64)))) < 10 ** (silence_db / 20)


# -- limits -------------------------------------------------------------------------------------------
class StreamLimitError(ConfigError):
    """A stream asked for more work than a limit allows; ``setting`` names the limit's variable."""

    def __init__(self, message: str, *, setting: str, too_big: bool = False):
        super().__init__(message)
        self.setting = setting
        #: True for "this one message is too big" (WebSocket close code 1009), else a policy (1008)
        self.too_big = too_big


@dataclass(frozen=True)
class StreamLimits:
    """Bounds on the work a stream may cause; :meth:`from_env` reads them from ``SERKIT_*`` variables.

    Attributes
    ----------
    max_overlap
        Largest ``window / hop`` (how many windows each sample is in); ``SERKIT_STREAM_MAX_OVERLAP``.
    max_windows_per_message
        Most windows one chunk (one WebSocket message) may complete;
        ``SERKIT_STREAM_MAX_WINDOWS_PER_MESSAGE``.
    max_windows_per_s
        Most windows per second of wall-clock time, averaged with a burst of
        ``max_windows_per_message``; ``SERKIT_STREAM_MAX_WINDOWS_PER_S``. ``None``: no rate cap (the
        CLI stream, whose bounded queue already drops or waits).
    """

    max_overlap: float = 20.0
    max_windows_per_message: int = 64
    max_windows_per_s: float | None = 20.0

    ENV = {
        "max_overlap": "SERKIT_STREAM_MAX_OVERLAP",
        "max_windows_per_message": "SERKIT_STREAM_MAX_WINDOWS_PER_MESSAGE",
        "max_windows_per_s": "SERKIT_STREAM_MAX_WINDOWS_PER_S",
    }
    #: the smallest value each setting accepts (the CLI stream and the service read them here alike)
    MINIMUM = {"max_overlap": 1.0, "max_windows_per_message": 1, "max_windows_per_s": 0.001}

    @classmethod
    def from_env(cls, environ=None, **overrides) -> StreamLimits:
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name, lowest = cls.ENV[f.name], cls.MINIMUM[f.name]
            raw = env.get(name)
            if raw is None or not raw.strip():
                continue
            whole = isinstance(lowest, int)
            try:
                value = int(raw) if whole else float(raw)
            except ValueError:
                raise ConfigError(
                    f"{name}={raw!r} is not a {'whole ' if whole else ''}number; e.g. {name}={f.default}"
                ) from None
            if not value >= lowest:
                raise ConfigError(f"{name}={raw!r} must be at least {lowest}; e.g. {name}={f.default}")
            values[f.name] = value
        values.update(overrides)
        return cls(**values)


# -- the grid -----------------------------------------------------------------------------------------
class Window(NamedTuple):
    """One cut window: ``start``/``end`` in seconds, ``samples`` at the cutter's rate."""

    start: float
    end: float
    samples: np.ndarray


class Grid:
    """``window`` and ``hop`` (seconds) as whole samples at ``sampling_rate``, and the tail rule.

    Raises
    ------
    ConfigError
        ``window`` or ``hop`` is not positive, or ``window / hop`` exceeds ``max_overlap``.
    """

    def __init__(self, sampling_rate: int, window: float, hop: float, *, max_overlap: float | None = None):
        if not (window > 0 and hop > 0 and np.isfinite(window) and np.isfinite(hop)):
            raise ConfigError(f"window ({window}s) and hop ({hop}s) must both be positive")
        if max_overlap is not None and window / hop > max_overlap + 1e-9:
            raise StreamLimitError(
                f"window {window:g} s with hop {hop:g} s puts every sample in {window / hop:.0f} windows; the limit "
                f"is {max_overlap:g} ({StreamLimits.ENV['max_overlap']}): use a larger hop",
                setting=StreamLimits.ENV["max_overlap"],
            )
        self.sampling_rate = int(sampling_rate)
        self.window = float(window)
        self.hop = float(hop)
        self.win = max(1, int(round(window * sampling_rate)))
        self.step = max(1, int(round(hop * sampling_rate)))

    def n_regular(self, n: int) -> int:
        """How many whole windows fit in the first ``n`` samples."""
        return 0 if n < self.win else (n - self.win) // self.step + 1

    def tail(self, n: int, covered: int, min_samples: int = 1) -> tuple[int, int] | None:
        """The end-aligned last window over ``n`` samples when ``covered`` < ``n`` (see the module docstring)."""
        if n <= covered or n <= 0:
            return None
        start = max(0, n - self.win)
        return (start, n) if n - start >= max(1, min_samples) else None

    def count(self, n: int, min_samples: int = 1) -> int:
        """How many windows :meth:`spans` gives over ``n`` samples, without making them.

        >>> Grid(10, 2.0, 1.0).count(53), len(list(Grid(10, 2.0, 1.0).spans(53)))
        (5, 5)
        """
        k = self.n_regular(n)
        return k + (self.tail(n, (k - 1) * self.step + self.win if k else 0, min_samples) is not None)

    def spans(self, n: int, min_samples: int = 1) -> Iterator[tuple[int, int]]:
        """Sample spans ``(a, b)`` of a signal of ``n`` samples, generated lazily (hours are fine)."""
        k = self.n_regular(n)
        for i in range(k):
            yield i * self.step, i * self.step + self.win
        tail = self.tail(n, (k - 1) * self.step + self.win if k else 0, min_samples)
        if tail is not None:
            yield tail

    def seconds(self, a: int) -> float:
        return round(a / self.sampling_rate, 6)


def spans(
    duration: float, *, window: float, hop: float, sampling_rate: int | None = None, min_duration: float = 0.0
) -> Iterator[tuple[float, float]]:
    """``(start, end)`` seconds of the windows over ``duration`` seconds (lazily).

    ``sampling_rate`` is the grid (a file's rate); without it the grid is the microsecond.

    >>> list(spans(10.0, window=4.0, hop=3.0))
    [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    >>> list(spans(5.3, window=2.0, hop=1.0))
    [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0), (3.3, 5.3)]
    """
    grid = Grid(sampling_rate or _MICROSECOND_RATE, window, hop)
    n = int(round(duration * grid.sampling_rate))
    for a, b in grid.spans(n, int(np.ceil(min_duration * grid.sampling_rate))):
        yield grid.seconds(a), grid.seconds(b)


def cut(
    signal: np.ndarray, sampling_rate: int, *, window: float = LONG_WINDOW_S, hop: float = LONG_HOP_S
) -> list[Window]:
    """A whole signal cut into windows (the same windows a stream of it would give)."""
    grid = Grid(sampling_rate, window, hop)
    return [Window(grid.seconds(a), grid.seconds(b), signal[a:b]) for a, b in grid.spans(len(signal))]


# -- streams ------------------------------------------------------------------------------------------
class Cutter:
    """Cut a stream of chunks into windows (the capture side); memory is one window plus one chunk.

    Parameters
    ----------
    sampling_rate
        Rate of the chunks (Hz).
    window, hop
        Seconds.
    limits
        Work bounds; default :meth:`StreamLimits.from_env`.
    clock
        Seconds, monotonic (for the windows-per-second cap).
    """

    def __init__(
        self,
        sampling_rate: int,
        window: float,
        hop: float,
        *,
        limits: StreamLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.limits = limits if limits is not None else StreamLimits.from_env()
        self.grid = Grid(sampling_rate, window, hop, max_overlap=self.limits.max_overlap)
        self.sampling_rate = self.grid.sampling_rate
        self._clock = clock
        self._tokens = float(self.limits.max_windows_per_message)
        self._refilled = clock()
        self.reset()

    def reset(self) -> None:
        """Forget all audio fed so far (times restart at 0)."""
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # stream index of self._buffer[0]
        self._emitted = 0  # regular windows cut so far
        self._covered = 0  # stream index where the last window cut ended
        self.seen = 0  # samples fed so far

    @property
    def duration(self) -> float:
        """Seconds of audio fed so far."""
        return self.seen / self.sampling_rate

    def feed(self, chunk: np.ndarray) -> list[Window]:
        """Add samples; returns the windows this chunk completed (maybe none).

        Raises
        ------
        StreamLimitError
            The chunk would complete more windows than a limit allows (nothing is added).
        """
        n_new = self.grid.n_regular(self.seen + len(chunk)) - self._emitted
        self._charge(n_new)
        self._buffer = np.concatenate([self._buffer, chunk]) if self._buffer.size else np.asarray(chunk, np.float32)
        self.seen += len(chunk)
        out = []
        g = self.grid
        for k in range(self._emitted, self._emitted + n_new):
            a = k * g.step
            out.append(self._window(a, a + g.win))
        self._emitted += n_new
        # keep what a later window (or the end-aligned tail) can still need
        self._drop_before(min(self._emitted * g.step, max(0, self.seen - g.win)))
        return out

    def flush(self, min_samples: int = 1) -> list[Window]:
        """The uncovered tail as one end-aligned window (see the tail rule); then the cutter is reset."""
        span = self.grid.tail(self.seen, self._covered, min_samples)
        out = [self._window(max(span[0], self._buffer_start), span[1])] if span else []
        self.reset()
        return out

    def _window(self, a: int, b: int) -> Window:
        self._covered = max(self._covered, b)
        piece = self._buffer[a - self._buffer_start : b - self._buffer_start].copy()
        return Window(self.grid.seconds(a), self.grid.seconds(b), piece)

    def _drop_before(self, index: int) -> None:
        cut_at = index - self._buffer_start
        if cut_at > 0:
            self._buffer = self._buffer[cut_at:]
            self._buffer_start = index

    def _charge(self, n: int) -> None:
        lim = self.limits
        if n > lim.max_windows_per_message:
            name = StreamLimits.ENV["max_windows_per_message"]
            raise StreamLimitError(
                f"one chunk would complete {n} windows; the limit is {lim.max_windows_per_message} ({name}): "
                "send smaller chunks or use a larger hop",
                setting=name,
                too_big=True,
            )
        if lim.max_windows_per_s is None or n == 0:
            return
        now = self._clock()
        burst = max(float(lim.max_windows_per_message), lim.max_windows_per_s)
        self._tokens = min(burst, self._tokens + (now - self._refilled) * lim.max_windows_per_s)
        self._refilled = now
        if n > self._tokens:
            name = StreamLimits.ENV["max_windows_per_s"]
            raise StreamLimitError(
                f"the stream asks for more than {lim.max_windows_per_s:g} windows per second ({name}); "
                "send audio closer to real time or use a larger hop",
                setting=name,
            )
        self._tokens -= n


class Scorer:
    """Classify windows (the inference side): silence gate, resampling, optional EMA smoothing.

    Parameters
    ----------
    recognizer : serkit.inference.Recognizer
    sampling_rate
        Rate of the windows' samples (Hz); they are resampled to the model's rate.
    ema
        Weight of the newest window in the moving average of probabilities, in (0, 1]; 1 = off.
    silence_db
        See :data:`SILENCE_DB`.
    name
        The ``file`` column of every row.
    min_confidence
        A window whose (smoothed) top probability is below this is labelled ``"uncertain"``.
    min_samples
        A window with fewer samples is not classified either (row ``error == "silence"``).
    gate
        Optional ``gate(samples, sampling_rate) -> bool``, True for a silent window, tested after
        the RMS gate (a voice-activity gate: :func:`serkit.segmentation.window_gate`).
    """

    def __init__(
        self,
        recognizer,
        sampling_rate: int,
        *,
        ema: float = 1.0,
        silence_db: float = SILENCE_DB,
        name: str = "stream",
        min_confidence: float | None = None,
        min_samples: float = 1,
        gate: Callable[[np.ndarray, int], bool] | None = None,
    ):
        from .calibration import check_min_confidence

        if not 0 < ema <= 1:
            raise ConfigError(f"ema {ema} must be in (0, 1]; 1 turns smoothing off")
        self.min_confidence = check_min_confidence(min_confidence)
        self.recognizer = recognizer
        self.sampling_rate = int(sampling_rate)
        self.ema = float(ema)
        self.silence_db = float(silence_db)
        self.name = name
        self.min_samples = min_samples
        self.gate = gate
        self.smoothed: np.ndarray | None = None

    def rows(self, windows: list[Window], *, speaker: str | None = None) -> list[dict]:
        """Prediction-table rows (``file, start, end, label, p_<label>..., error``), one per window;
        below ``min_confidence`` the label is ``"uncertain"``. ``speaker``: the windows are one
        speaker's, standardised together with their own statistics (a speaker-normalised model;
        :mod:`serkit.speakers`: at least ``MIN_SPEAKER_UTTERANCES`` classified windows)."""
        from .audio import resample
        from .calibration import top_label

        rec = self.recognizer
        labels = rec.labels
        rows: list[dict | None] = []
        pieces, where = [], []
        for w in windows:
            if (
                w.samples.size < self.min_samples
                or is_silent(w.samples, self.silence_db)
                or (self.gate is not None and self.gate(w.samples, self.sampling_rate))
            ):
                row = {"file": self.name, "start": w.start, "end": w.end, "label": ""}
                row.update({f"p_{l}": np.nan for l in labels})
                row["error"] = "silence"
                rows.append(row)
            else:
                rows.append(None)
                where.append((len(rows) - 1, w))
                pieces.append(resample(w.samples, self.sampling_rate, rec.sampling_rate))
        if pieces:
            speakers = None if speaker is None else [speaker] * len(pieces)
            proba = np.asarray(rec.classifier.predict_proba(pieces, speakers=speakers), dtype=np.float64)
            for (i, w), p in zip(where, proba):
                fresh = self.smoothed is None or self.ema == 1
                self.smoothed = p if fresh else self.ema * p + (1 - self.ema) * self.smoothed
                s = self.smoothed
                row = {
                    "file": self.name,
                    "start": w.start,
                    "end": w.end,
                    "label": top_label(s, labels, self.min_confidence),
                }
                row.update({f"p_{l}": float(v) for l, v in zip(labels, s)})
                row["error"] = ""
                rows[i] = row
        return rows  # type: ignore[return-value]

    def table(self, windows: list[Window]):
        """:meth:`rows` as a prediction table (typed even when empty)."""
        import pandas as pd

        labels = self.recognizer.labels
        columns = ["file", "start", "end", "label", *(f"p_{l}" for l in labels), "error"]
        numeric = ["start", "end", *(f"p_{l}" for l in labels)]
        return pd.DataFrame(self.rows(windows), columns=columns).astype({c: float for c in numeric})
