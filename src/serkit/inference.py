"""Prediction with a trained model: files, folders, manifests, arrays and long-audio timelines.

Every prediction comes back as the same table (one row per file or window):
``file, start, end, label, p_<label>...`` plus ``error`` (empty unless that file failed), so the
CLI, the HTTP service and Python print and save predictions the same way. Times are seconds.

Long recordings never pass through the model in one piece: a file longer than
:attr:`Recognizer.max_duration` (60 s by default) is cut into windows, read a batch of windows at
a time, and its row holds the mean of the windows' probabilities (silent windows left out), so
memory stays bounded by one batch of windows whatever the file's length.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .audio import MIN_DURATION_S
from .errors import AudioError, ConfigError, ModelError, SerkitError

__all__ = ["Recognizer", "expand_inputs", "plot_timeline", "vad_segments", "DEFAULT_MODEL_DIR"]

#: Where the shipped default model lives inside the package.
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default-model"

#: Windows whose RMS is below this level (dBFS) are reported as ``error == "silence"`` in a
#: timeline and left out of a long file's average: a model's guess on silence means nothing.
SILENCE_DB = -60.0

#: At most this much audio (seconds) is decoded at once while windowing a long file.
_SPAN_SECONDS = 120.0


def expand_inputs(inputs: Iterable) -> list[str]:
    """Audio files from files, folders and manifests.

    Parameters
    ----------
    inputs
        Audio files (kept as given, even if missing: they become error rows), folders (searched
        recursively for .wav .flac .ogg .mp3, sorted) and CSV/TSV manifests with a ``path``
        column (relative paths are relative to the manifest's folder, as in
        :mod:`serkit.corpora.manifest`).

    Returns
    -------
    list of str
    """
    from .audio import find_audio_files

    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(str(f) for f in find_audio_files(p))
        elif p.suffix.lower() in (".csv", ".tsv") and p.is_file():
            out.extend(_manifest_paths(p))
        else:
            out.append(str(item))
    return out


def _manifest_paths(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        header = [h.strip().lower() for h in next(reader, [])]
        if "path" not in header:
            raise ConfigError(
                f"manifest '{path}' has no 'path' column (columns: {', '.join(header) or 'none'}); "
                "add a header row with a 'path' column naming the audio files"
            )
        col = header.index("path")
        out = []
        for row in reader:
            cell = row[col].strip() if len(row) > col else ""
            if cell:
                p = Path(cell).expanduser()
                out.append(str(p if p.is_absolute() else path.parent / p))
    return out


class Recognizer:
    """A trained model ready to predict.

    Parameters
    ----------
    classifier : serkit.models.Classifier
        A fitted classifier (any family, ONNX included).
    metadata : dict, optional
        The model's ``model.json``.
    min_duration : float
        Shorter audio (seconds) is an error: there is too little speech to classify.
    max_duration : float
        Files longer than this (seconds) are predicted window by window and their probabilities
        averaged (see the module docstring); ``window`` and ``hop`` of that windowing are
        ``long_window`` and ``long_hop``.

    Examples
    --------
    >>> rec = Recognizer.load("models/emodb")          # doctest: +SKIP
    >>> rec.predict_file("call.wav")                   # doctest: +SKIP
    >>> rec.timeline("meeting.wav", vad=True)          # doctest: +SKIP
    """

    def __init__(self, classifier, metadata: dict | None = None, *, min_duration: float = MIN_DURATION_S,
                 max_duration: float = 60.0, long_window: float = 4.0, long_hop: float = 4.0):
        self.classifier = classifier
        self.metadata = metadata or {}
        self.min_duration = min_duration
        self.max_duration = max_duration
        self.long_window = long_window
        self.long_hop = long_hop

    @classmethod
    def load(cls, model_dir=None, **options) -> "Recognizer":
        """Load a model directory; ``None`` loads the default model shipped with serkit.

        ``options`` are passed to the constructor (``max_duration=...``).
        """
        from .models import load_model

        if model_dir is None:
            if not (DEFAULT_MODEL_DIR / "model.json").exists():
                raise ModelError(
                    "this serkit has no default model installed; pass a trained model with --model DIR "
                    "(make one with `serkit train --corpus emodb:PATH --recipe compare-svm --out DIR`)"
                )
            model_dir = DEFAULT_MODEL_DIR
        model, meta = load_model(model_dir)
        return cls(model, meta, **options)

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    @property
    def sampling_rate(self) -> int:
        return self.classifier.sampling_rate

    # -- table helpers -------------------------------------------------------------------------
    def _columns(self) -> list[str]:
        return ["file", "start", "end", "label", *(f"p_{l}" for l in self.labels), "error"]

    def _rows(self, names, starts, ends, proba) -> list[dict]:
        rows = []
        for name, s, e, p in zip(names, starts, ends, proba):
            row = {"file": name, "start": float(s), "end": float(e), "label": self.labels[int(np.argmax(p))]}
            row.update({f"p_{l}": float(v) for l, v in zip(self.labels, p)})
            row["error"] = ""
            rows.append(row)
        return rows

    def _error_row(self, name, message, start=np.nan, end=np.nan) -> dict:
        row = {"file": name, "start": start, "end": end, "label": ""}
        row.update({f"p_{l}": np.nan for l in self.labels})
        row["error"] = message
        return row

    def _table(self, rows):
        import pandas as pd

        return pd.DataFrame(rows, columns=self._columns())

    def _read(self, path, start=None, end=None):
        from .audio import read

        signal, _ = read(path, self.sampling_rate, start=start, end=end, min_duration=self.min_duration)
        if float(np.max(np.abs(signal))) < 1e-6:
            raise AudioError(f"'{path}' is silent (peak below -120 dBFS); there is no speech to classify")
        return signal

    def _duration(self, path) -> float:
        from .audio import info

        return info(path).duration

    # -- predicting ----------------------------------------------------------------------------
    def predict_signals(self, signals: Sequence[np.ndarray], *, names: Sequence[str] | None = None,
                        speakers: Sequence[str] | None = None):
        """Predict float32 mono signals already at :attr:`sampling_rate`.

        Parameters
        ----------
        signals : sequence of np.ndarray [shape=(n_samples,), float32]
        names : sequence of str, optional
            ``file`` column values (default ``signal0``, ``signal1``, …).
        speakers : sequence of str, optional
            Per-signal speaker ids for models that adapt to speakers.

        Returns
        -------
        pandas.DataFrame
            The prediction table (``start`` 0, ``end`` the signal's length in seconds).
        """
        names = list(names) if names is not None else [f"signal{i}" for i in range(len(signals))]
        proba = self.classifier.predict_proba(list(signals), speakers=speakers) if len(signals) else []
        ends = [len(s) / self.sampling_rate for s in signals]
        return self._table(self._rows(names, [0.0] * len(signals), ends, proba))

    def predict_file(self, path):
        """One row for one file.

        Files longer than :attr:`max_duration` are predicted window by window and the windows'
        probabilities averaged (the row spans the whole file).

        Raises
        ------
        AudioError
            The file is missing, unreadable, shorter than :attr:`min_duration` or silent.
        """
        if self._duration(path) > self.max_duration:
            return self._table([self._predict_long(path)])
        signal = self._read(path)
        return self.predict_signals([signal], names=[str(path)])

    def predict_batch(self, items: Sequence, *, batch_size: int = 32, n_threads: int | None = None,
                      progress: bool = False, speakers: Sequence[str] | None = None):
        """Predict many files (paths) or signals (arrays at :attr:`sampling_rate`).

        A file that cannot be read becomes a row with its ``error`` message; the others are
        predicted as usual. Decoding runs in ``n_threads`` threads while the model runs in batches
        of ``batch_size``. Files longer than :attr:`max_duration` are averaged over windows
        (see :meth:`predict_file`).

        ``speakers`` (one id per item) adapts a speaker-normalised model to each speaker with the
        statistics of all of that speaker's items (unlabelled; a speaker with fewer items than the
        model's minimum, 10 for feature models, gets the training statistics); the items are then decoded and
        predicted in one batch.

        Returns
        -------
        pandas.DataFrame
            One row per item, in the order given.
        """
        from tqdm.auto import tqdm

        items = list(items)
        if items and all(isinstance(x, np.ndarray) for x in items):
            return self.predict_signals(items, speakers=speakers)
        if speakers is not None:
            # per-speaker statistics come from all of a speaker's clips, not from one batch of them
            batch_size = max(batch_size, len(items))
        names = [str(x) for x in items]
        rows: list[dict | None] = [None] * len(items)
        threads = n_threads or min(8, (os.cpu_count() or 2))
        bar = tqdm(total=len(items), desc="predict", unit="file", disable=not progress, leave=False)

        def load(i):
            try:
                if self._duration(items[i]) > self.max_duration:
                    return i, None, None  # long: windowed below, not decoded whole here
                return i, self._read(items[i]), None
            except SerkitError as exc:
                return i, None, str(exc)

        from .features.base import shutdown_pool

        try:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for start in range(0, len(items), batch_size):
                    chunk = list(pool.map(load, range(start, min(len(items), start + batch_size))))
                    good = [(i, s) for i, s, err in chunk if s is not None]
                    for i, s, err in chunk:
                        if err is not None:
                            rows[i] = self._error_row(names[i], err)
                        elif s is None:
                            try:
                                rows[i] = self._predict_long(items[i])
                            except SerkitError as exc:
                                rows[i] = self._error_row(names[i], str(exc))
                    if good:
                        idx = [i for i, _ in good]
                        sigs = [s for _, s in good]
                        spk = [speakers[i] for i in idx] if speakers is not None else None
                        try:
                            proba = self.classifier.predict_proba(sigs, speakers=spk)
                        except SerkitError as exc:
                            for i in idx:
                                rows[i] = self._error_row(names[i], str(exc))
                        else:
                            ends = [len(s) / self.sampling_rate for s in sigs]
                            for i, r in zip(idx, self._rows([names[i] for i in idx], [0.0] * len(idx), ends, proba)):
                                rows[i] = r
                    bar.update(len(chunk))
        finally:
            shutdown_pool()  # no idle worker processes outlive the call
        bar.close()
        return self._table(rows)

    def _predict_long(self, path) -> dict:
        """One row for a long file: the mean of its non-silent windows' probabilities."""
        from .audio import frames

        duration = self._duration(path)
        spans = frames(duration, window=self.long_window, hop=self.long_hop)
        proba, silent = self._predict_spans(path, spans)
        keep = ~silent
        if not keep.any():
            raise AudioError(f"'{path}' is silent (every {self.long_window:g} s window below {SILENCE_DB:g} dBFS); "
                             "there is no speech to classify")
        mean = proba[keep].mean(axis=0)
        return self._rows([str(path)], [0.0], [duration], [mean])[0]

    def _predict_spans(self, path, spans: Sequence[tuple[float, float]], batch_size: int = 32):
        """Probabilities of ``spans`` (seconds) of one file, decoding at most ~2 minutes at a time.

        Returns
        -------
        proba : np.ndarray [shape=(n_spans, n_labels)]
            NaN rows for silent spans.
        silent : np.ndarray [shape=(n_spans,), bool]
            Spans whose RMS is below :data:`SILENCE_DB`.
        """
        from .audio import read

        sr = self.sampling_rate
        proba = np.full((len(spans), len(self.labels)), np.nan, dtype=np.float32)
        silent = np.zeros(len(spans), dtype=bool)
        floor = 10 ** (SILENCE_DB / 20)
        i = 0
        while i < len(spans):
            # a group of consecutive spans decoded in one read (bounded in count and seconds)
            j = i + 1
            while j < len(spans) and j - i < batch_size and spans[j][1] - spans[i][0] <= _SPAN_SECONDS:
                j += 1
            t0, t1 = spans[i][0], max(e for _, e in spans[i:j])
            block, _ = read(path, sr, start=t0, end=t1)
            pieces, where = [], []
            for k in range(i, j):
                a = int(round((spans[k][0] - t0) * sr))
                b = min(len(block), int(round((spans[k][1] - t0) * sr)))
                piece = block[a:b]
                if piece.size < max(1, self.min_duration * sr) or np.sqrt(np.mean(np.square(piece, dtype=np.float64))) < floor:
                    silent[k] = True
                else:
                    pieces.append(piece)
                    where.append(k)
            if pieces:
                proba[where] = self.classifier.predict_proba(pieces)
            i = j
        return proba, silent

    # -- long recordings -------------------------------------------------------------------------
    def timeline(self, path, *, window: float = 4.0, hop: float = 2.0, vad: bool = False,
                 min_segment: float = 3.0, max_segment: float = 5.0):
        """Rows for consecutive parts of a (long) recording.

        Parameters
        ----------
        path
            An audio file; it is decoded a couple of minutes at a time, so hours are fine.
        window, hop
            Fixed windows of ``window`` seconds every ``hop`` seconds (the last one aligned to the
            end; audio shorter than a window gives one row). Ignored with ``vad=True``.
        vad
            Cut at pauses instead: energy-based voice activity detection
            (:func:`vad_segments`) gives segments of ``min_segment`` … ``max_segment`` seconds
            of speech; pauses longer than a second end a segment early, and silent stretches
            give no row.
        min_segment, max_segment
            Segment lengths for ``vad=True`` (seconds).

        Returns
        -------
        pandas.DataFrame
            One row per window/segment; silent windows have an empty label and
            ``error == "silence"``.

        Raises
        ------
        AudioError
            The file cannot be read, is shorter than :attr:`min_duration`, or (with ``vad``) holds
            no speech.
        """
        from .audio import frames

        duration = self._duration(path)
        if duration < self.min_duration:
            self._read(path)  # raises the usual "too short" message
        if vad:
            spans = vad_segments(self._energy_db(path), frame=_VAD_FRAME, min_segment=min_segment,
                                 max_segment=max_segment)
            if not spans:
                raise AudioError(f"'{path}' has no speech (no 10 ms frame above the voice-activity threshold); "
                                 "check the recording level or use fixed windows (vad=False)")
            spans = [(s, min(e, duration)) for s, e in spans]
        else:
            spans = frames(duration, window=window, hop=hop)
        proba, silent = self._predict_spans(path, spans)
        rows = []
        for (s, e), p, quiet in zip(spans, proba, silent):
            if quiet:
                rows.append(self._error_row(str(path), "silence", s, e))
            else:
                rows.extend(self._rows([str(path)], [s], [e], [p]))
        return self._table(rows)

    def timelines(self, paths: Sequence, *, window: float = 4.0, hop: float = 2.0, vad: bool = False,
                  progress: bool = False):
        """:meth:`timeline` of many files in one table; a file that fails becomes one error row.

        Returns
        -------
        pandas.DataFrame
            The files' rows, in the order given.
        """
        import pandas as pd
        from tqdm.auto import tqdm

        from .features.base import shutdown_pool

        parts = []
        try:
            for path in tqdm(list(paths), desc="timeline", unit="file", disable=not progress, leave=False):
                try:
                    parts.append(self.timeline(path, window=window, hop=hop, vad=vad))
                except SerkitError as exc:
                    parts.append(self._table([self._error_row(str(path), str(exc))]))
        finally:
            shutdown_pool()  # the files share one pool of feature workers; none outlives the call
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else self._table([])

    def _energy_db(self, path) -> np.ndarray:
        """[shape=(n_frames,)] level of every 10 ms frame of ``path`` in dBFS, decoded a block at a time."""
        from .audio import read

        duration = self._duration(path)
        sr = self.sampling_rate
        out = []
        t = 0.0
        block = 6000 * _VAD_FRAME  # 60 s, a whole number of frames
        while t < duration - 1e-9:
            x, _ = read(path, sr, start=t, end=min(duration, t + block))
            # frame edges on the exact time grid (10 ms is 220.5 samples at 22 050 Hz)
            k = int(len(x) / sr / _VAD_FRAME + 1e-6)
            if k:
                edges = np.round(np.arange(k + 1) * _VAD_FRAME * sr).astype(np.int64)
                cs = np.concatenate([[0.0], np.cumsum(np.square(x[: edges[-1]], dtype=np.float64))])
                ms = (cs[edges[1:]] - cs[edges[:-1]]) / np.diff(edges)
                out.append(10 * np.log10(np.maximum(ms, 1e-12)))
            t += block
        return np.concatenate(out) if out else np.zeros(0)


_VAD_FRAME = 0.01  # seconds


def vad_segments(level_db: np.ndarray, *, frame: float = _VAD_FRAME, min_segment: float = 3.0,
                 max_segment: float = 5.0, max_pause: float = 1.0, min_speech: float = 0.3,
                 margin: float = 0.1) -> list[tuple[float, float]]:
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
    pause_n, margin_n, need_n = int(round(max_pause / frame)), int(round(margin / frame)), int(round(min_speech / frame))
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


def plot_timeline(table, out, *, title: str | None = None) -> Path:
    """Draw emotion probabilities over time for one file's timeline rows into a PNG.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :meth:`Recognizer.timeline` for one file (``start``, ``end``, ``p_<label>``).
    out : path
        PNG file to write (its folder is created).

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = [c for c in table.columns if c.startswith("p_")]
    rows = table[table["error"] == ""]
    mid = ((rows["start"] + rows["end"]) / 2).to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, min(20.0, 0.15 * len(rows) + 4)), 3.2), dpi=100)
    for c in cols:
        ax.plot(mid, rows[c].to_numpy(dtype=float), marker="." if len(rows) < 60 else None, label=c[2:])
    quiet = table[table["error"] == "silence"]
    for s, e in zip(quiet["start"], quiet["end"]):
        ax.axvspan(float(s), float(e), color="0.9", lw=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(title or (str(table["file"].iloc[0]) if len(table) else ""), fontsize=9)
    ax.legend(loc="upper right", fontsize=7, ncol=min(len(cols), 7))
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
