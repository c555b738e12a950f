"""Prediction with a trained model: files, folders, arrays and long-audio timelines.

Every prediction comes back as the same table (one row per file or window):
``file, start, end, label, p_<label>...`` plus ``error`` (empty unless that file failed), so the
CLI, the HTTP service and Python print and save predictions the same way.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import AudioError, ModelError, SerkitError

__all__ = ["Recognizer", "expand_inputs", "DEFAULT_MODEL_DIR"]

#: Where the shipped default model lives inside the package.
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default-model"


def expand_inputs(inputs: Iterable) -> list[str]:
    """Files as given, folders expanded recursively to their audio files (sorted)."""
    from .audio import find_audio_files

    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = find_audio_files(p)
            out.extend(str(f) for f in found)
        else:
            out.append(str(item))
    return out


class Recognizer:
    """A trained model ready to predict.

    >>> rec = Recognizer.load("models/emodb")          # doctest: +SKIP
    >>> rec.predict_file("call.wav")                   # doctest: +SKIP
    """

    def __init__(self, classifier, metadata: dict | None = None, *, min_duration: float = 0.1):
        self.classifier = classifier
        self.metadata = metadata or {}
        self.min_duration = min_duration

    @classmethod
    def load(cls, model_dir=None) -> "Recognizer":
        """Load a model directory; ``None`` loads the default model shipped with serkit."""
        from .artifact import load_model

        if model_dir is None:
            if not (DEFAULT_MODEL_DIR / "model.json").exists():
                raise ModelError(
                    "this serkit has no default model installed; pass a trained model with --model DIR "
                    "(make one with `serkit train --corpus emodb:PATH --recipe compare-svm --out DIR`)"
                )
            model_dir = DEFAULT_MODEL_DIR
        model, meta = load_model(model_dir)
        return cls(model, meta)

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    @property
    def sampling_rate(self) -> int:
        return self.classifier.sampling_rate

    def _columns(self) -> list[str]:
        return ["file", "start", "end", "label", *(f"p_{l}" for l in self.labels), "error"]

    def _rows(self, names, starts, ends, proba) -> list[dict]:
        rows = []
        for name, s, e, p in zip(names, starts, ends, proba):
            row = {"file": name, "start": s, "end": e, "label": self.labels[int(np.argmax(p))]}
            row.update({f"p_{l}": float(v) for l, v in zip(self.labels, p)})
            row["error"] = ""
            rows.append(row)
        return rows

    def _error_row(self, name, message) -> dict:
        row = {"file": name, "start": np.nan, "end": np.nan, "label": ""}
        row.update({f"p_{l}": np.nan for l in self.labels})
        row["error"] = message
        return row

    def _read(self, path):
        from .audio import read

        signal, sr = read(path, self.sampling_rate, min_duration=self.min_duration)
        if float(np.max(np.abs(signal))) < 1e-6:
            raise AudioError(f"'{path}' is silent (peak below -120 dBFS); there is no speech to classify")
        return signal

    def predict_signals(self, signals: Sequence[np.ndarray], *, names: Sequence[str] | None = None,
                        speakers: Sequence[str] | None = None):
        """Predict float32 mono signals already at :attr:`sampling_rate`; returns the prediction table."""
        import pandas as pd

        names = list(names) if names is not None else [f"signal{i}" for i in range(len(signals))]
        proba = self.classifier.predict_proba(list(signals), speakers=speakers) if len(signals) else []
        ends = [len(s) / self.sampling_rate for s in signals]
        return pd.DataFrame(self._rows(names, [0.0] * len(signals), ends, proba), columns=self._columns())

    def predict_file(self, path):
        """One row for one file (raises :class:`AudioError` for unreadable audio)."""
        signal = self._read(path)
        return self.predict_signals([signal], names=[str(path)])

    def predict_batch(self, items: Sequence, *, batch_size: int = 32, n_threads: int | None = None,
                      progress: bool = False, speakers: Sequence[str] | None = None):
        """Predict many files (paths) or signals (arrays at :attr:`sampling_rate`).

        A file that cannot be read becomes a row with its ``error`` message; the others are
        predicted as usual. Decoding runs in ``n_threads`` threads while the model runs in batches.
        """
        import pandas as pd
        from tqdm.auto import tqdm

        items = list(items)
        if items and all(isinstance(x, np.ndarray) for x in items):
            return self.predict_signals(items, speakers=speakers)
        names = [str(x) for x in items]
        rows: list[dict | None] = [None] * len(items)
        threads = n_threads or min(8, (os.cpu_count() or 2))
        bar = tqdm(total=len(items), desc="predict", unit="file", disable=not progress, leave=False)

        def load(i):
            try:
                return i, self._read(items[i]), None
            except SerkitError as exc:
                return i, None, str(exc)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            for start in range(0, len(items), batch_size):
                chunk = list(pool.map(load, range(start, min(len(items), start + batch_size))))
                good = [(i, s) for i, s, err in chunk if err is None]
                for i, _, err in chunk:
                    if err is not None:
                        rows[i] = self._error_row(names[i], err)
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
        bar.close()
        return pd.DataFrame(rows, columns=self._columns())

    def timeline(self, path, *, window: float = 4.0, hop: float = 2.0):
        """Rows for consecutive windows of a long recording (``window``/``hop`` in seconds)."""
        from .audio import segment

        signal = self._read(path)
        pieces = segment(signal, self.sampling_rate, window=window, hop=hop)
        table = self.predict_signals([p for _, _, p in pieces], names=[str(path)] * len(pieces))
        table["start"] = [s for s, _, _ in pieces]
        table["end"] = [e for _, e, _ in pieces]
        return table
