"""SER metrics for one set of predictions: UA, WA, macro-F1, per-class scores and the confusion matrix.

The bare UA on class indices lives at the foundation (:func:`serkit.metrics.unweighted_accuracy`,
also used by training and compression) and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ..metrics import unweighted_accuracy

__all__ = ["metrics", "unweighted_accuracy"]


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
        raise ConfigError(
            f"labels {unknown} occur in y_true/y_pred but not in labels={labels}; pass the full label list"
        )

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
