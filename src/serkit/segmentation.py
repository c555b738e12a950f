"""Energy-based voice activity detection: cut a recording into speech segments at pauses.

Foundation code (audio in, times out), used by ``Recognizer.timeline(vad=True)`` and
``serkit predict --timeline --vad``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VAD_FRAME", "energy_db", "vad_segments"]

#: Frame step of the level measurement (seconds).
VAD_FRAME = 0.01


def energy_db(
    path, sampling_rate: int, *, start: float = 0.0, end: float | None = None, frame: float = VAD_FRAME
) -> np.ndarray:
    """[shape=(n_frames,)] level of every ``frame`` of ``path`` (``start``..``end`` seconds) in dBFS.

    ``path`` is read resampled to ``sampling_rate``, a minute at a time; ``end`` defaults to the
    file's end.
    """
    from .audio import info, read

    if end is None:
        end = info(path).duration
    out = []
    t = start
    block = 6000 * frame  # 60 s, a whole number of frames
    while t < end - 1e-9:
        x, _ = read(path, sampling_rate, start=t, end=min(end, t + block))
        # frame edges on the exact time grid (10 ms is 220.5 samples at 22 050 Hz)
        k = int(len(x) / sampling_rate / frame + 1e-6)
        if k:
            edges = np.round(np.arange(k + 1) * frame * sampling_rate).astype(np.int64)
            cs = np.concatenate([[0.0], np.cumsum(np.square(x[: edges[-1]], dtype=np.float64))])
            ms = (cs[edges[1:]] - cs[edges[:-1]]) / np.diff(edges)
            out.append(10 * np.log10(np.maximum(ms, 1e-12)))
        t += block
    return np.concatenate(out) if out else np.zeros(0)


def vad_segments(
    level_db: np.ndarray,
    *,
    frame: float = VAD_FRAME,
    min_segment: float = 3.0,
    max_segment: float = 5.0,
    max_pause: float = 1.0,
    min_speech: float = 0.3,
    margin: float = 0.1,
) -> list[tuple[float, float]]:
    """Cut a recording into speech segments at pauses (energy-based voice activity detection).

    A frame is speech when its level is above ``max(-50 dBFS, loud - 35 dB)``, where ``loud`` is
    the 95th percentile of the frame levels (so the threshold follows the recording's gain). A
    segment starts ``margin`` before a speech frame and ends at the quietest point (level smoothed
    over 200 ms) between ``min_segment`` and ``max_segment`` later — or earlier, at the first pause
    longer than ``max_pause`` once ``min_speech`` of speech was seen. Segments with less than
    ``min_speech`` seconds of speech are dropped.

    Parameters
    ----------
    level_db : np.ndarray [shape=(n_frames,)]
        Frame levels (dBFS) every ``frame`` seconds.
    frame, min_segment, max_segment, max_pause, min_speech, margin
        Seconds.

    Returns
    -------
    list of (start, end)
        Seconds, increasing, non-overlapping.

    Examples
    --------
    >>> db = np.r_[np.full(100, -90.0), np.full(700, -20.0), np.full(200, -90.0), np.full(150, -20.0)]
    >>> vad_segments(db)
    [(0.9, 3.9), (3.9, 8.1), (9.9, 11.5)]
    """
    level_db = np.asarray(level_db, dtype=np.float64)
    n = len(level_db)
    if n == 0:
        return []
    loud = np.percentile(level_db, 95)
    speech = level_db > max(-50.0, loud - 35.0)
    if not speech.any():
        return []
    k = max(1, int(round(0.2 / frame)))
    smooth = np.convolve(level_db, np.ones(k) / k, mode="same")
    lo_n, hi_n = int(round(min_segment / frame)), int(round(max_segment / frame))
    pause_n, margin_n, need_n = (
        int(round(max_pause / frame)),
        int(round(margin / frame)),
        int(round(min_speech / frame)),
    )
    # length of the silent run starting at each frame (for "a pause longer than max_pause")
    run = np.zeros(n + 1, dtype=np.int64)
    for t in range(n - 1, -1, -1):
        run[t] = 0 if speech[t] else run[t + 1] + 1
    speech_idx = np.flatnonzero(speech)
    out: list[tuple[int, int]] = []
    i = int(speech_idx[0])
    while i < n:
        nxt = speech_idx[np.searchsorted(speech_idx, i)] if np.searchsorted(speech_idx, i) < len(speech_idx) else None
        if nxt is None:
            break
        start = max(int(nxt) - margin_n, out[-1][1] if out else 0)
        end = None
        # an early cut: the first long pause after enough speech
        seen = 0
        for t in range(int(nxt), min(n, start + hi_n)):
            if speech[t]:
                seen += 1
            elif seen >= need_n and run[t] >= pause_n:
                end = min(n, t + margin_n)
                break
        if end is None:
            if start + hi_n >= n:
                last = speech_idx[speech_idx < n][-1]
                end = min(n, int(last) + 1 + margin_n)
            else:
                a, b = start + lo_n, start + hi_n
                end = a + int(np.argmin(smooth[a:b]))
        if speech[start:end].sum() >= need_n:
            out.append((start, end))
        i = max(end, start + 1)
    return [(round(a * frame, 6), round(b * frame, 6)) for a, b in out]
