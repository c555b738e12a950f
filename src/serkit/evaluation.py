"""Honest evaluation: speaker-independent protocols, SER metrics (UA, WA, macro-F1) and one ``Report``.

A protocol splits utterances into folds (``loso``, ``loco``, ``speaker-kfold:K``, ``holdout:SPK1,SPK2``, and
the speaker-dependent ``random-split:K`` that must be asked for by name); :func:`evaluate` fits a fresh
model per fold and pools the test predictions into a :class:`Report` that renders to JSON, Markdown,
a PNG confusion matrix and a predictions CSV.
"""

from __future__ import annotations

import inspect
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from .cache import atomic_write_bytes, atomic_write_text
from .errors import ConfigError, ModelError

__all__ = [
    "metrics",
    "Fold",
    "Protocol",
    "LeaveOneSpeakerOut",
    "SpeakerKFold",
    "Holdout",
    "RandomSplit",
    "PROTOCOLS",
    "parse_protocol",
    "ValidationSplit",
    "validation_split",
    "evaluate",
    "Report",
]

#: the protocol spellings :func:`parse_protocol` understands (shown in error messages)
PROTOCOLS = ("loso", "loco", "speaker-kfold:K", "holdout:SPK1,SPK2,...", "random-split:K")

#: version of the ``report.json`` layout
REPORT_FORMAT = 1


# ==============================================================================================
# Metrics
# ==============================================================================================
def metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Standard SER metrics for one set of predictions.

    Parameters
    ----------
    y_true, y_pred : sequence of str
        True and predicted label of each utterance (same length, at least one).
    labels : sequence of str
        Every label that may occur, in the order used for the confusion matrix and ``per_class``.

    Returns
    -------
    dict
        ``ua`` — unweighted accuracy: mean recall over the classes present in ``y_true``
        (the usual SER "UA"); ``wa`` — weighted accuracy, i.e. plain accuracy; ``macro_f1`` — mean F1
        over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's default set, so a class
        predicted but never true counts as a 0 and one that is neither is ignored); ``per_class`` —
        ``{label: {precision, recall, f1, support}}`` for every label (an undefined ratio is 0.0,
        ``support`` tells whether it was defined); ``confusion`` — counts ``[shape=(n_labels,
        n_labels)]``, rows = true, columns = predicted, in ``labels`` order, as lists of int;
        ``confusion_normalised`` — the same, each row divided by its support (rows of absent classes
        stay 0); ``labels``; ``n``.

    Examples
    --------
    >>> m = metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    >>> m["ua"], m["wa"], m["confusion"]
    (0.75, 0.75, [[1, 1], [0, 2]])
    """
    labels = list(labels)
    if len(set(labels)) != len(labels):
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1}, key=str)
        raise ConfigError(f"labels must be unique; {dupes} appear more than once in {labels}")
    y_true, y_pred = list(y_true), list(y_pred)
    if len(y_true) != len(y_pred):
        raise ConfigError(
            f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}; pass one prediction per utterance"
        )
    if not y_true:
        raise ConfigError("no predictions to score; y_true and y_pred are empty")
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({y for y in (*y_true, *y_pred) if y not in index}, key=str)
    if unknown:
        raise ConfigError(f"labels {unknown} occur in y_true/y_pred but not in labels={labels}; pass the full label list")

    n_labels = len(labels)
    t = np.fromiter((index[y] for y in y_true), dtype=np.int64, count=len(y_true))
    p = np.fromiter((index[y] for y in y_pred), dtype=np.int64, count=len(y_pred))
    cm = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(cm, (t, p), 1)

    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall = _safe_div(tp, support)
    precision = _safe_div(tp, predicted)
    f1 = _safe_div(2 * precision * recall, precision + recall)

    present = support > 0
    active = present | (predicted > 0)
    return {
        "ua": float(recall[present].mean()),
        "wa": float(tp.sum() / len(y_true)),
        "macro_f1": float(f1[active].mean()),
        "per_class": {
            lab: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, lab in enumerate(labels)
        },
        "confusion": cm.tolist(),
        "confusion_normalised": (cm / np.maximum(support, 1)[:, None]).tolist(),
        "labels": labels,
        "n": len(y_true),
    }


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


# ==============================================================================================
# Protocols
# ==============================================================================================
class Fold(NamedTuple):
    """One train/test split: indices into the utterance list, and the test speakers (sorted)."""

    train_idx: np.ndarray
    test_idx: np.ndarray
    test_speakers: list[str]


class Protocol:
    """How utterances are split into folds; build one with :func:`parse_protocol`.

    Attributes
    ----------
    name : str
        The spelling that :func:`parse_protocol` turns back into this protocol.
    speaker_independent : bool
        ``False`` when a speaker may appear in both training and test of a fold.
    """

    speaker_independent: bool = True

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def speaker_dependent(self) -> bool:
        return not self.speaker_independent

    def folds(self, utterances: Sequence) -> list[Fold]:
        """Split ``utterances`` into folds; returns ``[(train_idx, test_idx, test_speakers), ...]``."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"name": self.name, "speaker_independent": self.speaker_independent}

    def __repr__(self) -> str:
        return f"parse_protocol({self.name!r})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def _speakers_of(utterances: Sequence) -> np.ndarray:
    speakers = []
    for u in utterances:
        if u.speaker is None or str(u.speaker) == "":
            raise ConfigError(
                f"utterance {u.id!r} has no speaker; a speaker-independent protocol needs every utterance's "
                "speaker (fix the corpus manifest, or use 'random-split:K' for a speaker-dependent evaluation)"
            )
        speakers.append(str(u.speaker))
    return np.array(speakers, dtype=object)


def _fold(mask_test: np.ndarray, speakers: np.ndarray) -> Fold:
    test_idx = np.flatnonzero(mask_test)
    return Fold(np.flatnonzero(~mask_test), test_idx, sorted(set(speakers[test_idx].tolist())))


def _require_utterances(utterances: Sequence, name: str) -> None:
    if len(utterances) == 0:
        raise ConfigError(f"{name}: no utterances to split; check the corpus path and label mapping")


class LeaveOneSpeakerOut(Protocol):
    """``loso``: one fold per speaker (sorted by speaker id); that speaker is the whole test set."""

    @property
    def name(self) -> str:
        return "loso"

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        speakers = _speakers_of(utterances)
        return _one_fold_each(
            speakers, speakers, "leave-one-speaker-out", "speakers",
            "add recordings of more speakers, or ask explicitly for a speaker-dependent evaluation "
            "with protocol 'random-split:5'",
        )


def _one_fold_each(groups: np.ndarray, speakers: np.ndarray, protocol: str, what: str, fix: str) -> list[Fold]:
    """One fold per distinct value of ``groups`` (sorted), which is that fold's whole test set."""
    unique = sorted(set(groups.tolist()))
    if len(unique) < 2:
        raise ConfigError(f"{protocol} needs at least 2 {what}, found {len(unique)} ({', '.join(unique)}); {fix}")
    return [_fold(groups == g, speakers) for g in unique]


class SpeakerKFold(Protocol):
    """``speaker-kfold:K``: K folds of disjoint speakers, balanced by utterance count.

    Speakers are shuffled with ``seed``, ordered by utterance count (largest first) and each is given
    to the fold with the fewest utterances so far, so folds have similar sizes and the split is the
    same for the same data and seed.
    """

    def __init__(self, k: int, seed: int = 0):
        self.k = int(k)
        self.seed = int(seed)
        if self.k < 2:
            raise ConfigError(f"speaker-kfold:{k}: K must be at least 2; e.g. 'speaker-kfold:5'")

    @property
    def name(self) -> str:
        return f"speaker-kfold:{self.k}"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "k": self.k, "seed": self.seed}

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        speakers = _speakers_of(utterances)
        unique, counts = np.unique(speakers.astype(str), return_counts=True)
        if len(unique) < self.k:
            fix = (
                f"use 'speaker-kfold:{len(unique)}' or 'loso'"
                if len(unique) >= 2
                else "add recordings of more speakers, or ask explicitly for the speaker-dependent 'random-split:5'"
            )
            raise ConfigError(
                f"{self.name} needs at least {self.k} speakers, found {len(unique)} ({', '.join(unique)}); {fix}"
            )
        count = dict(zip(unique.tolist(), counts.tolist()))
        order = np.random.default_rng(self.seed).permutation(unique).tolist()
        order.sort(key=lambda s: -count[s])  # stable: ties keep the seeded shuffle
        totals = [0] * self.k
        members: list[list[str]] = [[] for _ in range(self.k)]
        for s in order:
            j = min(range(self.k), key=lambda f: (totals[f], len(members[f]), f))
            totals[j] += count[s]
            members[j].append(s)
        return [_fold(np.isin(speakers, m), speakers) for m in members]


class LeaveOneCorpusOut(Protocol):
    """``loco``: one fold per corpus (sorted by name); the whole corpus is the test set.

    Train on the other corpora, test on one never heard: the honest picture of a model on unseen
    recording conditions, speakers and actors. With a label set such as ``6class`` every corpus
    shares the classes; a class the training corpora lack is simply never predicted.
    """

    @property
    def name(self) -> str:
        return "loco"

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        corpora = np.array([str(u.corpus) for u in utterances], dtype=object)
        return _one_fold_each(
            corpora, _speakers_of(utterances), "leave-one-corpus-out", "corpora",
            "pass several --corpus options, e.g. --corpus emodb:DIR --corpus tess:DIR --label-set 6class",
        )


class Holdout(Protocol):
    """``holdout:SPK1,SPK2``: the named speakers are the test set, every other speaker trains (one fold)."""

    def __init__(self, speakers: Sequence[str]):
        self.speakers = tuple(str(s) for s in speakers)
        if not self.speakers:
            raise ConfigError("holdout needs at least one test speaker; e.g. 'holdout:spk03,spk07'")

    @property
    def name(self) -> str:
        return "holdout:" + ",".join(self.speakers)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "test_speakers": list(self.speakers)}

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        speakers = _speakers_of(utterances)
        known = sorted(set(speakers.tolist()))
        missing = [s for s in self.speakers if s not in known]
        if missing:
            raise ConfigError(
                f"holdout speakers {missing} are not in the data; speakers found: {', '.join(known)}"
            )
        mask = np.isin(speakers, list(self.speakers))
        if mask.all():
            raise ConfigError(
                f"{self.name} leaves no speaker to train on; hold out fewer of the speakers: {', '.join(known)}"
            )
        return [_fold(mask, speakers)]


class RandomSplit(Protocol):
    """``random-split:K``: utterance-level K-fold, stratified by label — **speaker-dependent**.

    The same speaker appears in training and test, which flatters the numbers; it exists for
    single-speaker data and for comparison with papers that used it, and reports say so.
    """

    speaker_independent = False

    def __init__(self, k: int, seed: int = 0):
        self.k = int(k)
        self.seed = int(seed)
        if self.k < 2:
            raise ConfigError(f"random-split:{k}: K must be at least 2; e.g. 'random-split:5'")

    @property
    def name(self) -> str:
        return f"random-split:{self.k}"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "k": self.k, "seed": self.seed}

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        n = len(utterances)
        if n < self.k:
            raise ConfigError(f"{self.name} needs at least {self.k} utterances, found {n}; use a smaller K")
        labels = np.array([str(u.label) for u in utterances], dtype=object)
        speakers = np.array([str(u.speaker) for u in utterances], dtype=object)
        rng = np.random.default_rng(self.seed)
        fold_of = np.empty(n, dtype=np.int64)
        # Deal each class's shuffled utterances round-robin, continuing the rotation across classes,
        # so every fold gets each class in proportion and fold sizes differ by at most one.
        start = 0
        for lab in sorted(set(labels.tolist())):
            idx = rng.permutation(np.flatnonzero(labels == lab))
            fold_of[idx] = (start + np.arange(len(idx))) % self.k
            start += len(idx)
        return [_fold(fold_of == j, speakers) for j in range(self.k)]


def parse_protocol(spec, *, seed: int = 0) -> Protocol:
    """Turn a protocol string into a :class:`Protocol` (a ``Protocol`` is returned unchanged).

    Parameters
    ----------
    spec : str or Protocol
        ``"loso"`` — leave one speaker out; ``"loco"`` — leave one corpus out; ``"speaker-kfold:K"`` — K folds of disjoint speakers;
        ``"holdout:SPK1,SPK2"`` — the named speakers are the test set; ``"random-split:K"`` —
        utterance-level stratified K-fold (speaker-dependent: reports are marked so).
    seed : int
        Seed of the shuffles in ``speaker-kfold`` and ``random-split``.

    Examples
    --------
    >>> parse_protocol("speaker-kfold:5").name
    'speaker-kfold:5'
    >>> parse_protocol("random-split:5").speaker_independent
    False
    """
    if isinstance(spec, Protocol):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"protocol must be a string such as 'loso', got {spec!r}; valid: {', '.join(PROTOCOLS)}")
    name, _, arg = spec.strip().partition(":")
    name, arg = name.strip().lower(), arg.strip()

    def k_of() -> int:
        try:
            return int(arg)
        except ValueError:
            raise ConfigError(f"protocol {spec!r}: K must be an integer, e.g. '{name}:5'") from None

    if name in ("loso", "leave-one-speaker-out"):
        if arg:
            raise ConfigError(f"protocol {spec!r}: 'loso' takes no argument; write 'loso'")
        return LeaveOneSpeakerOut()
    if name in ("loco", "leave-one-corpus-out"):
        if arg:
            raise ConfigError(f"protocol {spec!r}: 'loco' takes no argument; write 'loco'")
        return LeaveOneCorpusOut()
    if name == "speaker-kfold":
        return SpeakerKFold(k_of(), seed=seed)
    if name == "holdout":
        speakers = [s.strip() for s in arg.split(",") if s.strip()]
        if not speakers:
            raise ConfigError(f"protocol {spec!r}: name the test speakers, e.g. 'holdout:spk03,spk07'")
        return Holdout(speakers)
    if name == "random-split":
        return RandomSplit(k_of(), seed=seed)
    raise ConfigError(
        f"unknown evaluation protocol {spec!r}; valid: {', '.join(PROTOCOLS)} "
        "(random-split is speaker-dependent and must be asked for by name)"
    )


# ==============================================================================================
# Validation split (early stopping / model selection inside a training set)
# ==============================================================================================
class ValidationSplit(NamedTuple):
    """Indices into the training utterances; ``by_speaker`` is ``False`` when it fell back to utterances."""

    train_idx: np.ndarray
    val_idx: np.ndarray
    val_speakers: list[str]
    by_speaker: bool


def validation_split(utterances: Sequence, fraction: float = 0.15, seed: int = 0) -> ValidationSplit:
    """Hold out whole *training* speakers for early stopping, so validation mimics unseen speakers.

    Parameters
    ----------
    utterances : sequence of Utterance
        The training utterances of one fold (never the test ones).
    fraction : float
        Target share of utterances for validation, ``0 < fraction < 1``. Speakers are taken in a
        seeded random order until the share is reached (at least one speaker; at least one left to train).
    seed : int
        Seed of the speaker (or utterance) shuffle.

    Returns
    -------
    ValidationSplit
        ``(train_idx, val_idx, val_speakers, by_speaker)``. With a single training speaker the split
        falls back to a label-stratified utterance split and ``by_speaker`` is ``False``, so callers can
        say that validation scores are speaker-dependent.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"validation fraction must be between 0 and 1 (exclusive), got {fraction}; e.g. 0.15")
    n = len(utterances)
    if n < 2:
        raise ConfigError(f"a validation split needs at least 2 training utterances, found {n}; add training data")
    speakers = np.array([str(u.speaker) for u in utterances], dtype=object)
    unique, counts = np.unique(speakers.astype(str), return_counts=True)
    rng = np.random.default_rng(seed)

    if len(unique) >= 2:
        count = dict(zip(unique.tolist(), counts.tolist()))
        chosen: list[str] = []
        total = 0
        for s in rng.permutation(unique).tolist():
            if total >= fraction * n or len(chosen) == len(unique) - 1:
                break
            chosen.append(s)
            total += count[s]
        mask = np.isin(speakers, chosen)
        return ValidationSplit(np.flatnonzero(~mask), np.flatnonzero(mask), sorted(chosen), True)

    # One speaker: only an utterance split is possible. Stratify so that rare classes are validated too,
    # but keep at least one utterance of each class for training.
    labels = np.array([str(u.label) for u in utterances], dtype=object)
    val: list[int] = []
    for lab in sorted(set(labels.tolist())):
        idx = rng.permutation(np.flatnonzero(labels == lab))
        take = min(int(round(fraction * len(idx))), len(idx) - 1)
        val.extend(idx[:take].tolist())
    if not val:
        val = [int(rng.integers(n))]
    mask = np.zeros(n, dtype=bool)
    mask[val] = True
    return ValidationSplit(np.flatnonzero(~mask), np.flatnonzero(mask), unique.tolist(), False)


# ==============================================================================================
# Report
# ==============================================================================================
def _fmt_pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _md(text) -> str:
    """Make a value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


@dataclass
class Report:
    """The result of one evaluation: pooled and per-fold metrics, and every test prediction.

    Attributes
    ----------
    protocol : str
        Protocol name (``"loso"``, ``"speaker-kfold:5"``, …).
    speaker_dependent : bool
        ``True`` when speakers appear in both training and test (``random-split``).
    labels : list of str
        Column order of the confusion matrix and of the ``p_<label>`` prediction columns.
    metrics : dict
        Pooled metrics over all test predictions, as returned by :func:`metrics`.
    folds : list of dict
        Per fold: ``fold, test_speakers, test_corpora, n_train, n_test, ua, wa, macro_f1, fit_seconds,
        predict_seconds, missing_train_labels`` and, when both adaptation modes were run,
        ``ua_by_mode`` (``{"none": ua, "speaker": ua}``).
    predictions : pandas.DataFrame
        One row per test utterance: ``id, path, start, end, speaker, corpus, fold, true, pred,
        p_<label>...``.
    recipe : dict or str or None
        The recipe (or its name) that built the models.
    normalisation : str or None
        The feature normalisation the models used (``"global"``, ``"speaker"``, …).
    seconds : float
        Wall-clock time of the evaluation.
    adaptation : dict or None
        With ``evaluate(..., report_both=True)``: ``{"none": {ua, wa, macro_f1, headline}, "speaker":
        {...}}`` — pooled metrics without and with per-speaker adaptation; ``headline`` is true for the
        mode the headline numbers come from (both when adaptation changed nothing). Every value is a
        dict of metrics, so callers may iterate ``adaptation.items()``.
    protocol_info : dict
        The protocol's parameters (seed, K, held-out speakers).
    extra : dict
        Anything else worth keeping (JSON-able).
    """

    protocol: str
    speaker_dependent: bool
    labels: list[str]
    metrics: dict
    folds: list[dict] = field(default_factory=list)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    recipe: dict | str | None = None
    normalisation: str | None = None
    seconds: float = 0.0
    adaptation: dict | None = None
    protocol_info: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    # -- headline numbers -------------------------------------------------------------------------
    @property
    def ua(self) -> float:
        """Unweighted accuracy (mean per-class recall) of the pooled predictions."""
        return self.metrics["ua"]

    @property
    def wa(self) -> float:
        """Weighted accuracy (plain accuracy) of the pooled predictions."""
        return self.metrics["wa"]

    @property
    def macro_f1(self) -> float:
        return self.metrics["macro_f1"]

    @property
    def confusion(self) -> np.ndarray:
        """[shape=(n_labels, n_labels)] counts, rows = true, columns = predicted."""
        return np.asarray(self.metrics["confusion"], dtype=np.int64)

    @property
    def n_utterances(self) -> int:
        return int(self.metrics.get("n", len(self.predictions)))

    @property
    def n_speakers(self) -> int:
        """Number of distinct speakers in the test sets."""
        if len(self.predictions) and "speaker" in self.predictions:
            return int(self.predictions["speaker"].nunique())
        return len({s for f in self.folds for s in f.get("test_speakers", [])})

    def fold_summary(self) -> dict:
        """Mean and standard deviation of the per-fold UA, WA and macro-F1 (how much speakers differ)."""
        out = {}
        for key in ("ua", "wa", "macro_f1"):
            values = [f[key] for f in self.folds if key in f]
            if values:
                out[f"{key}_mean"] = float(np.mean(values))
                out[f"{key}_std"] = float(np.std(values))
        return out

    # -- rendering ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able summary (everything except the predictions table)."""
        m = self.metrics
        return {
            "format": REPORT_FORMAT,
            "protocol": self.protocol,
            "speaker_dependent": bool(self.speaker_dependent),
            "protocol_info": dict(self.protocol_info),
            "recipe": self.recipe,
            "normalisation": self.normalisation,
            "labels": list(self.labels),
            "ua": m["ua"],
            "wa": m["wa"],
            "macro_f1": m["macro_f1"],
            "per_class": m["per_class"],
            "confusion": m["confusion"],
            "confusion_normalised": m["confusion_normalised"],
            "n_utterances": self.n_utterances,
            "n_speakers": self.n_speakers,
            "n_folds": len(self.folds),
            "fold_summary": self.fold_summary(),
            "folds": [dict(f) for f in self.folds],
            "adaptation": self.adaptation,
            "seconds": float(self.seconds),
            "extra": dict(self.extra),
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=_json_default)

    @classmethod
    def from_dict(cls, d: dict, predictions: pd.DataFrame | None = None) -> "Report":
        """Rebuild a report from :meth:`to_dict` output (and optionally its predictions table)."""
        missing = [k for k in ("protocol", "labels", "ua", "wa", "macro_f1", "confusion") if k not in d]
        if missing:
            raise ConfigError(f"not a serkit evaluation report: keys {missing} are missing")
        labels = list(d["labels"])
        pooled = {
            "ua": d["ua"],
            "wa": d["wa"],
            "macro_f1": d["macro_f1"],
            "per_class": d.get("per_class", {}),
            "confusion": d["confusion"],
            "confusion_normalised": d.get("confusion_normalised", []),
            "labels": labels,
            "n": d.get("n_utterances", int(np.sum(d["confusion"]))),
        }
        return cls(
            protocol=d["protocol"],
            speaker_dependent=bool(d.get("speaker_dependent", False)),
            labels=labels,
            metrics=pooled,
            folds=list(d.get("folds", [])),
            predictions=predictions if predictions is not None else pd.DataFrame(),
            recipe=d.get("recipe"),
            normalisation=d.get("normalisation"),
            seconds=float(d.get("seconds", 0.0)),
            adaptation=d.get("adaptation"),
            protocol_info=dict(d.get("protocol_info", {})),
            extra=dict(d.get("extra", {})),
        )

    @classmethod
    def load(cls, path) -> "Report":
        """Read a report saved by :meth:`save`: its directory or its ``report.json``.

        ``predictions.csv`` next to it is read too when present (ids and speakers stay strings).
        """
        p = Path(path)
        json_path = p / "report.json" if p.is_dir() else p
        try:
            d = json.loads(json_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no report at '{json_path}'; pass a directory written by Report.save") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"'{json_path}' is not valid JSON ({exc}); re-run the evaluation") from None
        csv = json_path.parent / "predictions.csv"
        predictions = None
        if csv.exists():
            text_cols = ("id", "path", "speaker", "corpus", "true", "pred")
            predictions = pd.read_csv(csv, dtype={c: str for c in text_cols}, keep_default_na=False, na_values=[""])
        return cls.from_dict(d, predictions)

    def to_markdown(self) -> str:
        """Human-readable report: headline metrics, per-class table, confusion matrix, per-fold table."""
        m = self.metrics
        lines = ["# Evaluation report", ""]
        if self.speaker_dependent:
            lines += [
                f"**Warning: speaker-dependent evaluation ({self.protocol}): the same speakers appear in "
                "training and test, so these numbers overestimate accuracy on speakers the model has never "
                "heard. Use 'loso' or 'speaker-kfold:K' for a speaker-independent estimate.**",
                "",
            ]
        kind = "speaker-dependent" if self.speaker_dependent else "speaker-independent"
        summary = self.fold_summary()
        recipe = self.recipe.get("name", "(inline recipe)") if isinstance(self.recipe, dict) else self.recipe
        rows = [
            ("protocol", f"`{self.protocol}` ({kind}, {len(self.folds)} fold{'s' if len(self.folds) != 1 else ''})"),
            ("UA (unweighted accuracy, mean per-class recall)", _fmt_pct(m["ua"])),
            ("WA (weighted accuracy, overall)", _fmt_pct(m["wa"])),
            ("macro-F1", _fmt_pct(m["macro_f1"])),
        ]
        if len(self.folds) > 1 and "ua_mean" in summary:
            rows.append(("UA per fold, mean ± std", f"{_fmt_pct(summary['ua_mean'])} ± {100 * summary['ua_std']:.2f}"))
        rows += [
            ("test utterances / speakers", f"{self.n_utterances} / {self.n_speakers}"),
            ("labels", ", ".join(self.labels)),
            ("recipe", recipe if recipe is not None else "—"),
            ("normalisation", self.normalisation or "—"),
            ("time", f"{self.seconds:.1f} s"),
        ]
        lines += ["| | |", "|---|---|"] + [f"| {_md(k)} | {_md(v)} |" for k, v in rows] + [""]

        if self.adaptation:
            lines += ["## Per-speaker adaptation", "", "| mode | UA | WA | macro-F1 |", "|---|---|---|---|"]
            for mode in ("none", "speaker"):
                if mode in self.adaptation:
                    a = self.adaptation[mode]
                    star = " (headline)" if a.get("headline") else ""
                    lines.append(
                        f"| {mode}{star} | {_fmt_pct(a['ua'])} | {_fmt_pct(a['wa'])} | {_fmt_pct(a['macro_f1'])} |"
                    )
            lines.append("")

        lines += ["## Per class", "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for lab in self.labels:
            c = m["per_class"].get(lab, {})
            lines.append(
                f"| {_md(lab)} | {c.get('precision', 0):.3f} | {c.get('recall', 0):.3f} | "
                f"{c.get('f1', 0):.3f} | {c.get('support', 0)} |"
            )
        lines.append("")

        cm = m["confusion"]
        cmn = m.get("confusion_normalised") or [[0.0] * len(self.labels) for _ in self.labels]
        lines += [
            "## Confusion matrix",
            "",
            "Rows are true labels, columns predicted; each cell is the count (share of the row).",
            "",
            "| true \\ predicted | " + " | ".join(_md(lab) for lab in self.labels) + " |",
            "|---" * (len(self.labels) + 1) + "|",
        ]
        for i, lab in enumerate(self.labels):
            cells = [f"{cm[i][j]} ({cmn[i][j]:.2f})" for j in range(len(self.labels))]
            lines.append(f"| **{_md(lab)}** | " + " | ".join(cells) + " |")
        lines.append("")

        if self.folds:
            lines += [
                "## Folds",
                "",
                "| fold | test speakers | train | test | UA | WA | macro-F1 |",
                "|---|---|---|---|---|---|---|",
            ]
            for f in self.folds:
                spk = f.get("test_speakers", [])
                spk_text = ", ".join(spk) if len(spk) <= 8 else f"{', '.join(spk[:8])}, … ({len(spk)} speakers)"
                lines.append(
                    f"| {f.get('fold')} | {_md(spk_text)} | {f.get('n_train')} | {f.get('n_test')} | "
                    f"{_fmt_pct(f['ua'])} | {_fmt_pct(f['wa'])} | {_fmt_pct(f['macro_f1'])} |"
                )
            lines.append("")
            gaps = [f for f in self.folds if f.get("missing_train_labels")]
            if gaps:
                lines.append(
                    "Folds whose training set lacked a class (that class could not be predicted): "
                    + "; ".join(f"fold {f['fold']}: {', '.join(f['missing_train_labels'])}" for f in gaps)
                    + "."
                )
                lines.append("")
        return "\n".join(lines)

    def plot_confusion(self, path) -> Path:
        """Write a PNG of the confusion matrix: counts and row-normalised side by side.

        Parameters
        ----------
        path : str or Path
            Where to write the PNG (atomically).

        Returns
        -------
        Path
        """
        # Figure + Agg canvas directly rather than pyplot: no global state, no GUI backend, thread-safe.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        labels = list(self.labels)
        n = len(labels)
        cm = np.asarray(self.metrics["confusion"], dtype=float).reshape(n, n)
        cmn = np.asarray(self.metrics.get("confusion_normalised") or np.zeros((n, n)), dtype=float).reshape(n, n)
        side = max(3.5, 0.6 * n + 1.5)
        fig = Figure(figsize=(2 * side + 1, side + 0.8))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        panels = [
            (axes[0], cm, "counts", "{:.0f}", cm.max() if cm.size else 1.0),
            (axes[1], cmn, "row-normalised (recall on the diagonal)", "{:.2f}", 1.0),
        ]
        fontsize = 9 if n <= 8 else 7
        for ax, mat, title, fmt, vmax in panels:
            im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=max(vmax, 1e-12))
            ax.set_title(title)
            ax.set_xticks(range(n), labels, rotation=45, ha="right")
            ax.set_yticks(range(n), labels)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            for i in range(n):
                for j in range(n):
                    dark = mat[i, j] > 0.5 * vmax
                    ax.text(j, i, fmt.format(mat[i, j]), ha="center", va="center", fontsize=fontsize,
                            color="white" if dark else "black")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        tag = " — SPEAKER-DEPENDENT" if self.speaker_dependent else ""
        fig.suptitle(f"{self.protocol}{tag}: UA {_fmt_pct(self.ua)}, WA {_fmt_pct(self.wa)}, "
                     f"macro-F1 {_fmt_pct(self.macro_f1)}")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def save(self, directory) -> Path:
        """Write ``report.json``, ``report.md``, ``confusion.png`` and ``predictions.csv`` into ``directory``.

        Each file is written atomically, so a reader never sees a half-written report.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "report.json", self.to_json() + "\n")
        atomic_write_text(d / "report.md", self.to_markdown())
        self.plot_confusion(d / "confusion.png")
        atomic_write_text(d / "predictions.csv", self.predictions.to_csv(index=False))
        return d

    def __repr__(self) -> str:
        dep = ", SPEAKER-DEPENDENT" if self.speaker_dependent else ""
        return (f"Report({self.protocol}{dep}: UA={self.ua:.4f} WA={self.wa:.4f} macro_f1={self.macro_f1:.4f}, "
                f"{self.n_utterances} utterances, {len(self.folds)} folds)")


# ==============================================================================================
# evaluate
# ==============================================================================================
def _accepts(fn: Callable, name: str) -> bool:
    """Whether ``fn`` takes keyword ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _call(fn: Callable, *args, **kwargs):
    """Call ``fn`` with only the keyword options it accepts (simple test doubles need not take ``progress``)."""
    return fn(*args, **{k: v for k, v in kwargs.items() if _accepts(fn, k)})


def _run_fold(model_factory: Callable, train: list, test: list, *, report_both: bool, progress: bool) -> dict:
    """Fit a fresh model on ``train`` and predict ``test``; module-level so joblib workers can run it."""
    model = model_factory()
    # A model without per-speaker adaptation has only one mode to report; that is not an error.
    report_both = report_both and _accepts(model.predict_proba_utterances, "adapt")
    t0 = time.perf_counter()
    fitted = _call(model.fit, train, progress=progress)
    if fitted is not None:  # estimator manners say fit returns self; tolerate those that return None
        model = fitted
    t1 = time.perf_counter()
    labels = [str(lab) for lab in model.labels]
    probs = {"default": _call(model.predict_proba_utterances, test, progress=progress)}
    if report_both:
        probs["none"] = _call(model.predict_proba_utterances, test, adapt=False, progress=progress)
        probs["speaker"] = _call(model.predict_proba_utterances, test, adapt=True, progress=progress)
    t2 = time.perf_counter()
    for mode, p in probs.items():
        p = np.asarray(p, dtype=float)
        if p.shape != (len(test), len(labels)):
            raise ModelError(
                f"{type(model).__name__}.predict_proba_utterances returned shape {p.shape} for {len(test)} "
                f"utterances and {len(labels)} labels; it must return [n_utterances, n_labels] in model.labels order"
            )
        probs[mode] = p
    norm = getattr(model, "normalisation", None)
    return {
        "labels": labels,
        "probs": probs,
        "fit_seconds": t1 - t0,
        "predict_seconds": t2 - t1,
        "normalisation": norm if isinstance(norm, str) else None,
    }


def _align(p: np.ndarray, model_labels: list[str], labels: list[str]) -> np.ndarray:
    """Reorder probability columns by label name; a class the fold's model never saw gets 0."""
    out = np.zeros((p.shape[0], len(labels)))
    index = {lab: i for i, lab in enumerate(labels)}
    for j, lab in enumerate(model_labels):
        out[:, index[lab]] = p[:, j]
    return out


def evaluate(
    model_factory: Callable[[], object],
    utterances: Sequence,
    protocol="loso",
    *,
    report_both: bool = False,
    recipe: dict | str | None = None,
    normalisation: str | None = None,
    seed: int = 0,
    progress: bool = True,
    n_jobs: int = 1,
) -> Report:
    """Fit a fresh model per fold of ``protocol`` and score the pooled test predictions.

    Parameters
    ----------
    model_factory : callable
        ``model_factory() -> Classifier`` (unfitted); called once per fold so no fold sees another's
        training. It must be picklable (a module-level function or ``functools.partial``) when ``n_jobs != 1``.
    utterances : sequence of Utterance
        Labelled utterances with speakers; labels must already be mapped onto one label set.
    protocol : str or Protocol
        See :func:`parse_protocol`. Speaker-independent ``"loso"`` by default.
    report_both : bool
        Also predict with ``adapt=False`` and ``adapt=True`` and store both pooled results in
        ``Report.adaptation``; the headline numbers stay those of the model's default mode. Costs two
        extra prediction passes per fold. Ignored (with a note in ``Report.extra["notes"]``) when the
        model's ``predict_proba_utterances`` takes no ``adapt=``.
    recipe, normalisation : optional
        Recorded in the report. ``normalisation`` defaults to the first model's ``normalisation``
        attribute when it has one.
    seed : int
        Seed of the protocol's shuffles (``speaker-kfold``, ``random-split``); models seed themselves.
    progress : bool
        Show a progress bar over folds on stderr (and let models show theirs when ``n_jobs == 1``).
    n_jobs : int
        Folds run in parallel processes when ``!= 1`` (``-1`` = all cores, via joblib).

    Returns
    -------
    Report
        Labels are the first fold's model's ``labels`` order, followed (sorted) by any label only other
        folds' models or the true labels have. A fold's probability columns are aligned by label name;
        a class missing from that fold's training set gets probability 0 and is listed in the fold's
        ``missing_train_labels``.
    """
    started = time.perf_counter()
    utterances = list(utterances)
    proto = parse_protocol(protocol, seed=seed)
    folds = proto.folds(utterances)

    jobs = [
        ([utterances[i] for i in f.train_idx], [utterances[i] for i in f.test_idx]) for f in folds
    ]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(folds), desc=f"evaluate {proto.name}", unit="fold", file=sys.stderr)
    results: list[dict] = []
    try:
        if n_jobs == 1:
            for k, (train, test) in enumerate(jobs):
                if bar is not None:
                    bar.set_postfix_str(f"testing {', '.join(folds[k].test_speakers)[:40]}", refresh=True)
                results.append(_run_fold(model_factory, train, test, report_both=report_both, progress=progress))
                if bar is not None:
                    bar.update(1)
        else:
            from joblib import Parallel, delayed

            # Nested progress bars from several processes would garble the terminal; only the fold bar shows.
            parallel = Parallel(n_jobs=n_jobs, return_as="generator")
            for res in parallel(
                delayed(_run_fold)(model_factory, train, test, report_both=report_both, progress=False)
                for train, test in jobs
            ):
                results.append(res)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    labels = list(results[0]["labels"])
    seen = set(labels)
    extra_labels = {lab for r in results for lab in r["labels"]} | {str(u.label) for u in utterances}
    labels += sorted(extra_labels - seen)

    modes = list(results[0]["probs"])
    aligned = {mode: [] for mode in modes}
    rows, fold_dicts = [], []
    for k, (f, r) in enumerate(zip(folds, results)):
        test = jobs[k][1]
        y_true = [str(u.label) for u in test]
        for mode in modes:
            aligned[mode].append(_align(r["probs"][mode], r["labels"], labels))
        p = aligned["default"][-1]
        y_pred = [labels[i] for i in p.argmax(axis=1)]
        fm = metrics(y_true, y_pred, labels)
        by_mode = {mode: metrics(y_true, [labels[i] for i in aligned[mode][-1].argmax(axis=1)], labels)["ua"]
                   for mode in modes if mode != "default"}
        fold_dicts.append({
            "fold": k,
            "test_speakers": list(f.test_speakers),
            "test_corpora": sorted({str(u.corpus) for u in test}),
            "n_train": len(f.train_idx),
            "n_test": len(f.test_idx),
            "ua": fm["ua"],
            "wa": fm["wa"],
            "macro_f1": fm["macro_f1"],
            "fit_seconds": round(r["fit_seconds"], 3),
            "predict_seconds": round(r["predict_seconds"], 3),
            "missing_train_labels": sorted(set(labels) - set(r["labels"])),
            **({"ua_by_mode": by_mode} if by_mode else {}),
        })
        for u, t, pr, row in zip(test, y_true, y_pred, p):
            rows.append({
                "id": u.id, "path": u.path, "start": u.start, "end": u.end, "speaker": str(u.speaker),
                "corpus": u.corpus, "fold": k, "true": t, "pred": pr,
                **{f"p_{lab}": float(v) for lab, v in zip(labels, row)},
            })

    predictions = pd.DataFrame(rows, columns=["id", "path", "start", "end", "speaker", "corpus", "fold", "true",
                                              "pred", *[f"p_{lab}" for lab in labels]])
    pooled = metrics(predictions["true"].tolist(), predictions["pred"].tolist(), labels)

    adaptation = None
    notes = {}
    if report_both and "speaker" not in aligned:
        notes["adaptation"] = "report_both was asked for, but the model's predict_proba_utterances takes no adapt="
    elif report_both:
        y_true = predictions["true"].tolist()
        default = np.concatenate(aligned["default"])
        adaptation = {}
        for mode in ("none", "speaker"):
            p = np.concatenate(aligned[mode])
            am = metrics(y_true, [labels[i] for i in p.argmax(axis=1)], labels)
            # The default mode is the model's own setting; mark the mode(s) it matched (both when
            # adaptation changed nothing) so readers know which one the headline numbers are.
            adaptation[mode] = {"ua": am["ua"], "wa": am["wa"], "macro_f1": am["macro_f1"],
                                "headline": bool(np.allclose(default, p))}

    return Report(
        protocol=proto.name,
        speaker_dependent=proto.speaker_dependent,
        labels=labels,
        metrics=pooled,
        folds=fold_dicts,
        predictions=predictions,
        recipe=recipe,
        normalisation=normalisation if normalisation is not None else results[0]["normalisation"],
        seconds=time.perf_counter() - started,
        adaptation=adaptation,
        protocol_info=proto.to_dict(),
        extra={
            "n_input_utterances": len(utterances),
            "n_input_speakers": len({str(u.speaker) for u in utterances}),
            "corpora": sorted({str(u.corpus) for u in utterances}),
            **({"notes": notes} if notes else {}),
        },
    )
