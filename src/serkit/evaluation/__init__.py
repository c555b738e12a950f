"""Honest evaluation: speaker-independent protocols, SER metrics (UA, WA, macro-F1) and one ``Report``.

A protocol splits utterances into folds (``loso``, ``loco``, ``speaker-kfold:K``, ``holdout:SPK1,SPK2``, and
the speaker-dependent ``random-split:K`` that must be asked for by name); :func:`evaluate` fits a fresh
model per fold and pools the test predictions into a :class:`Report` that renders to JSON, Markdown,
a PNG confusion matrix and a predictions CSV.

* :mod:`.metrics` — UA, WA, macro-F1, per-class scores, confusion matrix
* :mod:`.protocols` — the protocols, :func:`parse_protocol`, the validation split
* :mod:`.report` — :class:`Report` and its renderings
* :mod:`.run` — :func:`evaluate`, the loop
"""

from .metrics import metrics, unweighted_accuracy
from .protocols import (
    PROTOCOLS,
    Fold,
    Holdout,
    LeaveOneCorpusOut,
    LeaveOneSpeakerOut,
    Protocol,
    RandomSplit,
    SpeakerKFold,
    parse_protocol,
    validation_split,
)
from .report import REPORT_FORMAT, Report
from .run import evaluate

__all__ = [
    "metrics",
    "unweighted_accuracy",
    "Fold",
    "Protocol",
    "LeaveOneSpeakerOut",
    "LeaveOneCorpusOut",
    "SpeakerKFold",
    "Holdout",
    "RandomSplit",
    "PROTOCOLS",
    "parse_protocol",
    "validation_split",
    "evaluate",
    "Report",
    "REPORT_FORMAT",
]
