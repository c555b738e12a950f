"""Voice activity detection: which 10 ms frames hold speech, and speech segments cut at pauses.

Foundation code (audio in, frames and times out), used by ``Recognizer.timeline(vad=...)``,
``serkit predict --timeline --vad [energy|silero]``, and the window gate of ``serkit stream --vad``
(:func:`window_gate`, handed to :class:`serkit.windows.Scorer`).

Two gates, one interface (:func:`frame_activity` on samples, :func:`file_activity` on a file:
a score per 10 ms frame, lower meaning quieter, and the speech/non-speech decision), selected
by name (:data:`GATES`):

- ``energy``: a frame is speech when its level is above ``max(-50 dBFS, p95 - 35 dB)``, the
  95th percentile of the recording's frame levels setting the reference (so it follows gain);
  numpy only.
- ``silero``: Silero VAD's speech probability (the ``silero-vad`` package's sequence ONNX model,
  run by onnxruntime on one thread, 16 kHz, 32 ms frames spread onto the 10 ms grid), speech
  entering at p >= 0.5 and staying until p < 0.35 (Silero's own hysteresis). The model file is
  opened from the installed package's data folder; nothing is downloaded.

Which one is better was measured by ``benchmarks/vad.py`` (frame-level precision / recall / F1
of each gate on EmoDB and TESS utterances separated by random silences, mixed with white, pink,
brown and babble noise; see that module for the protocol), 20 recordings x 8 utterances, seed 0
(``python benchmarks/vad.py``), 135 minutes of audio per gate:

=================  ==================  ==================
condition          energy P / R / F1   silero P / R / F1
=================  ==================  ==================
clean              0.988 0.919 0.952   0.959 0.900 0.928
noise @ 10 dB      0.487 0.998 0.654   0.805 0.815 0.810
noise @ 5 dB       0.485 0.999 0.653   0.777 0.784 0.781
noise @ 0 dB       0.484 1.000 0.652   0.729 0.708 0.719
=================  ==================  ==================

(``noise @ S dB`` pools white, pink, brown and babble.) In any noise at 10 dB SNR or below the
energy gate calls nearly every frame speech (its precision is the share of speech frames, 0.48),
so it never finds a pause; silero keeps precision 0.91-0.95 in white, pink and brown noise, its
recall falling with the SNR (white at 0 dB: R 0.49, F1 0.63, below the all-speech 0.65), and
babble fools both (silero F1 0.65-0.67, precision 0.51-0.56: it hears the babble as speech, which
it is). On clean speech energy is slightly better (F1 0.952 vs 0.928). Hence
:data:`DEFAULT_GATE` is ``silero`` for cutting recordings (``--vad``, ``vad=True``), where real
recordings are rarely clean, and ``energy`` stays available (``--vad energy``); the stream's
window gate stays the RMS gate unless ``--vad silero`` is asked for (not measured per window).
Speed on one thread (the benchmark's last line, three runs on shared cores): energy 2700-5000x,
silero 150-290x real time.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from .errors import ConfigError

__all__ = [
    "VAD_FRAME",
    "GATES",
    "DEFAULT_GATE",
    "check_gate",
    "energy_db",
    "energy_speech",
    "silero_probability",
    "frame_activity",
    "file_activity",
    "window_gate",
    "vad_segments",
]

#: Frame step of the level measurement (seconds).
VAD_FRAME = 0.01

#: The voice-activity gates, by name.
GATES = ("energy", "silero")

#: The gate ``--vad`` / ``vad=True`` use when none is named (chosen by ``benchmarks/vad.py``).
DEFAULT_GATE = "silero"

#: Silero's rate, frame and context (samples) and its hysteresis thresholds.
SILERO_RATE, SILERO_FRAME, SILERO_CONTEXT = 16000, 512, 64
SILERO_ON, SILERO_OFF = 0.5, 0.35
_SILERO_MODEL = "silero_vad_16k_sequence.onnx"
_SILERO_INSTALL = "pip install 'serkit[vad]' (silero-vad and onnxruntime), or use the energy gate (--vad energy)"


def check_gate(gate) -> str:
    """The gate's name, or :class:`~serkit.errors.ConfigError` naming the valid ones.

    ``True`` means :data:`DEFAULT_GATE`.
    """
    if gate is True:
        return DEFAULT_GATE
    if gate not in GATES:
        raise ConfigError(f"unknown voice-activity gate {gate!r}; use one of: {', '.join(GATES)}")
    return gate


def energy_db(
    path, sampling_rate: int, *, start: float = 0.0, end: float | None = None, frame: float = VAD_FRAME
) -> np.ndarray:
    """[shape=(n_frames,)] level of every ``frame`` of ``path`` (``start``..``end`` seconds) in dBFS.

    ``path`` is read resampled to ``sampling_rate``, a minute at a time; ``end`` defaults to the
    file's end.
    """
    # 60 s blocks: a whole number of frames
    out = [_level_db(x, sampling_rate, frame) for x, _ in _minutes(path, sampling_rate, start, end, 6000 * frame)]
    return np.concatenate(out) if out else np.zeros(0)


def _minutes(path, sampling_rate: int, start: float, end: float | None, block: float = 60.0):
    """``(samples, last)`` of ``path`` from ``start`` to ``end`` (default: its end), ``block`` seconds at a time."""
    from .audio import info, read

    if end is None:
        end = info(path).duration
    t = start
    while t < end - 1e-9:
        x, _ = read(path, sampling_rate, start=t, end=min(end, t + block))
        yield x, t + block >= end - 1e-9
        t += block


def energy_speech(level_db: np.ndarray) -> np.ndarray:
    """[shape=(n_frames,)] the energy gate: frames above ``max(-50 dBFS, p95 - 35 dB)``.

    >>> energy_speech(np.r_[np.full(10, -90.0), np.full(10, -20.0)]).sum()
    np.int64(10)
    """
    level_db = np.asarray(level_db, dtype=np.float64)
    if level_db.size == 0:
        return np.zeros(0, dtype=bool)
    return level_db > max(-50.0, float(np.percentile(level_db, 95)) - 35.0)


def _silero_path() -> Path:
    # the package's data folder, found without importing silero_vad (its __init__ imports torch)
    spec = importlib.util.find_spec("silero_vad")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _SILERO_MODEL if spec else None
    if path is None or not path.is_file():
        raise ConfigError(f"the silero voice-activity gate needs the silero-vad package: {_SILERO_INSTALL}")
    return path


@functools.lru_cache(maxsize=1)
def _silero_session():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(f"the silero voice-activity gate needs onnxruntime: {_SILERO_INSTALL}") from None
    path = _silero_path()
    opts = ort.SessionOptions()
    opts.inter_op_num_threads = opts.intra_op_num_threads = 1  # one thread: 150-290x real time
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class _SileroRun:
    """Silero probabilities of consecutive 16 kHz blocks of one recording (state carried over)."""

    def __init__(self):
        self.session = _silero_session()
        self.h = np.zeros((1, 1, 128), np.float32)
        self.c = np.zeros((1, 1, 128), np.float32)
        self.context = np.zeros(SILERO_CONTEXT, np.float32)
        self.rest = np.zeros(0, np.float32)

    def feed(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.concatenate([self.rest, np.asarray(x, np.float32).reshape(-1)])
        n = len(x) // SILERO_FRAME
        if last and len(x) % SILERO_FRAME:
            n += 1
            x = np.pad(x, (0, n * SILERO_FRAME - len(x)))
        self.rest = x[n * SILERO_FRAME :]
        if n == 0:
            return np.zeros(0, np.float32)
        frames = x[: n * SILERO_FRAME].reshape(n, SILERO_FRAME)
        ctx = np.empty((n, SILERO_CONTEXT), np.float32)
        ctx[0] = self.context
        ctx[1:] = frames[:-1, -SILERO_CONTEXT:]
        self.context = frames[-1, -SILERO_CONTEXT:].copy()
        out = []
        block = np.concatenate([ctx, frames], axis=1)
        for i in range(0, n, 512):
            p, self.h, self.c = self.session.run(
                ["speech_probs", "hn", "cn"], {"input": block[i : i + 512], "h": self.h, "c": self.c}
            )
            out.append(p.reshape(-1))
        return np.concatenate(out)


def _to_grid(p32: np.ndarray, n_frames: int, frame: float = VAD_FRAME) -> np.ndarray:
    # the 32 ms frame holding each 10 ms frame's centre
    idx = np.floor((np.arange(n_frames) + 0.5) * frame * SILERO_RATE / SILERO_FRAME).astype(np.int64)
    if len(p32) == 0:
        return np.zeros(n_frames, np.float32)
    return p32[np.minimum(idx, len(p32) - 1)]


def silero_probability(x: np.ndarray, sampling_rate: int, *, frame: float = VAD_FRAME) -> np.ndarray:
    """[shape=(n_frames,)] Silero's speech probability of every ``frame`` of ``x``.

    ``x`` is resampled to 16 kHz; ``n_frames`` is the number of whole frames in ``x``.
    Raises :class:`~serkit.errors.ConfigError` (saying what to install) without ``silero-vad``.
    """
    from .audio import resample

    x = np.asarray(x, np.float32).reshape(-1)
    n = int(len(x) / sampling_rate / frame + 1e-6)
    y = resample(x, sampling_rate, SILERO_RATE) if sampling_rate != SILERO_RATE else x
    return _to_grid(_SileroRun().feed(y, last=True), n, frame)


def _hysteresis(p: np.ndarray, on: float = SILERO_ON, off: float = SILERO_OFF) -> np.ndarray:
    out = np.zeros(len(p), dtype=bool)
    state = False
    for i, v in enumerate(p):
        state = v >= on or (state and v >= off)
        out[i] = state
    return out


def frame_activity(x: np.ndarray, sampling_rate: int, gate: str = DEFAULT_GATE) -> tuple[np.ndarray, np.ndarray]:
    """The gate's ``(score, speech)`` for every 10 ms frame of the samples ``x``.

    ``score`` is the level in dBFS (``energy``) or the speech probability (``silero``): lower is
    quieter, which is where :func:`vad_segments` cuts. ``speech`` is the gate's decision.

    >>> x = np.r_[np.zeros(1600), 0.1 * np.ones(1600)].astype(np.float32)
    >>> score, speech = frame_activity(x, 16000, "energy")
    >>> len(score), int(speech.sum())
    (20, 10)
    """
    gate = check_gate(gate)
    x = np.asarray(x, np.float32).reshape(-1)
    if gate == "silero":
        p = silero_probability(x, sampling_rate)
        return p, _hysteresis(p)
    level = _level_db(x, sampling_rate)
    return level, energy_speech(level)


def _level_db(x: np.ndarray, sampling_rate: int, frame: float = VAD_FRAME) -> np.ndarray:
    k = int(len(x) / sampling_rate / frame + 1e-6)
    if not k:
        return np.zeros(0)
    # frame edges on the exact time grid (10 ms is 220.5 samples at 22 050 Hz)
    edges = np.round(np.arange(k + 1) * frame * sampling_rate).astype(np.int64)
    cs = np.concatenate([[0.0], np.cumsum(np.square(x[: edges[-1]], dtype=np.float64))])
    ms = (cs[edges[1:]] - cs[edges[:-1]]) / np.diff(edges)
    return 10 * np.log10(np.maximum(ms, 1e-12))


def file_activity(
    path, sampling_rate: int, gate: str = DEFAULT_GATE, *, start: float = 0.0, end: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`frame_activity` of ``path`` (``start``..``end`` s), read a minute at a time.

    The energy gate reads at ``sampling_rate``; the silero gate at 16 kHz, its state carried
    from one minute to the next.
    """
    gate = check_gate(gate)
    if gate == "energy":
        level = energy_db(path, sampling_rate, start=start, end=end)
        return level, energy_speech(level)
    from .audio import info

    if end is None:
        end = info(path).duration
    run = _SileroRun()
    out = [run.feed(x, last=last) for x, last in _minutes(path, SILERO_RATE, start, end)]  # 60 s = 1875 frames
    p32 = np.concatenate(out) if out else np.zeros(0, np.float32)
    p = _to_grid(p32, int((end - start) / VAD_FRAME + 1e-6))
    return p, _hysteresis(p)


def window_gate(gate: str = DEFAULT_GATE, *, min_speech: float = 0.2):
    """A ``silent(samples, sampling_rate) -> bool`` test for :class:`serkit.windows.Scorer`.

    ``energy`` is ``None`` (the window engine's own RMS gate, :data:`serkit.windows.SILENCE_DB`);
    ``silero`` also calls a window silent when it holds less than ``min_speech`` seconds (or half
    the window, if shorter) of speech frames.
    """
    gate = check_gate(gate)
    if gate == "energy":
        return None
    _silero_session()  # fail now, not at the first window

    def silent(x: np.ndarray, sampling_rate: int) -> bool:
        _, speech = frame_activity(x, sampling_rate, gate)
        need = min(min_speech, 0.5 * len(x) / sampling_rate)
        return speech.sum() * VAD_FRAME < need

    return silent


def vad_segments(
    level_db: np.ndarray,
    *,
    frame: float = VAD_FRAME,
    min_segment: float = 3.0,
    max_segment: float = 5.0,
    max_pause: float = 1.0,
    min_speech: float = 0.3,
    margin: float = 0.1,
    speech: np.ndarray | None = None,
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
        Frame levels (dBFS) every ``frame`` seconds, or any gate's score (lower = quieter; the
        silero probability), where the cuts go.
    speech : np.ndarray [shape=(n_frames,)], optional
        The gate's speech frames (:func:`frame_activity`); default: the energy gate on ``level_db``.
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
    speech = energy_speech(level_db) if speech is None else np.asarray(speech, dtype=bool)
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
