"""The unweighted accuracy (UA) on integer class indices — the one UA of serkit.

It sits at the foundation so that training (early stopping), compression (teacher agreement) and
evaluation (:func:`serkit.evaluation.metrics`, which re-exports it) score with the same function.
"""

from __future__ import annotations

import numpy as np

__all__ = ["unweighted_accuracy"]


def unweighted_accuracy(y_true, y_pred) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (the usual SER "UA").

    Parameters
    ----------
    y_true, y_pred : array-like [shape=(n,)]
        True and predicted class of each utterance (integers or strings, same length).

    Returns
    -------
    float
        ``nan`` when ``y_true`` is empty.

    Examples
    --------
    >>> unweighted_accuracy([0, 0, 1, 1], [0, 1, 1, 1])
    0.75
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes])) if len(classes) else float("nan")
