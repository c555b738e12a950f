"""Prediction with a trained model: files, folders, manifests, arrays and long-audio timelines.

Every prediction comes back as the same table (one row per file, segment or window):
``file, start, end, label, p_<label>...`` plus ``error`` (empty unless that input failed), so the
CLI, the HTTP service and Python print and save predictions the same way. Times are seconds.

Windows come from the one window engine (:mod:`serkit.windows`). Long recordings never pass
through the model in one piece: audio longer than :attr:`Recognizer.long_file_s` (60 s by
default) is cut into 4 s windows every 2 s (:data:`~serkit.windows.LONG_WINDOW_S`,
:data:`~serkit.windows.LONG_HOP_S`, the defaults of :meth:`Recognizer.timeline` too), read a
batch of windows at a time, and its row is :meth:`Recognizer.summarise` of those windows (the
mean of the non-silent windows' probabilities), so memory stays bounded by one batch of windows.

Audio longer than :attr:`Recognizer.max_duration_s` (``SERKIT_MAX_DURATION_S``, 600 s by default,
the HTTP service's limit too) is an error row, and so is a file whose header gives no length once
more than that has been decoded: no input makes serkit hang.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import MIN_DURATION_S
from .errors import AudioError, ModelError, SerkitError
from .inputs import Clip
from .runtime import io_threads
from .windows import LONG_HOP_S, LONG_WINDOW_S, SILENCE_DB, Grid, Scorer, Window

__all__ = ["Recognizer", "ClipReader", "DEFAULT_MODEL_DIR"]

#: Where the shipped default model lives inside the package.
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default-model"

#: At most this much audio (seconds) is decoded at once while windowing a long file.
_SPAN_SECONDS = 120.0


@dataclass(frozen=True)
class ClipReader:
    """Decoding of clips for a model: its sampling rate and the duration limits (seconds).

    The part of :class:`Recognizer` that needs no model (:attr:`Recognizer.reader`), so decoding can
    run apart from prediction (``serkit predict --engine ray`` decodes in CPU tasks).
    """

    sampling_rate: int
    min_duration: float = MIN_DURATION_S
    max_duration_s: float = 600.0
    long_file_s: float = 60.0

    def read(self, path, start=None, end=None) -> np.ndarray:
        """[shape=(n_samples,), float32] ``start``..``end`` seconds of ``path`` at :attr:`sampling_rate`.

        Raises
        ------
        AudioError
            Unreadable, shorter than :attr:`min_duration`, or silent.
        """
        from .audio import read

        signal, _ = read(path, self.sampling_rate, start=start, end=end, min_duration=self.min_duration)
        if float(np.max(np.abs(signal))) < 1e-6:
            raise AudioError(f"'{path}' is silent (peak below -120 dBFS); there is no speech to classify")
        return signal

    def plan(self, clip: Clip) -> tuple[float, float, int]:
        """``(start, end, file_rate)`` of the audio ``clip`` covers, checked against the duration limit.

        Raises
        ------
        AudioError
            The input cannot be used, or it is longer than :attr:`max_duration_s` (a file whose
            header gives no length is decoded only until it passes the limit).
        """
        from .audio import MAX_DURATION_ENV, info

        if clip.error:
            raise AudioError(clip.error)
        t0 = clip.start or 0.0
        reach = clip.end if clip.end is not None else t0 + self.max_duration_s
        hdr = info(clip.path, max_duration_s=reach)
        t1 = hdr.duration if clip.end is None else min(clip.end, hdr.duration)
        fix = (
            f"the limit is {self.max_duration_s:g} s ({MAX_DURATION_ENV}, or Recognizer(max_duration_s=...), "
            "or serkit predict --max-duration): cut it into shorter files or raise the limit"
        )
        if hdr.truncated and clip.end is None:
            raise AudioError(
                f"'{clip.path}' does not say how long it is and more than {self.max_duration_s:g} s "
                f"of it was decoded; {fix}"
            )
        if t1 - t0 > self.max_duration_s:
            what = "segment" if clip.start is not None or clip.end is not None else "file"
            raise AudioError(f"'{clip.path}' ({what}) is {t1 - t0:.1f} s long; {fix}")
        if clip.start is not None and t1 <= t0:
            raise AudioError(
                f"'{clip.path}' has no samples between {t0:.3f}s and {clip.end}s "
                f"(file length {hdr.duration:.3f}s); check the segment times"
            )
        return t0, t1, hdr.sampling_rate

    def load(self, clip: Clip) -> tuple[float, np.ndarray | None, tuple | None]:
        """``(start, signal, None)`` for a clip to predict whole, ``(start, None, (t0, t1, rate))`` for
        one longer than :attr:`long_file_s` (windowed by :meth:`Recognizer._predict_long`, not decoded
        here).

        Raises
        ------
        AudioError
            As :meth:`plan` and :meth:`read`.
        """
        t0, t1, rate = self.plan(clip)
        if t1 - t0 > self.long_file_s:
            return t0, None, (t0, t1, rate)
        return t0, self.read(clip.path, clip.start, clip.end), None


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
    long_file_s : float
        Audio longer than this (seconds) is predicted window by window and its windows summarised
        (see the module docstring); ``window`` and ``hop`` of that windowing are ``long_window``
        and ``long_hop``.
    max_duration_s : float, optional
        Longer audio (seconds) is an error row; default ``SERKIT_MAX_DURATION_S`` or 600 s, the
        limit the HTTP service applies.
    min_confidence : float, optional
        Abstention: a row whose top probability is below this (0..1) gets the label
        ``"uncertain"`` (:data:`serkit.calibration.UNCERTAIN`); its probabilities are kept. ``None``
        (default) always gives the top label. Calibrated models (``serkit train --calibrate``) make
        the threshold mean what it says.
    adapt_rule : {"full", "robust"}, optional
        How speaker adaptation predicts (:meth:`serkit.models.Classifier.set_adapt_rule`): ``"full"``
        standardises every speaker by its own clips (best when a speaker's clips span several
        emotions), ``"robust"`` holds back for speakers whose clips look one-sided (a call angry
        throughout) and adapts given the emotions a speaker's clips predict. ``None`` (default): the model's own (``model.json`` ``speaker_adaptation``).

    Examples
    --------
    >>> rec = Recognizer.load("models/emodb")          # doctest: +SKIP
    >>> rec.predict_file("call.wav")                   # doctest: +SKIP
    >>> rec.timeline("meeting.wav", vad=True)          # doctest: +SKIP
    """

    def __init__(
        self,
        classifier,
        metadata: dict | None = None,
        *,
        min_duration: float = MIN_DURATION_S,
        long_file_s: float = 60.0,
        max_duration_s: float | None = None,
        long_window: float = LONG_WINDOW_S,
        long_hop: float = LONG_HOP_S,
        min_confidence: float | None = None,
        adapt_rule: str | None = None,
    ):
        from .audio import duration_limit_s
        from .calibration import check_min_confidence

        if adapt_rule is not None and adapt_rule != classifier.adapt_rule:  # the same rule keeps its thresholds
            classifier.set_adapt_rule(adapt_rule)
        self.classifier = classifier
        self.metadata = metadata or {}
        self.min_duration = min_duration
        self.long_file_s = long_file_s
        self.max_duration_s = float(max_duration_s) if max_duration_s is not None else duration_limit_s()
        if not self.max_duration_s > 0:
            raise AudioError(f"max_duration_s {max_duration_s} must be a positive number of seconds")
        self.long_window = long_window
        self.long_hop = long_hop
        self.min_confidence = check_min_confidence(min_confidence)

    @classmethod
    def load(cls, model_dir=None, **options) -> Recognizer:
        """Load a model directory; ``None`` loads the default model shipped with serkit.

        ``options`` are passed to the constructor (``max_duration_s=...``).
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
        from .calibration import top_label

        rows = []
        for name, s, e, p in zip(names, starts, ends, proba):
            row = {
                "file": name,
                "start": float(s),
                "end": float(e),
                "label": top_label(p, self.labels, self.min_confidence),
            }
            row.update({f"p_{l}": float(v) for l, v in zip(self.labels, p)})
            row["error"] = ""
            rows.append(row)
        return rows

    def abstain(self, table, min_confidence: float | None):
        """A copy of a prediction table whose rows with top probability below ``min_confidence`` are
        labelled ``"uncertain"`` (probabilities kept; error rows untouched). ``None``: unchanged.

        For a threshold chosen per call (the HTTP API's ``min_confidence`` query parameter); the
        recognizer's own :attr:`min_confidence` already applies to every table it returns.
        """
        from .calibration import UNCERTAIN, check_min_confidence

        p_min = check_min_confidence(min_confidence)
        table = table.copy()
        if p_min is None or not len(table):
            return table
        top = table[[f"p_{l}" for l in self.labels]].to_numpy(dtype=np.float64).max(axis=1)
        table.loc[(table["error"] == "").to_numpy() & ~(top >= p_min), "label"] = UNCERTAIN
        return table

    def _error_row(self, name, message, start=np.nan, end=np.nan) -> dict:
        row = {"file": name, "start": start, "end": end, "label": ""}
        row.update({f"p_{l}": np.nan for l in self.labels})
        row["error"] = message
        return row

    def _table(self, rows):
        import pandas as pd

        return pd.DataFrame(rows, columns=self._columns())

    @property
    def reader(self) -> ClipReader:
        """How this recognizer decodes its inputs (rate, duration limits), without the model: what a
        decoding worker of a distributed engine needs."""
        return ClipReader(self.sampling_rate, self.min_duration, self.max_duration_s, self.long_file_s)

    def _read(self, path, start=None, end=None):
        return self.reader.read(path, start, end)

    def _plan(self, clip: Clip) -> tuple[float, float, int]:
        return self.reader.plan(clip)

    @staticmethod
    def _as_clip(item) -> Clip:
        return item if isinstance(item, Clip) else Clip(str(item))

    # -- predicting ----------------------------------------------------------------------------
    def predict_signals(
        self,
        signals: Sequence[np.ndarray],
        *,
        names: Sequence[str] | None = None,
        speakers: Sequence[str] | None = None,
    ):
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
        """One row for one file (or :class:`~serkit.inputs.Clip`, a segment of one).

        Audio longer than :attr:`long_file_s` is predicted window by window and its windows
        summarised (:meth:`summarise`; the row spans the whole file or segment).

        Raises
        ------
        AudioError
            The file is missing, unreadable, shorter than :attr:`min_duration`, longer than
            :attr:`max_duration_s` or silent.
        """
        clip = self._as_clip(path)
        t0, t1, rate = self._plan(clip)
        if t1 - t0 > self.long_file_s:
            return self._table([self._predict_long(clip, t0, t1, rate)])
        table = self.predict_signals([self._read(clip.path, clip.start, clip.end)], names=[clip.path])
        if t0:  # a segment: its times in the file
            table[["start", "end"]] += t0
        return table

    def predict_batch(
        self,
        items: Sequence,
        *,
        batch_size: int = 32,
        n_threads: int | None = None,
        progress: bool = False,
        speakers: Sequence[str] | None = None,
    ):
        """Predict many files (paths or :class:`~serkit.inputs.Clip`) or signals (arrays at :attr:`sampling_rate`).

        An input that cannot be read becomes a row with its ``error`` message; the others are
        predicted as usual. Decoding runs in ``n_threads`` threads while the model runs in batches
        of ``batch_size``. Audio longer than :attr:`long_file_s` is summarised over windows
        (see :meth:`predict_file`); audio longer than :attr:`max_duration_s` is an error row.

        ``speakers`` (one id per item) adapts a speaker-normalised model to each speaker with the
        statistics of all of that speaker's items (unlabelled; a speaker with fewer items than the
        model's minimum, 10 for feature models, gets the training statistics); the items are then decoded and
        predicted in one batch.

        Returns
        -------
        pandas.DataFrame
            One row per item, in the order given.
        """
        items = list(items)
        if items and all(isinstance(x, np.ndarray) for x in items):
            return self.predict_signals(items, speakers=speakers)
        return self._table(
            self.predict_rows(items, batch_size=batch_size, n_threads=n_threads, progress=progress, speakers=speakers)
        )

    @property
    def columns(self) -> list[str]:
        """The prediction table's columns: ``file, start, end, label, p_<label>..., error``."""
        return self._columns()

    def predict_rows(
        self,
        items: Sequence,
        *,
        batch_size: int = 32,
        n_threads: int | None = None,
        progress: bool = False,
        speakers: Sequence[str] | None = None,
    ) -> list[dict]:
        """:meth:`predict_batch` of files (paths or :class:`~serkit.inputs.Clip`) as a list of row dicts
        (keys :attr:`columns`) rather than a DataFrame: what ``serkit predict`` writes as CSV without
        importing pandas (a third of a one-file run's time)."""
        from tqdm.auto import tqdm

        items = list(items)
        if speakers is not None:
            # per-speaker statistics come from all of a speaker's clips, not from one batch of them
            batch_size = max(batch_size, len(items))
        clips = [self._as_clip(x) for x in items]
        rows: list[dict | None] = [None] * len(items)
        threads = n_threads or io_threads()
        bar = tqdm(total=len(items), desc="predict", unit="file", disable=not progress, leave=False)

        reader = self.reader

        def load(i):
            try:
                return reader.load(clips[i]) + (None,)
            except SerkitError as exc:
                return None, None, None, str(exc)

        from .features.base import shutdown_pool

        try:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for start in range(0, len(items), batch_size):
                    idx = range(start, min(len(items), start + batch_size))
                    spk = [speakers[i] for i in idx] if speakers is not None else None
                    done = self.predict_decoded([clips[i] for i in idx], list(pool.map(load, idx)), speakers=spk)
                    for i, r in zip(idx, done):
                        rows[i] = r
                    bar.update(len(idx))
        finally:
            shutdown_pool()  # no idle worker processes outlive the call
        bar.close()
        return rows

    def predict_decoded(self, clips: Sequence[Clip], decoded: Sequence[tuple], *, speakers=None) -> list[dict]:
        """Rows (dicts of the prediction table) for clips decoded by :meth:`ClipReader.load`, in one model batch.

        ``decoded[i]`` is ``(start, signal, plan, error)``: ``ClipReader.load``'s triple plus the
        message of the error it raised (then the rest is ``None``). Long clips (a ``plan``) are
        windowed here; ``speakers``, one id per clip, as in :meth:`predict_batch`. What
        :meth:`predict_batch` runs per batch, and the actors of ``serkit predict --engine ray``.
        """
        names = [c.path for c in clips]
        rows: list[dict | None] = [None] * len(clips)
        good = []
        for i, (t0, signal, plan, err) in enumerate(decoded):
            if err is not None:
                rows[i] = self._error_row(names[i], err)
            elif plan is not None:
                try:
                    rows[i] = self._predict_long(clips[i], *plan)
                except SerkitError as exc:
                    rows[i] = self._error_row(names[i], str(exc))
            else:
                good.append((i, t0, signal))
        if good:
            idx = [i for i, _, _ in good]
            sigs = [s for _, _, s in good]
            spk = [speakers[i] for i in idx] if speakers is not None else None
            try:
                proba = self.classifier.predict_proba(sigs, speakers=spk)
            except SerkitError as exc:
                for i in idx:
                    rows[i] = self._error_row(names[i], str(exc))
            else:
                starts = [t0 for _, t0, _ in good]
                ends = [t0 + len(s) / self.sampling_rate for _, t0, s in good]
                for i, r in zip(idx, self._rows([names[i] for i in idx], starts, ends, proba)):
                    rows[i] = r
        return rows

    def summarise(self, table) -> dict:
        """One row for a recording from its windows' rows: the mean of the non-silent windows' probabilities.

        The summary ``serkit predict`` gives a long file, and ``/v1/timeline`` its ``label`` and
        ``probabilities``.

        Raises
        ------
        AudioError
            Every window is silent.
        """
        ok = table[table["error"] == ""]
        name = str(table["file"].iloc[0]) if len(table) else ""
        if ok.empty:
            raise AudioError(
                f"'{name}' is silent (every {self.long_window:g} s window below {SILENCE_DB:g} dBFS); "
                "there is no speech to classify"
            )
        mean = ok[[f"p_{l}" for l in self.labels]].to_numpy(dtype=np.float64).mean(axis=0)
        return self._rows([name], [float(table["start"].min())], [float(table["end"].max())], [mean])[0]

    def _predict_long(self, clip: Clip, t0: float, t1: float, rate: int) -> dict:
        """One row for long audio: :meth:`summarise` of its windows."""
        spans = self._spans(t0, t1, rate, self.long_window, self.long_hop)
        return self.summarise(self._table(self._span_rows(clip.path, spans)))

    def _spans(self, t0: float, t1: float, rate: int, window: float, hop: float) -> Iterator[tuple[float, float]]:
        """Windows (seconds) over ``t0``..``t1`` of a file at ``rate`` Hz: the window engine's grid and tail rule."""
        grid = Grid(rate, window, hop)
        first = int(round(t0 * rate))
        for a, b in grid.spans(int(round(t1 * rate)) - first):
            yield grid.seconds(first + a), grid.seconds(first + b)

    def _span_rows(
        self, path, spans: Iterable[tuple[float, float]], batch_size: int = 32, *, adapt: bool = False
    ) -> list[dict]:
        """Rows of ``spans`` (seconds) of one file, decoding at most ~2 minutes at a time.

        Spans whose RMS is below :data:`~serkit.windows.SILENCE_DB` (or shorter than
        :attr:`min_duration`) get an error row ``"silence"``. ``adapt``: every span is decoded
        first and the file's spans are classified together as one speaker.
        """
        from .audio import read

        sr = self.sampling_rate
        # the window engine's silence gate and rows; a span shorter than min_duration counts as silent
        scorer = Scorer(
            self, sr, name=str(path), min_confidence=self.min_confidence, min_samples=max(1, self.min_duration * sr)
        )
        rows: list[dict] = []
        held: list[Window] = []
        it = iter(spans)
        pending = next(it, None)
        while pending is not None:
            # a group of consecutive spans decoded in one read (bounded in count and seconds)
            group = [pending]
            pending = next(it, None)
            while pending is not None and len(group) < batch_size and pending[1] - group[0][0] <= _SPAN_SECONDS:
                group.append(pending)
                pending = next(it, None)
            t0, t1 = group[0][0], max(e for _, e in group)
            block, _ = read(path, sr, start=t0, end=t1)
            windows = [
                Window(s, e, block[int(round((s - t0) * sr)) : min(len(block), int(round((e - t0) * sr)))])
                for s, e in group
            ]
            if adapt:
                held.extend(windows)
            else:
                rows.extend(scorer.rows(windows))
        return scorer.rows(held, speaker=str(path)) if adapt else rows

    # -- long recordings -------------------------------------------------------------------------
    def timeline(
        self,
        path,
        *,
        window: float = LONG_WINDOW_S,
        hop: float = LONG_HOP_S,
        vad: bool | str = False,
        min_segment: float = 3.0,
        max_segment: float = 5.0,
        adapt: bool = False,
    ):
        """Rows for consecutive parts of a (long) recording.

        Parameters
        ----------
        path
            An audio file (or a :class:`~serkit.inputs.Clip`, a segment of one); it is decoded a
            couple of minutes at a time, up to :attr:`max_duration_s`.
        window, hop
            Fixed windows of ``window`` seconds every ``hop`` seconds, cut by the window engine
            (:mod:`serkit.windows`: the last one aligned to the end when the others leave a tail;
            audio shorter than a window gives one row). Ignored with ``vad=True``.
        vad
            Cut at pauses instead: voice activity detection
            (:func:`serkit.segmentation.vad_segments`) gives segments of ``min_segment`` …
            ``max_segment`` seconds of speech; pauses longer than a second end a segment early,
            and silent stretches give no row. ``True`` uses the default gate
            (:data:`serkit.segmentation.DEFAULT_GATE`); a name picks one of
            :data:`serkit.segmentation.GATES` (``"energy"``, ``"silero"``).
        min_segment, max_segment
            Segment lengths for ``vad=True`` (seconds).
        adapt
            Standardise the recording's windows with the recording's own statistics (a call is one
            or two voices): its classified windows are one speaker (``serkit predict --timeline
            --adapt-by file``; a speaker-normalised model with at least
            :data:`~serkit.speakers.MIN_SPEAKER_UTTERANCES` classified windows, else each window
            on its own).

        Returns
        -------
        pandas.DataFrame
            One row per window/segment; silent windows have an empty label and
            ``error == "silence"``.

        Raises
        ------
        AudioError
            The file cannot be read, is shorter than :attr:`min_duration`, longer than
            :attr:`max_duration_s`, or (with ``vad``) holds no speech.
        """
        from .segmentation import VAD_FRAME, check_gate, file_activity, vad_segments

        clip = self._as_clip(path)
        t0, t1, rate = self._plan(clip)
        if t1 - t0 < self.min_duration:
            self._read(clip.path, clip.start, clip.end)  # raises the usual "too short" message
        if vad:
            score, speech = file_activity(clip.path, self.sampling_rate, check_gate(vad), start=t0, end=t1)
            segments = vad_segments(
                score,
                frame=VAD_FRAME,
                min_segment=min_segment,
                max_segment=max_segment,
                speech=speech,
            )
            if not segments:
                raise AudioError(
                    f"'{clip.path}' has no speech (no 10 ms frame above the voice-activity threshold); "
                    "check the recording level or use fixed windows (vad=False)"
                )
            spans = [(round(t0 + s, 6), round(min(t0 + e, t1), 6)) for s, e in segments]
        else:
            spans = self._spans(t0, t1, rate, window, hop)
        return self._table(self._span_rows(clip.path, spans, adapt=adapt))

    def timelines(
        self,
        paths: Sequence,
        *,
        window: float = LONG_WINDOW_S,
        hop: float = LONG_HOP_S,
        vad: bool | str = False,
        adapt: bool = False,
        progress: bool = False,
    ):
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
                    parts.append(self.timeline(path, window=window, hop=hop, vad=vad, adapt=adapt))
                except SerkitError as exc:
                    parts.append(self._table([self._error_row(str(path), str(exc))]))
        finally:
            shutdown_pool()  # the files share one pool of feature workers; none outlives the call
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else self._table([])
